"""On a real GPU (marker ``gpu``; skipped without one, and under Numba's CUDA simulator): the
compiled CUDA kernel of the fused backend against the CPU kernel and the float64 reference, for
every method and both modes, status codes included; the CuPy replica against the NumPy one.

What the simulator cannot show and this does: libdevice bit-casts and ``sqrt``, NVVM's FMA
contraction, the launch configuration (block size clamped to the compiled kernel's limit).
The GPU and CPU kernels agree to rounding (FMA contraction differs); both meet the accuracy
bound of harness.measure.accuracy against the reference. The CPU kernels compile in parallel processes
(one per case) while the GPU kernels run, so the file fits in ~45 s on a GPU box.

    python -m pytest -m gpu harness/tests/test_gpu_real.py
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

N = 300  # two blocks of 256, the second one partial

#: case -> (backend spec fields, relative GPU-vs-CPU tolerance). Fixed mode: Tsit5, RK4 and the
#: 3/8 rule at the protocol's dt; adaptive: Tsit5 (float32 and float64) and every Rosenbrock.
CASES = {
    "tsit5-fixed-f32": (dict(problem="lorenz", method="tsit5", mode="fixed", dtype="float32"), 1e-4),
    "tsit5-fixed-f64": (dict(problem="lorenz", method="tsit5", mode="fixed", dtype="float64"), 1e-10),
    "rk4-fixed-f32": (dict(problem="lorenz", method="rk4", mode="fixed", dtype="float32"), 1e-4),
    "rk4_38-fixed-f32": (dict(problem="lorenz", method="rk4_38", mode="fixed", dtype="float32"), 1e-4),
    "tsit5-adaptive-f32": (dict(problem="lorenz", method="tsit5", mode="adaptive", dtype="float32",
                                rtol=1e-6, atol=1e-6), 2e-3),
    "tsit5-adaptive-f64": (dict(problem="lorenz", method="tsit5", mode="adaptive", dtype="float64",
                                rtol=1e-8, atol=1e-8), 1e-9),
    "rosenbrock23-adaptive-f64": (dict(problem="robertson", method="rosenbrock23", mode="adaptive",
                                       dtype="float64", rtol=1e-6, atol=1e-8), 1e-9),
    "rodas4-adaptive-f64": (dict(problem="robertson", method="rodas4", mode="adaptive", dtype="float64",
                                 rtol=1e-6, atol=1e-8), 1e-9),
    "rodas5p-adaptive-f64": (dict(problem="robertson", method="rodas5p", mode="adaptive", dtype="float64",
                                  rtol=1e-6, atol=1e-8), 1e-9),
    # must fail: 20 steps cannot cover [0, 1] at rtol 1e-6; every trajectory ends in MAX_STEPS
    "tsit5-max-steps-f32": (dict(problem="lorenz", method="tsit5", mode="adaptive", dtype="float32",
                                 rtol=1e-6, atol=1e-6, max_steps=20), 2e-3),
}


def _real_gpu() -> tuple[bool, str]:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False, "Numba's CUDA simulator is on: this file is for the real kernel"
    try:
        from numba import cuda
        if not cuda.is_available():
            return False, "no CUDA GPU (numba.cuda.is_available() is False)"
    except Exception as exc:  # noqa: BLE001
        return False, f"numba.cuda unusable: {exc}"
    return True, ""


_ok, _why = _real_gpu()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _ok, reason=_why)]


def solve(fields: dict, device: str, n: int = N, backend: str = "fused"):
    """Solve once; returns (u_final, status, accepted) as NumPy arrays."""
    from solvers import SolveSpec, get_backend

    prep = get_backend(backend).prepare(SolveSpec(n=n, device=device, **fields))
    try:
        out = prep.run()
        prep.sync(out)
        r = prep.fetch(out)
    finally:
        prep.close()
    return (np.asarray(r.u_final, dtype=np.float64), np.asarray(r.status), np.asarray(r.accepted))


def _cpu_case(name: str):
    return name, solve(CASES[name][0], "cpu")


@pytest.fixture(scope="module")
def cpu_results():
    """Every case on the CPU kernel, compiled in parallel processes (spawned: no CUDA state)."""
    workers = max(1, min(len(CASES), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_cpu_case, name) for name in CASES]
        yield dict(f.result() for f in futures)


@pytest.mark.parametrize("case", list(CASES))
def test_cuda_kernel_matches_cpu_kernel_and_reference(case, cpu_results):
    from harness.measure.accuracy import violation
    from problems.reference import max_relative_error, reference
    from problems.registry import get_problem
    from solvers.base import Status

    fields, tol = CASES[case]
    u_gpu, st_gpu, acc_gpu = solve(fields, "gpu")
    u_cpu, st_cpu, acc_cpu = cpu_results[case]
    np.testing.assert_array_equal(st_gpu, st_cpu)
    if "max-steps" in case:
        assert np.all(st_gpu == int(Status.MAX_STEPS))
        return
    assert np.all(st_gpu == int(Status.SUCCESS))
    scale = np.max(np.abs(u_cpu), axis=1)
    rel = float(np.max(np.max(np.abs(u_gpu - u_cpu), axis=1) / scale))
    assert rel <= tol, f"GPU vs CPU kernel: max rel diff {rel:.3g} > {tol:g}"
    if fields["mode"] == "fixed" or fields["dtype"] == "float64":
        # same decisions: the step counts agree exactly (float32 adaptive may flip one)
        np.testing.assert_array_equal(acc_gpu, acc_cpu)
    # 8 trajectories of the 300 (both ends included; shipped in problems/refs/, no SciPy on the box)
    ref = reference(get_problem(fields["problem"]), N, fields["dtype"], max_size=8)
    err = max_relative_error(u_gpu, ref)
    row = dict(fields, max_rel_err=err, failed_trajectories=0.0, rtol=fields.get("rtol", math.nan))
    assert violation(row) is None, violation(row)


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_cupy_replica_matches_numpy_replica(mode):
    from solvers import get_backend

    ok, why = get_backend("array").available("gpu")
    if not ok:
        pytest.skip(why)
    fields = dict(problem="lorenz", method="tsit5", mode=mode, dtype="float64")
    if mode == "adaptive":
        fields.update(rtol=1e-8, atol=1e-8)
    u_gpu, st_gpu, acc_gpu = solve(fields, "gpu", n=64, backend="array")
    u_cpu, st_cpu, acc_cpu = solve(fields, "cpu", n=64, backend="array")
    np.testing.assert_array_equal(st_gpu, st_cpu)
    np.testing.assert_array_equal(acc_gpu, acc_cpu)
    np.testing.assert_allclose(u_gpu, u_cpu, rtol=1e-10, atol=1e-12)
