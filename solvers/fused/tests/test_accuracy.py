"""Every method against the float64 references of the problems it applies to, invariants,
the lane kernel against the serial one, and saving at given times."""
import numpy as np
import pytest

from problems.reference import max_relative_error, reference
from problems.registry import get_problem
from solvers.base import Status
from solvers.fused.tests.helpers import solve

N = 32

# (problem, dtype, method, mode, bound on max_relative_error). Bounds, from the settings:
# * float32, 1000 fixed steps (Lorenz dt = 1e-3, SIR dt = 0.1): the truncation error is far
#   below float32 rounding, which accumulates to ~1e-5 (seen: 2.7e-6 .. 5.4e-6);
# * float32 adaptive Lorenz at the paper's rtol = atol = 1e-8 (below float32 eps): rounding-
#   limited like the fixed runs; SIR at rtol = 1e-6: 10 * rtol (seen 8.8e-7);
# * float64 Robertson at rtol = atol = 1e-8: Rodas4/5P within rtol (seen 8e-11, 3e-10);
#   Rosenbrock23 (order 2) accumulates ~25 * rtol over [0, 1e5] (seen 2.4e-7): bound 1e-6.
CASES = [
    ("lorenz", "float32", "tsit5", "fixed", 3e-5),
    ("lorenz", "float32", "tsit5", "adaptive", 3e-5),
    ("lorenz", "float32", "rk4", "fixed", 3e-5),
    ("lorenz", "float32", "rk4_38", "fixed", 3e-5),
    ("sir", "float32", "tsit5", "fixed", 3e-5),
    ("sir", "float32", "tsit5", "adaptive", 1e-5),
    ("sir", "float32", "rk4", "fixed", 3e-5),
    ("sir", "float32", "rk4_38", "fixed", 3e-5),
    ("robertson", "float64", "rosenbrock23", "adaptive", 1e-6),
    ("robertson", "float64", "rodas4", "adaptive", 1e-8),
    ("robertson", "float64", "rodas5p", "adaptive", 1e-8),
]
# Linear invariants are kept by every Runge-Kutta and Rosenbrock method up to rounding.
INVARIANT_BOUND = {"float32": 1e-5, "float64": 1e-13}


@pytest.mark.parametrize("problem,dtype,method,mode,bound", CASES, ids=lambda v: str(v))
def test_against_reference(problem, dtype, method, mode, bound):
    prob = get_problem(problem)
    res = solve(problem, method, mode, dtype, N)
    assert res.u_final.dtype == np.dtype(dtype)
    assert np.all(res.status == Status.SUCCESS)
    err = max_relative_error(res.u_final, reference(prob, N, dtype))
    assert err <= bound, f"max relative error {err:.3g} > {bound:g}"
    for inv in prob.invariants:
        drift = np.max(np.abs(inv(res.u_final) - inv(np.asarray(prob.u0))))
        assert drift <= INVARIANT_BOUND[dtype], f"{inv.name} drifts by {drift:.3g}"
    if mode == "fixed":
        assert np.all(res.accepted == round((prob.tspan[1] - prob.tspan[0]) / prob.dt))
        assert np.all(res.rejected == 0)
    else:
        # plausible work: a handful to a few thousand steps, few rejections once started
        assert 5 <= res.accepted.min() and res.accepted.max() <= 5000
        assert np.all(res.rejected <= res.accepted)


@pytest.mark.parametrize("problem,dtype,method,mode", [
    ("lorenz", "float32", "tsit5", "fixed"),
    ("lorenz", "float32", "tsit5", "adaptive"),
    ("robertson", "float64", "rodas5p", "adaptive"),
])
def test_lanes_equal_serial(problem, dtype, method, mode):
    """The masked lane-block kernel computes exactly what one-trajectory-per-iteration does."""
    a = solve(problem, method, mode, dtype, N)
    b = solve(problem, method, mode, dtype, N, variant="serial")
    np.testing.assert_array_equal(a.u_final, b.u_final)
    for name in ("accepted", "rejected", "rhs_evals", "status"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_adaptive_tracks_tolerance():
    """Tighter tolerances take more steps and land closer to the reference (float64)."""
    prob = get_problem("lorenz")
    ref = reference(prob, N, "float64")
    loose = solve("lorenz", "tsit5", "adaptive", "float64", N, rtol=1e-5, atol=1e-5)
    tight = solve("lorenz", "tsit5", "adaptive", "float64", N, rtol=1e-9, atol=1e-9)
    assert tight.accepted.mean() > 3 * loose.accepted.mean()
    assert max_relative_error(tight.u_final, ref) < 1e-3 * max_relative_error(loose.u_final, ref)


SAVE_CASES = [
    # (problem, dtype, method, mode, saveat, bound): fixed mode saves on the step grid,
    # adaptive Tsit5 interpolates (dense output), adaptive Rosenbrock steps onto the times.
    ("lorenz", "float32", "tsit5", "fixed", (0.0, 0.25, 0.5, 0.75, 1.0), 3e-5),
    # Tsit5 at rtol = 1e-8 ends 5.3e-6 off the reference (the final state too): the
    # interpolant adds nothing visible.
    ("lorenz", "float64", "tsit5", "adaptive", tuple(np.linspace(0.0, 1.0, 11)), 2e-5),
    ("robertson", "float64", "rosenbrock23", "adaptive", (0.0, 1e-3, 1.0, 1e3, 1e5), 1e-6),
]


@pytest.mark.parametrize("problem,dtype,method,mode,saveat,bound", SAVE_CASES, ids=lambda v: str(v)[:20])
def test_saveat(problem, dtype, method, mode, saveat, bound):
    prob = get_problem(problem)
    kw = {"rtol": 1e-8, "atol": 1e-8} if mode == "adaptive" else {}
    res = solve(problem, method, mode, dtype, N, saveat=saveat, **kw)
    assert res.saved.shape == (N, len(saveat), prob.n_states)
    ref = reference(prob, N, dtype, saveat=saveat)
    got = res.saved[ref.indices].astype(np.float64)
    scale = np.max(np.abs(ref.saved), axis=2, keepdims=True)
    err = np.max(np.abs(got - ref.saved) / scale)
    assert err <= bound, f"saved states off by {err:.3g}"
    np.testing.assert_array_equal(res.saved[:, 0], np.broadcast_to(np.asarray(prob.u0, dtype=dtype), (N, prob.n_states)))
    np.testing.assert_array_equal(res.saved[:, -1], res.u_final)  # the end is the final state, exactly
