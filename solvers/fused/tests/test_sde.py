"""Fused Euler-Maruyama: same numbers everywhere, weak and strong accuracy, the CRN, purity."""
import math
import re

import numpy as np
import pytest

from problems.registry import get_problem
from problems.sde_core import SDEAccuracy, reference_path
from solvers.base import SolveSpec
from solvers.fused.sde import SDEKernelKey, generate_source, run_cpu
from solvers.registry import get_backend

LIN = get_problem("linear_sde")


def _solve(spec):
    be = get_backend(spec_backend := "fused")
    assert be.check(spec) is None, spec_backend
    prep = be.prepare(spec)
    out = prep.run()
    prep.sync(out)
    return prep.fetch(out)


def test_lanes_and_serial_kernels_draw_the_same_numbers():
    u0, p = LIN.ensemble(40, "float32")
    a = run_cpu("linear_sde", u0, p, dt=LIN.dt, n_steps=256, variant="lanes")
    b = run_cpu("linear_sde", u0, p, dt=LIN.dt, n_steps=256, variant="serial")
    assert np.array_equal(a, b)


def test_results_do_not_depend_on_n():
    u0, p = LIN.ensemble(64, "float64")
    big = run_cpu("linear_sde", u0, p, dt=LIN.dt, n_steps=256, seed=7)
    small = run_cpu("linear_sde", u0[:5].copy(), p[:5].copy(), dt=LIN.dt, n_steps=256, seed=7)
    assert np.array_equal(big[:5], small)
    other_seed = run_cpu("linear_sde", u0[:5].copy(), p[:5].copy(), dt=LIN.dt, n_steps=256, seed=8)
    assert not np.array_equal(small, other_seed)


def test_fused_matches_float64_numpy_path_with_the_same_increments():
    spec = SolveSpec("linear_sde", "em", "fixed", "float64", 16, seed=3)
    u = _solve(spec).u_final
    ref = reference_path(LIN, spec, np.arange(16))
    np.testing.assert_allclose(u, ref, rtol=1e-12)
    spec32 = spec.with_(dtype="float32")
    np.testing.assert_allclose(_solve(spec32).u_final, ref, rtol=2e-5)


def test_fused_and_array_replica_agree_with_the_same_increments():
    spec = SolveSpec("linear_sde", "em", "fixed", "float64", 32, seed=1)
    fused = _solve(spec).u_final
    arr = get_backend("array")
    prep = arr.prepare(spec.with_(variant="philox"))
    out = prep.run()
    np.testing.assert_allclose(prep.fetch(out).u_final, fused, rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weak_accuracy_at_65536(dtype):
    spec = SolveSpec("linear_sde", "em", "fixed", dtype, 2 ** 16)
    res = _solve(spec)
    check = SDEAccuracy(LIN, spec).weak_check(res.u_final.astype(np.float64))
    assert check["ok"], check


def test_weak_check_catches_a_wrong_diffusion():
    """Negative control: doubling the noise (p2 = 0.02) must fail the variance check."""
    spec = SolveSpec("linear_sde", "em", "fixed", "float64", 2 ** 14)
    u0, p = LIN.ensemble(spec.n, "float64")
    p[:, 1] *= 2
    u = run_cpu("linear_sde", u0, p, dt=LIN.dt, n_steps=256)
    assert not SDEAccuracy(LIN, spec).weak_check(u)["ok"]


def _strong_errors(p1, p2, n=2000, fine_log2=11, coarse_log2=(4, 5, 6, 7)):
    """Mean |X_dt(1) - X_fine(1)| over n paths, the coarse paths the sums of the fine increments."""
    u0 = np.full((n, 3), 0.1)
    p = np.tile([p1, p2], (n, 1))
    fine = run_cpu("linear_sde", u0, p, dt=2.0 ** -fine_log2, n_steps=2 ** fine_log2, seed=11)
    errs = []
    for k in coarse_log2:
        refine = 2 ** (fine_log2 - k)
        coarse = run_cpu("linear_sde", u0, p, dt=2.0 ** -k, n_steps=2 ** k, seed=11, refine=refine)
        errs.append(np.abs(coarse - fine).mean())
    dts = [2.0 ** -k for k in coarse_log2]
    return np.polyfit(np.log(dts), np.log(errs), 1)[0]


def test_strong_order_one_half_for_multiplicative_noise():
    """Large noise (p2 = 1): the Ito-Taylor term 1/2 b^2 u (dW^2 - dt) that EM drops dominates:
    EM is not Milstein-equivalent for multiplicative noise, strong order 0.5."""
    order = _strong_errors(0.0, 1.0)
    assert 0.35 <= order <= 0.65, order


def test_strong_order_near_one_at_the_protocols_small_noise():
    """p = (1.5, 0.01): the dropped term's coefficient is b^2 = 1e-4, far below the drift's
    O(dt) error, so over practical dt the observed strong order is ~1 (asymptotically 0.5)."""
    order = _strong_errors(1.5, 0.01)
    assert 0.85 <= order <= 1.15, order


CRN = get_problem("crn_sigmagen_short")


def test_crn_finite_over_the_grid_and_matches_float64_path():
    spec = SolveSpec("crn_sigmagen_short", "em", "fixed", "float32", 6720, seed=2)
    res = _solve(spec)
    assert np.isfinite(res.u_final).all()
    err, note = CRN.reference_for(spec).accuracy(res)
    assert err < 1e-3, (err, note)


def test_crn_diffusion_takes_abs_under_the_square_root():
    """As the artifact: sqrt(|a_j|), so a Langevin path that dips below zero stays real."""
    g = CRN.diffusion_for(math)((-0.5, -0.1, 0.2, 0.3), (1.0, 1.0, 1.0, 0.01, 2.0, 0.1, 1.0), 0.0)
    flat = [x for row in g for x in row]
    assert all(math.isfinite(x) for x in flat)
    assert g[0][1] == pytest.approx(-0.1 * math.sqrt(0.5))


def test_crn_grid_sizes_are_validated():
    with pytest.raises(ValueError, match="1680 k"):
        CRN.ensemble(100)
    u0, p = CRN.ensemble(6720)
    assert u0.shape == (6720, 4) and p.shape == (6720, 7)
    assert (u0[:, 0] == p[:, 3]).all()  # u0 = (v0, v0, v0, v0)


class _FakeDevice:
    """numba-cuda compiles a kernel's device functions for the current device's compute
    capability; with no driver here, tell it sm_90 (the H100/H200) so compile_ptx works."""

    compute_capability = (9, 0)


def test_generated_cuda_source_compiles_to_ptx_without_f64(monkeypatch):
    """The CUDA kernel (one thread per trajectory) compiles, and float32 stays float32."""
    pytest.importorskip("numba.cuda")
    import numba.cuda.dispatcher as cuda_dispatcher
    from numba import cuda

    from solvers.fused.sde import load_module

    monkeypatch.setattr(cuda_dispatcher, "get_current_device", lambda: _FakeDevice())

    for problem in ("linear_sde", "crn_sigmagen"):
        mod = load_module(SDEKernelKey(problem, "float32", "cuda"))
        import numba

        arr = numba.float32[:, ::1]
        sig = (arr, arr, arr, numba.int64, numba.float32, numba.float32, numba.float32, numba.int64, numba.int64)
        ptx, _ = cuda.compile_ptx(mod.solve_kernel.py_func, sig, cc=(9, 0))
        assert ".entry" in ptx
        f64 = [l.strip() for l in ptx.splitlines()
               if not l.strip().startswith("//") and (".f64" in l or "%fd" in l)]
        # The only double-precision code allowed: libdevice's sinf/cosf large-argument range
        # reduction (Payne-Hanek: k * 2^-64 * 2/pi-style products), a branch taken only for
        # |angle| beyond ~1e5; Box-Muller's angle lies in [0, 2 pi).
        libdevice = re.compile(r"^(\.reg \.f64\s+%fd<\d+>;|cvt\.rn\.f64\.s64\s+%fd\d+, %rd\d+;|"
                               r"mul\.f64\s+%fd\d+, %fd\d+, 0d3BF921FB54442D19;|cvt\.rn\.f32\.f64\s+%f\d+, %fd\d+;)$")
        assert all(libdevice.match(l) for l in f64), (problem, [l for l in f64 if not libdevice.match(l)])


def test_source_is_one_definition_for_both_targets():
    cpu = generate_source(SDEKernelKey("linear_sde", "float32", "cpu"))
    gpu = generate_source(SDEKernelKey("linear_sde", "float32", "cuda"))
    step = lambda s: s[s.index("def _step"):s.index("def _solve_one")]  # noqa: E731
    assert step(cpu) == step(gpu)
