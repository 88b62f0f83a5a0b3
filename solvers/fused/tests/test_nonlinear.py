"""The fused nonlinear kernels: convergence to the known root, per-system statuses, the in-kernel
dense solve, the CUDA source (PTX without a GPU, and the simulator in its own process)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.registry import get_problem
from solvers.base import SolveSpec, Status
from solvers.fused.nonlinear import NonlinearKernelKey, generate_source, load_module, run_cpu

ROOT = Path(__file__).resolve().parents[3]
PROB = get_problem("generalized_rosenbrock")
TOL = {"float32": 1e-5, "float64": 1e-10}


@pytest.mark.parametrize("method, dtype, max_iter", [
    ("newton", "float64", 50), ("newton", "float32", 50),
    pytest.param("trust-region", "float64", 1000, marks=pytest.mark.slow)])  # 1000 iterations: 8-15 s
def test_converges_to_the_root_from_random_starts(method, dtype, max_iter):
    x0, p = PROB.ensemble(64, dtype)
    x, stats, status = run_cpu(PROB.name, method, x0, p, rtol=TOL[dtype], atol=TOL[dtype], max_iter=max_iter)
    assert (status == int(Status.SUCCESS)).all(), np.bincount(status)
    assert np.abs(x - 1.0).max() <= 10 * TOL[dtype]
    assert (stats[0] >= 1).all() and (stats[0] <= max_iter).all()
    if method == "newton":  # Newton is exact after d steps in exact arithmetic: about d + 1 iterations
        assert stats[0].max() <= 2 * PROB.n_states


def test_non_convergence_is_a_status_per_system():
    x0, p = PROB.ensemble(8, "float64")
    x0[3] = 1.0  # this one starts at the root: it converges in one step, the others cannot in 2
    x, stats, status = run_cpu(PROB.name, "newton", x0, p, rtol=1e-10, atol=1e-10, max_iter=2)
    assert status[3] == int(Status.SUCCESS)
    others = np.delete(status, 3)
    assert (others == int(Status.NOT_CONVERGED)).all()
    x0[5] = 1e200  # overflows in the first residual
    x, stats, status = run_cpu(PROB.name, "newton", x0, p, rtol=1e-10, atol=1e-10, max_iter=50)
    assert status[5] == int(Status.NONFINITE) and status[3] == int(Status.SUCCESS)


def test_dense_solve_matches_lapack_and_flags_singular():
    mod = load_module(NonlinearKernelKey(PROB.name, "newton", "float64", "cpu"))
    rng = np.random.default_rng(0)
    for _ in range(5):
        A = rng.normal(size=(10, 11))
        ref = np.linalg.solve(A[:, :10], A[:, 10])
        assert not mod._linsolve(A)
        np.testing.assert_allclose(A[:, 10], ref, rtol=1e-9, atol=1e-12)
    S = rng.normal(size=(10, 11))
    S[4, :10] = 0.0
    assert mod._linsolve(S)


def test_backend_serves_the_kind_and_maps_results():
    from solvers.registry import get_backend

    fused = get_backend("fused")
    spec = SolveSpec(problem=PROB.name, method="newton", mode="adaptive", dtype="float64", n=16,
                     rtol=1e-10, atol=1e-10, max_steps=50)
    assert fused.check(spec) is None
    assert "unsupported" not in str(fused.settings(spec))
    assert fused.check(spec.with_(method="tsit5")) is not None
    prep = fused.prepare(spec)
    res = prep.fetch(prep.run())
    assert res.u_final.shape == (16, 10) and (res.status == 0).all()
    err, note = PROB.reference_for(spec).accuracy(res)
    assert err <= 1e-9 and note == ""


def test_generated_source_uses_typed_constants_and_a_general_solver():
    src = generate_source(NonlinearKernelKey(PROB.name, "newton", "float32", "cpu"))
    assert "_T = np.float32" in src and "def _linsolve(A)" in src
    body = src[src.index("def _linsolve"):]
    # a general dense solve: no reference to the Rosenbrock structure in the algorithm
    assert "abs(A[r, k]) > abs(A[k, k])" in body


class _FakeDevice:
    compute_capability = (9, 0)


@pytest.mark.parametrize("method", ["newton", "trust-region"])
def test_cuda_kernel_compiles_to_ptx_without_f64(monkeypatch, method):
    pytest.importorskip("numba.cuda")
    import numba
    import numba.cuda.dispatcher as cuda_dispatcher
    from numba import cuda

    monkeypatch.setattr(cuda_dispatcher, "get_current_device", lambda: _FakeDevice())
    mod = load_module(NonlinearKernelKey(PROB.name, method, "float32", "cuda"))
    arr, f = numba.float32[:, ::1], numba.float32
    sig = (arr, arr, arr, numba.int32[:, ::1], numba.int32[::1], f, f, numba.int64, f)
    ptx, _ = cuda.compile_ptx(mod.solve_kernel.py_func, sig, cc=(9, 0))
    assert ".entry" in ptx
    f64 = [l for l in ptx.splitlines() if not l.strip().startswith("//") and (".f64" in l or "%fd" in l)]
    assert not f64, f64[:5]


@pytest.mark.cudasim
@pytest.mark.slow
def test_simulated_cuda_kernel_converges():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "solvers.fused.tests.nonlinear_cudasim_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for method, r in report.items():
        assert r["status"] == [0, 0, 0, 0], (method, r)
        assert np.abs(np.asarray(r["x"]) - 1.0).max() <= 1e-9
    cpu_x0, p = PROB.ensemble(4, "float64", seed=3)
    _, stats, _ = run_cpu(PROB.name, "newton", cpu_x0, p, rtol=1e-10, atol=1e-10, max_iter=1000)
    assert report["newton"]["iterations"] == stats[0].tolist()
