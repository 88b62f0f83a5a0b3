"""Every method against the float64 references of the problems it applies to, invariants,
the lane kernel against the serial one, and saving at given times."""
import importlib.util

import numpy as np
import pytest

from problems.reference import max_relative_error, max_scaled_error, reference
from problems.registry import get_problem
from solvers.base import SolveSpec, Status
from solvers.fused.tests.helpers import solve

N = 32

# (problem, dtype, method, mode, bound on max_scaled_error), the error per component in units
# of the tolerance, atol + rtol*|ref| (fixed mode: the problem's default rtol/atol). Bounds:
# * float32 Lorenz, rtol = atol = 1e-8 (below float32 eps): rounding-limited, ~1e-5 relative
#   on states of size ~10 (seen 820 .. 2400 units): bound 1e4 (1e-4 absolute);
# * float32 SIR, default rtol = atol = 1e-6: seen 1.5 units fixed, 0.3 adaptive: bound 5;
# * float64 Robertson at rtol = atol = 1e-8: Rodas4/5P seen 0.008 / 0.03 units: bounds 0.1 /
#   0.3, so a y2 (~1e-10..7e-8) 10% off fails them (see test_a_wrong_y2_fails_the_check);
#   Rosenbrock23 (order 2) accumulates ~25 units over [0, 1e5] (seen 23): bound 60.
CASES = [
    ("lorenz", "float32", "tsit5", "fixed", 1e4),
    ("lorenz", "float32", "tsit5", "adaptive", 1e4),
    ("lorenz", "float32", "rk4", "fixed", 1e4),
    ("lorenz", "float32", "rk4_38", "fixed", 1e4),
    ("sir", "float32", "tsit5", "fixed", 5.0),
    ("sir", "float32", "tsit5", "adaptive", 5.0),
    ("sir", "float32", "rk4", "fixed", 5.0),
    ("sir", "float32", "rk4_38", "fixed", 5.0),
    ("robertson", "float64", "rosenbrock23", "adaptive", 60.0),
    ("robertson", "float64", "rodas4", "adaptive", 0.1),
    ("robertson", "float64", "rodas5p", "adaptive", 0.3),
]


def scaled_error(problem: str, method: str, mode: str, dtype: str, u_final, **tol) -> float:
    """``max_scaled_error`` of ``u_final`` with the tolerances the solve used (``SolveSpec.tol``)."""
    spec = SolveSpec(problem=problem, method=method, mode=mode, dtype=dtype, n=N, **tol)
    return max_scaled_error(u_final, reference(spec.prob, N, dtype), *spec.tol)
# Linear invariants are kept by every Runge-Kutta and Rosenbrock method up to rounding.
INVARIANT_BOUND = {"float32": 1e-5, "float64": 1e-13}


@pytest.mark.parametrize("problem,dtype,method,mode,bound", CASES, ids=lambda v: str(v))
def test_against_reference(problem, dtype, method, mode, bound):
    prob = get_problem(problem)
    res = solve(problem, method, mode, dtype, N)
    assert res.u_final.dtype == np.dtype(dtype)
    assert np.all(res.status == Status.SUCCESS)
    err = scaled_error(problem, method, mode, dtype, res.u_final)
    assert err <= bound, f"max scaled error {err:.3g} > {bound:g}"
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
    pytest.param("robertson", "float64", "rodas5p", "adaptive", marks=pytest.mark.slow),  # 5-6 s
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
    # in tolerance units both land within a few units of their own tolerance
    assert max_scaled_error(tight.u_final, ref, 1e-9, 1e-9) < 50
    assert max_scaled_error(loose.u_final, ref, 1e-5, 1e-5) < 50


def _mutated_kernel(tmp_path, key, old: str, new: str):
    """The serial CPU kernel of ``key`` with one line of its generated source replaced."""
    from solvers.fused.codegen import generate_source

    src = generate_source(key)
    assert src.count(old) == 1, f"mutation site {old!r} not found exactly once"
    path = tmp_path / "mutated_kernel.py"
    path.write_text(src.replace(old, new))
    spec = importlib.util.spec_from_file_location("mutated_kernel", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.solve_serial


def test_a_wrong_y2_fails_the_check(tmp_path):
    """Mutation test: Rodas4 on Robertson with one wrong coefficient, on y2 only (the kernel
    writes 1.1 * y2). The relative measure under its old bound (1e-8) cannot see it (y2 <= 7e-8
    next to y3 ~ 1); the scaled measure under this file's bound rejects it."""
    from solvers.fused.build import collect, kernel_args, make_inputs, make_outputs
    from solvers.fused.codegen import KernelKey

    problem, method, dtype = "robertson", "rodas4", "float64"
    bound = next(c[4] for c in CASES if c[:4] == (problem, dtype, method, "adaptive"))
    prob = get_problem(problem)
    spec = SolveSpec(problem=problem, method=method, mode="adaptive", dtype=dtype, n=N)
    u0, p = spec.ensemble()
    key = KernelKey(problem, method, "adaptive", dtype)
    inputs = make_inputs(u0, p, prob.tspan, dtype, mode="adaptive", dt=spec.step,
                         rtol=spec.tol[0], atol=spec.tol[1], max_steps=spec.max_steps)
    outputs = make_outputs(inputs)
    mutated = _mutated_kernel(tmp_path, key, "out_u[1, i] = y1\n", "out_u[1, i] = y1 * _T(1.1)\n")
    mutated(*kernel_args(inputs, outputs))
    ref = reference(prob, N, dtype)
    errors = {}
    for label, u in (("right", solve(problem, method, "adaptive", dtype, N, variant="serial").u_final),
                     ("wrong", collect(outputs, False).u_final)):
        errors[label] = (max_relative_error(u, ref), max_scaled_error(u, ref, *spec.tol))
    assert errors["right"][1] <= bound
    assert errors["wrong"][0] < 1e-8, "the relative measure was expected to be blind to y2"
    assert errors["wrong"][1] > bound, f"the scaled check accepted a 10% wrong y2: {errors}"


SAVE_CASES = [
    # (problem, dtype, method, mode, saveat, bound): fixed mode saves on the step grid,
    # adaptive Tsit5 interpolates (dense output), adaptive Rosenbrock steps onto the times.
    # Bounds on the scaled error (units of atol + rtol*|ref|, fixed mode: the problem's default
    # tolerances), as in CASES.
    ("lorenz", "float32", "tsit5", "fixed", (0.0, 0.25, 0.5, 0.75, 1.0), 1e4),
    # Tsit5 at rtol = 1e-8 ends 5.3e-6 (relative) off the reference (the final state too): the
    # interpolant adds nothing visible.
    ("lorenz", "float64", "tsit5", "adaptive", tuple(np.linspace(0.0, 1.0, 11)), 2e3),
    ("robertson", "float64", "rosenbrock23", "adaptive", (0.0, 1e-3, 1.0, 1e3, 1e5), 60.0),
]


@pytest.mark.parametrize("problem,dtype,method,mode,saveat,bound", SAVE_CASES, ids=lambda v: str(v)[:20])
def test_saveat(problem, dtype, method, mode, saveat, bound):
    prob = get_problem(problem)
    kw = {"rtol": 1e-8, "atol": 1e-8} if mode == "adaptive" else {}
    res = solve(problem, method, mode, dtype, N, saveat=saveat, **kw)
    assert res.saved.shape == (N, len(saveat), prob.n_states)
    ref = reference(prob, N, dtype, saveat=saveat)
    got = res.saved[ref.indices].astype(np.float64)
    rtol, atol = SolveSpec(problem=problem, method=method, mode=mode, dtype=dtype, n=N, **kw).tol
    err = np.max(np.abs(got - ref.saved) / (atol + rtol * np.abs(ref.saved)))
    assert err <= bound, f"saved states off by {err:.3g} tolerance units"
    np.testing.assert_array_equal(res.saved[:, 0], np.broadcast_to(np.asarray(prob.u0, dtype=dtype), (N, prob.n_states)))
    np.testing.assert_array_equal(res.saved[:, -1], res.u_final)  # the end is the final state, exactly
