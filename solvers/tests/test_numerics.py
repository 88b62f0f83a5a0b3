"""Numerics as DiffEqGPU computes them (issue 28): float32 accuracy of the sums, Newton without
FMA surprises, save times that cannot underflow a step."""
from __future__ import annotations

import numpy as np
import pytest

from problems.reference import reference
from problems.registry import get_problem
from solvers.base import SolveSpec, Status
from solvers.registry import get_backend


def _solve(backend: str, spec: SolveSpec):
    b = get_backend(backend)
    ok, why = b.available("cpu")
    if not ok:
        pytest.skip(f"{backend} not available: {why}")
    prep = b.prepare(spec)
    try:
        out = prep.run()
        prep.sync(out)
        return prep.fetch(out)
    finally:
        prep.close()


def _max_rel_err(problem: str, n: int, u_final) -> float:
    ref = reference(get_problem(problem), n, "float32")
    got = np.asarray(u_final, np.float64)[ref.indices]
    scale = np.max(np.abs(ref.u_final), axis=1)
    return float(np.max(np.max(np.abs(got - ref.u_final), axis=1) / scale))


# ---- 1. the sums: float32 fixed-step accuracy at diffrax's ---------------------------------------

@pytest.mark.parametrize("problem,n", [("lorenz", 1024), ("lorenz96-4", 256), ("lorenz96-64", 64)])
@pytest.mark.parametrize("backend", ["fused", "array"])
def test_float32_fixed_step_error_is_diffrax_tsit5s(backend, problem, n):
    """Summing the stages first (y + h*(sum a_ij k_j)) gives diffrax's float32 error; adding each
    h*a_ij*k_j to y in turn was 2.5-6x worse (issue 28)."""
    spec = SolveSpec(problem, "tsit5", "fixed", "float32", n, dt=1e-3)
    ours = _max_rel_err(problem, n, _solve(backend, spec).u_final)
    peer = _max_rel_err(problem, n, _solve("diffrax", spec).u_final)
    assert ours <= 1.3 * peer, (ours, peer)


# ---- 2. float32 Newton: as many failures as a Newton without contraction ------------------------

def _numpy_newton_failures(x: np.ndarray, p: np.ndarray, rtol: float, atol: float,
                           max_iter: int) -> int:
    """A float32 Newton on the generalized Rosenbrock system written for this test: every
    operation an element-wise NumPy float32 operation over the systems (no FMA), Gaussian
    elimination with partial pivoting, the fused kernel's stopping rules. Returns the number of
    systems that end in anything but success."""
    f32 = np.float32
    rtol, atol = f32(rtol), f32(atol)
    n, d = x.shape
    x = x.astype(f32).copy()
    p0, p1 = p[:, 0].astype(f32), p[:, 1].astype(f32)
    running = np.ones(n, bool)
    ok = np.zeros(n, bool)
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            F = np.empty((n, d), f32)
            F[:, 0] = p0 - x[:, 0]
            for i in range(1, d):
                F[:, i] = p1 * (-(x[:, i - 1] * x[:, i - 1]) + x[:, i])
            A = np.zeros((n, d, d + 1), f32)
            A[:, 0, 0] = f32(-1)
            for i in range(1, d):
                A[:, i, i - 1] = f32(-2) * p1 * x[:, i - 1]
                A[:, i, i] = p1
            A[:, :, d] = -F
            fin_f = np.all(np.isfinite(F), axis=1)
            singular = np.zeros(n, bool)
            for k in range(d):
                for r in range(k + 1, d):
                    swap = np.abs(A[:, r, k]) > np.abs(A[:, k, k])
                    rk, rr = A[:, k, :].copy(), A[:, r, :].copy()
                    A[:, k, :] = np.where(swap[:, None], rr, rk)
                    A[:, r, :] = np.where(swap[:, None], rk, rr)
                piv = A[:, k, k]
                singular |= piv == 0
                for r in range(k + 1, d):
                    f = A[:, r, k] / piv
                    for c in range(k + 1, d + 1):
                        A[:, r, c] = A[:, r, c] - f * A[:, k, c]
            s = np.empty((n, d), f32)
            for r in range(d - 1, -1, -1):
                acc = A[:, r, d]
                for c in range(r + 1, d):
                    acc = acc - A[:, r, c] * s[:, c]
                s[:, r] = acc / A[:, r, r]
            y = x + s
            conv = np.all((np.abs(s) < atol + rtol * np.abs(y)) & (np.abs(F) < atol), axis=1)
            fin = np.all(np.isfinite(y), axis=1) & fin_f
            # stop: non-finite residual, singular, non-finite step, converged
            stop_bad = running & (~fin_f | singular | ~fin)
            stop_ok = running & ~stop_bad & conv
            x = np.where((running & fin_f & ~singular)[:, None], y, x)
            ok |= stop_ok
            running &= ~(stop_bad | stop_ok)
            if not running.any():
                break
    return int(n - ok.sum())


@pytest.mark.parametrize("n", [16384, pytest.param(131072, marks=pytest.mark.slow)])
def test_float32_newton_fails_as_often_as_a_newton_without_contraction(n):
    from solvers.fused.nonlinear import run_cpu

    prob = get_problem("generalized_rosenbrock")
    x0, p = prob.ensemble(n, "float32")
    _, _, status = run_cpu(prob.name, "newton", x0, p, rtol=1e-5, atol=1e-5, max_iter=50)
    ours = int((status != int(Status.SUCCESS)).sum())
    theirs = _numpy_newton_failures(x0, p, 1e-5, 1e-5, 50)
    assert theirs > 0
    assert ours <= 1.2 * theirs, (ours, theirs)


# ---- 3. save times that cannot underflow a step ------------------------------------------------

DECADES = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)
RANDOM_TIMES = tuple(sorted(np.random.default_rng(0).uniform(0.0, 10.0, 20).round(6)))
METHODS = ("tsit5", "rosenbrock23", "rodas4", "rodas5p")
TOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)


def _expected(problem: str, dtype: str, n: int, saveat: tuple[float, ...]) -> np.ndarray:
    """(n, len(saveat), n_states) float64: the closed form (Prothero-Robinson) or the
    reference solution (SciPy, rtol 1e-12) at the save times."""
    prob = get_problem(problem)
    if problem == "prothero_robinson":
        from problems.prothero_robinson import exact_solution

        u0, p = prob.ensemble(n, dtype)
        return np.array([[exact_solution(u0[i].astype(float), p[i].astype(float), s) for s in saveat]
                         for i in range(n)])
    return reference(prob, n, dtype, saveat=saveat).saved


def _check_saves(method: str, dtype: str, tol: float, saveat: tuple[float, ...]) -> None:
    # Tsit5 is refused on the stiff Prothero-Robinson problem: Lorenz (t in [0, 1]) instead.
    problem = "lorenz" if method == "tsit5" else "prothero_robinson"
    tf = get_problem(problem).tspan[1]
    saveat = tuple(s for s in saveat if s <= tf)
    n = 8
    spec = SolveSpec(problem, method, "adaptive", dtype, n, rtol=tol, atol=tol, saveat=saveat)
    res = _solve("fused", spec)
    # Rodas4 at 1e-4 and Rodas5P at 1e-4 / 1e-6 (float64, decades, "stop" saving) stopped the
    # lam = 1 trajectory here after 4 steps: a step one rounding short of 1e-3, then a ~1e-18
    # landing step whose successor fell below dtmin.
    assert not np.any(res.status == int(Status.DT_UNDERFLOW)), res.status
    if dtype == "float32" and tol < 1e-5:
        return  # below float32's reach: MAX_STEPS is a legitimate outcome there
    done = res.status == int(Status.SUCCESS)  # the stiffest trajectories may run out of steps
    assert done.any(), res.status
    exact = _expected(problem, dtype, n, saveat)
    err = np.abs(res.saved - exact) / (tol + tol * np.abs(exact))
    assert np.max(err[done]) < 20


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", METHODS)
def test_saving_at_decades_never_underflows(method, dtype):
    for tol in (1e-4, 1e-6):
        _check_saves(method, dtype, tol, DECADES)


@pytest.mark.slow
@pytest.mark.parametrize("times", [DECADES, RANDOM_TIMES], ids=["decades", "random"])
@pytest.mark.parametrize("tol", TOLS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", METHODS)
def test_saving_never_underflows_exhaustive(method, dtype, tol, times, request):
    if method == "rodas4" and times is RANDOM_TIMES and tol >= 1e-5:
        # Open finding: no underflow, but Rodas4's interpolated values at random save times on
        # Prothero-Robinson (lambda = 1e4) are 50-120 tolerance units off at tolerances 1e-3..1e-5,
        # while Rodas5P and Rosenbrock23 pass. Unconfirmed hypothesis: the order reduction of the
        # original RODAS dense output on stiff components that Steinebach's Rodas4P2/Rodas5P
        # dense output was designed to remove (the H rows match OrdinaryDiffEq's Rodas4Tableau).
        request.applymarker(pytest.mark.xfail(strict=True, reason="Rodas4 dense output off at loose tolerances"))
    _check_saves(method, dtype, tol, times)


# ---- 4. Rosenbrock dense output: saving does not change the steps --------------------------------

@pytest.mark.parametrize("method,dtype,tol", [("rosenbrock23", "float64", 1e-4), ("rosenbrock23", "float32", 1e-4),
                                              ("rodas4", "float64", 1e-6), ("rodas5p", "float64", 1e-6)])
def test_rosenbrock_dense_output_keeps_the_steps(method, dtype, tol):
    from problems.prothero_robinson import exact_solution

    prob = get_problem("prothero_robinson")
    n, times = 8, tuple(np.linspace(0.05, 10.0, 100).round(6))
    spec = SolveSpec(prob.name, method, "adaptive", dtype, n, rtol=tol, atol=tol)
    end = _solve("fused", spec)
    dense = _solve("fused", spec.with_(saveat=times))
    stop = _solve("fused", spec.with_(saveat=times, variant="stop"))
    np.testing.assert_array_equal(dense.accepted, end.accepted)
    np.testing.assert_array_equal(dense.rejected, end.rejected)
    assert np.all(stop.accepted > end.accepted)  # clipping at 100 save times adds steps
    assert np.all(dense.status == int(Status.SUCCESS))
    u0, p = prob.ensemble(n, dtype)
    exact = np.array([[exact_solution(u0[i].astype(float), p[i].astype(float), s) for s in times]
                      for i in range(n)])
    # Measured worst 5.6 tolerance units (Rodas4, lam = 1e4: the interpolant is of lower order
    # than the step and this component is stiff); a wrong interpolant is off by orders more.
    assert np.max(np.abs(dense.saved - exact) / (tol + tol * np.abs(exact))) < 20


def test_tsit5_interpolant_matches_the_reference_at_save_times():
    n, tol, times = 8, 1e-8, tuple(np.linspace(0.01, 1.0, 50).round(6))
    res = _solve("fused", SolveSpec("lorenz", "tsit5", "adaptive", "float64", n, rtol=tol, atol=tol,
                                    saveat=times))
    assert np.all(res.status == int(Status.SUCCESS))
    exact = _expected("lorenz", "float64", n, times)
    assert np.max(np.abs(res.saved - exact) / (tol + tol * np.abs(exact))) < 20
