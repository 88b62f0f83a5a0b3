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

@pytest.mark.parametrize("problem,n", [("lorenz", 1024), ("lorenz96-4", 256),
                                       pytest.param("lorenz96-64", 64, marks=pytest.mark.slow)])  # 64 states: 10 s
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


def _check_saves(method: str, dtype: str, tol: float, saveat: tuple[float, ...], bound: float = 20) -> None:
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
    assert np.max(err[done]) < bound


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", [m if m in ("tsit5", "rosenbrock23") else pytest.param(m, marks=pytest.mark.slow)
                                    for m in METHODS])  # the Rodas kernels (6-11 s each): `make test-all`
def test_saving_at_decades_never_underflows(method, dtype):
    for tol in (1e-4, 1e-6):
        _check_saves(method, dtype, tol, DECADES)


@pytest.mark.slow
@pytest.mark.parametrize("times", [DECADES, RANDOM_TIMES], ids=["decades", "random"])
@pytest.mark.parametrize("tol", TOLS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", METHODS)
def test_saving_never_underflows_exhaustive(method, dtype, tol, times):
    bound = 20
    if method == "rodas4" and times is RANDOM_TIMES and tol >= 1e-5:
        # Rodas4's own interpolant, not a bug (see test_rodas4_dense_output_* below and
        # docs/fairness.md "Rodas4's dense output"): on Prothero-Robinson with lam = 1e4 the step
        # error estimate allows steps of h ~ 0.3-1 (lam*h ~ 1e3-1e4) while the step ends stay
        # within 0.25 tolerance units; inside such a step Hairer's RODAS continuous extension is
        # off by about 1.3e-2 * h^3 (its stiff limit), which is 50-120 tolerance units at 1e-3..1e-5
        # (measured worst 119.8 at 1e-4). An independent NumPy Rodas4 gives the same values.
        bound = 150
    _check_saves(method, dtype, tol, times, bound)


# ---- 3b. Rodas4's dense output is the method's: same values as an independent Rodas4 ----------

def _kernel_pieces(method: str):
    """The generated ``_attempt`` and ``_dense`` of the fused float64 Prothero-Robinson kernel."""
    from solvers.fused.build import load_module
    from solvers.fused.codegen import KernelKey

    mod = load_module(KernelKey("prothero_robinson", method, "adaptive", "float64", save="dense"))
    return mod._attempt, mod._dense


def _kernel_local(method: str, lam: float, t: float, h: float, th: float) -> tuple[float, float]:
    """One step of the fused kernel's Rodas from the exact state at ``t`` (Prothero-Robinson,
    c = 2, w = 1): max-norm errors ``(dense output at t + th*h, step end)``."""
    from solvers.tests.rodas4_reference import prothero_robinson

    attempt, dense = _kernel_pieces(method)
    exact = prothero_robinson(lam)[3]
    y = exact(t)
    o = attempt(y[0], y[1], lam, 2.0, 1.0, t, h, 1.0, 1.0)
    yd = np.array(dense(y[0], y[1], *o[3:], h, th))
    return (float(np.max(np.abs(yd - exact(t + th * h)))),
            float(np.max(np.abs(np.array(o[:2]) - exact(t + h)))))


@pytest.mark.parametrize("tol", [1e-3, 1e-4])
def test_rodas4_dense_output_is_the_methods_own(tol):
    """The fused Rodas4 computes what an independent NumPy Rodas4 (``rodas4_reference``, Hairer's
    RODAS coefficients, DiffEqGPU's controller) computes, at the same steps; and that reference
    shows the same 50-120 tolerance units at the save times while its step ends are within one
    tolerance unit: the error is the interpolant's, not the kernel's."""
    from solvers.tests import rodas4_reference as ref

    prob, n = get_problem("prothero_robinson"), 8
    u0, p = prob.ensemble(n, "float64")
    res = _solve("fused", SolveSpec(prob.name, "rodas4", "adaptive", "float64", n, rtol=tol, atol=tol,
                                    saveat=RANDOM_TIMES))
    attempt, dense = _kernel_pieces("rodas4")
    worst_units = 0.0
    for i in range(n):
        f, jac, tgrad, exact = ref.prothero_robinson(*(float(x) for x in p[i]))
        saved, steps, rejected = ref.integrate(f, jac, tgrad, u0[i], 0.0, 10.0, tol, 1e-3, RANDOM_TIMES)
        assert (len(steps), rejected) == (res.accepted[i], res.rejected[i])
        # measured 5.4e-10 (tol 1e-3): the controllers' log/exp differ in the last bits of h
        np.testing.assert_allclose(res.saved[i], saved, rtol=0, atol=1e-8)
        for t, h, y, y1, K in steps:
            o = attempt(y[0], y[1], *p[i], t, h, tol, tol)
            np.testing.assert_allclose(o[:2], y1, rtol=1e-12, atol=1e-14)
            for th in (0.1, 0.5, 0.9):
                np.testing.assert_allclose(dense(y[0], y[1], *o[3:], h, th), ref.dense(y, y1, K, th),
                                           rtol=1e-12, atol=1e-14)  # measured 6e-15
            end = exact(t + h)
            assert np.max(np.abs(y1 - end) / (tol + tol * np.abs(end))) < 1  # measured <= 0.25
        ex = np.array([exact(s) for s in RANDOM_TIMES])
        worst_units = max(worst_units, float(np.max(np.abs(saved - ex) / (tol + tol * np.abs(ex)))))
    assert 20 < worst_units < 150, worst_units   # measured 52.5 (1e-3), 119.8 (1e-4)


def test_rodas4_dense_output_order():
    """Local errors of one step from the exact state (Prothero-Robinson, t = 1; dense output: the
    max over theta = 0.2, 0.5, 0.8). Non-stiff (lam = 1) the interpolant is of order 3 (local
    error ~ h^4, measured slopes 3.6-4.3); in the stiff limit (lam = 1e8) of order 2 (error
    ~ 1.2e-2 h^3 near theta = 0.2 and 0.8, zero at 1/2), while the step end is exact to ~1e-9
    (its error is ~ h/lam): the step error estimate cannot see the interpolant's error.
    Rodas5P's interpolant, for comparison: ~h^5, and stiff ~3e-4 h^4."""
    def errors(method, lam, hs):
        e = [[_kernel_local(method, lam, 1.0, h, th) for th in (0.2, 0.5, 0.8)] for h in hs]
        d = np.array([max(x[0] for x in row) for row in e])
        return np.log2(d[:-1] / d[1:]), d, np.array([row[0][1] for row in e])

    hs = [1.0, 0.5, 0.25, 0.125]
    s, _, _ = errors("rodas4", 1.0, [h / 8 for h in hs])
    assert np.all((3.6 < s) & (s < 4.4)), s
    s, d, steps = errors("rodas4", 1e8, hs)
    assert np.all((2.8 < s) & (s < 3.3)), s
    assert 0.8e-2 < d[0] < 1.6e-2, d
    assert np.all(steps < 1e-8), steps
    s, d, _ = errors("rodas5p", 1e8, hs)
    assert np.all((3.7 < s) & (s < 4.5)) and d[0] < 1e-3, (s, d)


def test_rodas4_interpolant_is_fourth_order_globally_on_lorenz():
    """Non-stiff, fixed steps (the independent Rodas4; the kernel equals it, test above): on
    Lorenz over [0, 1] the mid-step dense output's global error falls as h^4, like the step
    ends' (measured 2.3e-4, 1.6e-5, 9.9e-7, 6.3e-8 at h = 1/100 ... 1/800; slopes 3.9-4.0)."""
    from scipy.integrate import solve_ivp

    from solvers.tests import rodas4_reference as ref

    sg, r, b = 10.0, 28.0, 8.0 / 3.0

    def f(t, u):
        return np.array([sg * (u[1] - u[0]), u[0] * (r - u[2]) - u[1], u[0] * u[1] - b * u[2]])

    def jac(t, u):
        return np.array([[-sg, sg, 0.0], [r - u[2], -1.0, -u[0]], [u[1], u[0], -b]])

    u0 = np.array([1.0, 0.0, 0.0])
    exact = solve_ivp(f, (0.0, 1.0), u0, method="DOP853", rtol=1e-13, atol=1e-13, dense_output=True).sol
    mid, node = [], []
    for n in (100, 200, 400, 800):
        h, y, em, en = 1.0 / n, u0, 0.0, 0.0
        for k in range(n):
            y1, _, K = ref.step(f, jac, lambda t, u: np.zeros(3), k * h, y, h)
            em = max(em, np.max(np.abs(ref.dense(y, y1, K, 0.5) - exact((k + 0.5) * h))))
            en = max(en, np.max(np.abs(y1 - exact((k + 1) * h))))
            y = y1
        mid.append(em)
        node.append(en)
    for e in (mid, node):
        s = np.log2(np.array(e[:-1]) / np.array(e[1:]))
        assert np.all((3.7 < s) & (s < 4.3)), (e, s)


# ---- 4. Rosenbrock dense output: saving does not change the steps --------------------------------

@pytest.mark.parametrize("method,dtype,tol", [("rosenbrock23", "float64", 1e-4),
                                              pytest.param("rosenbrock23", "float32", 1e-4, marks=pytest.mark.slow),
                                              ("rodas4", "float64", 1e-6),
                                              pytest.param("rodas5p", "float64", 1e-6, marks=pytest.mark.slow)])
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
