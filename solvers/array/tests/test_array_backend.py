"""The array-style replica: interface, agreement with a scalar stepper, accuracy, saving, status."""
from __future__ import annotations

import numpy as np
import pytest

from harness.measure.launches import count_launches
from problems.reference import max_scaled_error, reference
from solvers.array.backend import ArrayBackend, namespace
from solvers.array.drivers import solve_fixed, solve_lockstep, solve_shared
from solvers.array.steppers import Ensemble, ExplicitStepper, tsit5_dense_weights_lanes
from solvers.array.tests import scalar_reference as sr
from solvers.base import SolveSpec, Status, UnsupportedError
from solvers.registry import get_backend
from solvers.tableaus import (DIFFEQGPU_PI, ROSENBROCK23, TSIT5, PIController, get_controller,
                              get_tableau, tsit5_dense_weights)

BACKEND = ArrayBackend()


def solve(spec: SolveSpec):
    prepared = BACKEND.prepare(spec)
    out = prepared.run()
    prepared.sync(out)
    result = prepared.fetch(out)
    prepared.close()
    return result


# ---- interface ----------------------------------------------------------------------------------

def test_registered_under_its_name():
    assert isinstance(get_backend("array"), ArrayBackend)
    assert BACKEND.available("cpu")[0]


def test_gpu_unavailable_without_cupy_says_why():
    try:
        import cupy  # noqa: F401
    except ImportError:
        ok, why = BACKEND.available("gpu")
        assert not ok and "cupy" in why
    else:
        pytest.skip("cupy is importable here")


def test_step_control_names():
    assert BACKEND.step_control(SolveSpec("lorenz", "tsit5", "fixed", "float32", 8)) == "none"
    assert BACKEND.step_control(SolveSpec("lorenz", "tsit5", "adaptive", "float32", 8)) == "lockstep"
    shared = SolveSpec("lorenz", "tsit5", "adaptive", "float32", 8, variant="shared")
    assert BACKEND.step_control(shared) == "shared"
    assert BACKEND.settings(shared)["error_norm"].startswith("RMS over all states")


@pytest.mark.parametrize("spec, words", [
    (SolveSpec("lorenz", "rk4", "adaptive", "float32", 8), "no adaptive mode"),
    (SolveSpec("lorenz", "dopri5", "adaptive", "float32", 8), "no method"),
    (SolveSpec("lorenz", "tsit5", "fixed", "float32", 8, variant="shared"), "fixed mode has none"),
    (SolveSpec("lorenz", "tsit5", "adaptive", "float32", 8, variant="vmap"), "no variant"),
    (SolveSpec("robertson", "tsit5", "adaptive", "float64", 8), "stiff"),
    (SolveSpec("robertson", "rosenbrock23", "adaptive", "float64", 8, saveat=(1.0,)), "dense output"),
    (SolveSpec("lorenz", "tsit5", "fixed", "float32", 8, saveat=(0.0105,)), "step grid"),
])
def test_unsupported_combinations_are_refused_with_a_reason(spec, words):
    assert words in BACKEND.check(spec)
    with pytest.raises(UnsupportedError, match=words):
        BACKEND.prepare(spec)


def test_namespace_refuses_unknown_devices():
    with pytest.raises(ValueError, match="cpu, gpu"):
        namespace("tpu")


# ---- agreement with a slow scalar stepper (no shared code but the tableaus) ---------------------

@pytest.mark.parametrize("method", ["tsit5", "rk4", "rk4_38"])
@pytest.mark.parametrize("problem, dtype", [("lorenz", "float32"), ("lorenz", "float64"),
                                            ("sir", "float32")])
def test_fixed_step_equals_scalar_stepper_bitwise(problem, method, dtype):
    spec = SolveSpec(problem, method, "fixed", dtype, 4, dt=0.01 if problem == "lorenz" else 0.5)
    result = solve(spec)
    u0, p = spec.ensemble()
    expected = np.array([sr.fixed_solve(spec.prob, get_tableau(method), u0[i], p[i], spec.step,
                                        spec.n_steps, dtype) for i in range(spec.n)])
    assert result.u_final.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(result.u_final, expected)
    assert (result.accepted == spec.n_steps).all() and (result.rejected == 0).all()
    per_step = 6 if method == "tsit5" else 4  # Tsit5 skips its FSAL stage in fixed steps
    assert (result.rhs_evals == per_step * spec.n_steps).all()


@pytest.mark.parametrize("problem", ["lorenz", "sir"])
def test_lockstep_reproduces_each_trajectorys_own_step_sequence(problem):
    spec = SolveSpec(problem, "tsit5", "adaptive", "float64", 6, rtol=1e-6, atol=1e-6)
    result = solve(spec)
    u0, p = spec.ensemble()
    runs = [sr.adaptive_solve(spec.prob, sr.tsit5_like_step(TSIT5), u0[i], p[i], spec.step,
                              1e-6, 1e-6, DIFFEQGPU_PI, "float64") for i in range(spec.n)]
    np.testing.assert_array_equal(result.accepted, [r[1] for r in runs])
    np.testing.assert_array_equal(result.rejected, [r[2] for r in runs])
    np.testing.assert_array_equal(result.status, [r[3] for r in runs])
    # same step sequence; pow in NumPy's vector loop may differ from the scalar one by an ulp
    np.testing.assert_allclose(result.u_final, np.array([r[0] for r in runs]), rtol=1e-12, atol=1e-14)
    assert len(set(result.accepted)) > 1, "trajectories should need different step counts"
    assert result.notes["lockstep_iterations"] >= (result.accepted + result.rejected).max()
    assert (result.status == Status.SUCCESS).all()
    assert (result.rhs_evals == 1 + 6 * (result.accepted + result.rejected)).all()


def test_rosenbrock23_lockstep_reproduces_the_scalar_step_sequence():
    spec = SolveSpec("robertson", "rosenbrock23", "adaptive", "float64", 4, rtol=1e-5, atol=1e-5)
    result = solve(spec)
    u0, p = spec.ensemble()
    ctrl = get_controller("diffeqgpu", order=ROSENBROCK23.order)
    runs = [sr.adaptive_solve(spec.prob, sr.rosenbrock23_step(spec.prob), u0[i], p[i], spec.step,
                              1e-5, 1e-5, ctrl, "float64") for i in range(spec.n)]
    np.testing.assert_array_equal(result.accepted, [r[1] for r in runs])
    np.testing.assert_array_equal(result.rejected, [r[2] for r in runs])
    np.testing.assert_allclose(result.u_final, np.array([r[0] for r in runs]), rtol=1e-10, atol=1e-14)
    assert (result.rhs_evals == 1 + 2 * (result.accepted + result.rejected)).all()


@pytest.mark.parametrize("problem, method", [("lorenz", "tsit5"), ("robertson", "rosenbrock23")])
def test_shared_step_is_one_solve_of_the_concatenated_system(problem, method):
    spec = SolveSpec(problem, method, "adaptive", "float64", 5, rtol=1e-5, atol=1e-5,
                     variant="shared")
    result = solve(spec)
    u0, p = spec.ensemble()
    if method == "tsit5":
        step, ctrl = sr.tsit5_like_step(TSIT5), DIFFEQGPU_PI
    else:
        step, ctrl = sr.rosenbrock23_step(spec.prob), get_controller("diffeqgpu", order=2)
    expected, accepted, rejected = sr.shared_adaptive_solve(spec.prob, step, u0, p, spec.step,
                                                            1e-5, 1e-5, ctrl)
    assert result.notes["step_scope"] == "shared"
    assert (result.accepted == accepted).all() and (result.rejected == rejected).all()
    np.testing.assert_allclose(result.u_final, expected, rtol=1e-10, atol=1e-14)


def test_shared_step_count_is_not_bounded_by_the_slowest_trajectory():
    """The batch-wide RMS norm dilutes the hardest trajectory's error with the easier ones' (as
    torchdiffeq's and EnsembleGPUArray's norms do), so a shared step can take FEWER steps than
    the slowest trajectory alone, leaving that trajectory's own error above tolerance."""
    common = dict(problem="lorenz", method="tsit5", mode="adaptive", dtype="float64", n=8,
                  rtol=1e-5, atol=1e-5)
    per_trajectory = solve(SolveSpec(**common))
    shared = solve(SolveSpec(**common, variant="shared"))
    assert shared.accepted[0] < per_trajectory.accepted.max()
    assert shared.accepted[0] > per_trajectory.accepted.min()


# ---- accuracy against the float64 SciPy references ----------------------------------------------

ACCURACY_CASES = [
    # problem, method, mode, dtype, tolerance, bound on the max scaled error (per component, in
    # units of atol + rtol*|ref|; fixed mode: the problem's default tolerances). Seen: 1400,
    # 0.05, 0.15 (shared 0.59), 1.5, 5e-5, 0.28, 4.2 (shared 5.5).
    ("lorenz", "tsit5", "fixed", "float32", None, 1e4),
    ("lorenz", "rk4", "fixed", "float64", None, 1.0),
    ("lorenz", "tsit5", "adaptive", "float64", 1e-8, 5.0),
    ("sir", "tsit5", "fixed", "float32", None, 5.0),
    ("sir", "rk4", "fixed", "float64", None, 0.01),
    ("sir", "tsit5", "adaptive", "float32", 1e-6, 5.0),
    ("robertson", "rosenbrock23", "adaptive", "float64", 1e-6, 20.0),
]


@pytest.mark.parametrize("problem, method, mode, dtype, tol, bound, variant", [
    case + (variant,) for case in ACCURACY_CASES
    for variant in (("", "shared") if case[2] == "adaptive" else ("",))])
def test_final_states_match_the_reference(problem, method, mode, dtype, tol, bound, variant):
    spec = SolveSpec(problem, method, mode, dtype, 8, rtol=tol, atol=tol, variant=variant)
    result = solve(spec)
    assert (result.status == Status.SUCCESS).all()
    assert max_scaled_error(result.u_final, reference(spec.prob, spec.n, dtype), *spec.tol) < bound


# ---- saving -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, variant, method", [("fixed", "", "tsit5"), ("fixed", "", "rk4"),
                                                   ("adaptive", "", "tsit5"),
                                                   ("adaptive", "shared", "tsit5")])
def test_saveat_matches_the_reference(mode, variant, method):
    # the start, the end, and times inside; fixed steps (dt = 0.1) save on their grid only
    saveat = (0.0, 10.0, 12.5, 33.33, 100.0) if mode == "adaptive" else (0.0, 10.0, 50.0, 100.0)
    spec = SolveSpec("sir", method, mode, "float64", 5, dt=0.1, rtol=1e-8, atol=1e-8,
                     variant=variant, saveat=saveat)
    result = solve(spec)
    ref = reference(spec.prob, spec.n, "float64", saveat)
    assert result.saved.shape == (5, len(saveat), 3)
    np.testing.assert_array_equal(result.saved[:, 0], spec.ensemble()[0])
    np.testing.assert_allclose(result.saved, ref.saved, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.saved[:, -1], result.u_final, rtol=1e-12)


def test_lane_dense_weights_equal_the_scalar_definition():
    theta = np.array([0.0, 0.1, 0.37, 0.5, 0.999, 1.0])
    lanes = tsit5_dense_weights_lanes(theta)
    for i, th in enumerate(theta):
        assert tuple(w[i] for w in lanes) == tsit5_dense_weights(th)


# ---- status codes: trajectories fail on their own ----------------------------------------------

def blow_up_ensemble(scale):
    """u' = p u^2, u(0) = 1: finite for p = 0, infinite at t = 1 for p = 1, NaN for p = NaN."""
    p = np.asarray(scale, dtype=np.float64)
    ens = Ensemble(xp=np, rhs=lambda u, params, t: (params[0] * u[0] * u[0],), params=(p,),
                   n_lanes=len(p), dtype=np.dtype("float64"))
    return ens, np.ones((1, len(p)))


def test_fixed_mode_flags_the_trajectory_that_overflowed():
    ens, u0 = blow_up_ensemble([0.0, 1.0])
    with np.errstate(all="ignore"):
        sol = solve_fixed(ExplicitStepper(TSIT5, ens), ens, u0, 0.0, 0.5, 8, None)
    np.testing.assert_array_equal(sol.status, [Status.SUCCESS, Status.NONFINITE])
    assert sol.u[0, 0] == 1.0


@pytest.mark.parametrize("ctrl, max_steps, failure", [
    (DIFFEQGPU_PI, 40, Status.MAX_STEPS),
    (PIController(dtmin=1e-2), 100_000, Status.DT_UNDERFLOW),
])
def test_lockstep_retires_a_failing_trajectory_and_finishes_the_others(ctrl, max_steps, failure):
    ens, u0 = blow_up_ensemble([0.0, 1.0, 0.0])
    with np.errstate(all="ignore"):
        sol = solve_lockstep(ExplicitStepper(TSIT5, ens), ens, u0, (0.0, 2.0), 0.05, 1e-6, 1e-6,
                             ctrl, max_steps, None)
    np.testing.assert_array_equal(sol.status, [Status.SUCCESS, failure, Status.SUCCESS])
    np.testing.assert_array_equal(sol.u[0, [0, 2]], [1.0, 1.0])
    if failure == Status.MAX_STEPS:
        assert sol.accepted[1] + sol.rejected[1] == max_steps
    assert sol.accepted[0] == sol.accepted[2] < 10  # u' = 0: the step grows 9x per step


def test_nan_trajectory_is_nonfinite_alone_in_lockstep_but_stops_a_shared_batch():
    ens, u0 = blow_up_ensemble([0.0, np.nan])
    args = (ens, u0, (0.0, 2.0), 1e-3, 1e-6, 1e-6, DIFFEQGPU_PI, 1000, None)
    with np.errstate(all="ignore"):
        lockstep = solve_lockstep(ExplicitStepper(TSIT5, ens), *args)
        shared = solve_shared(ExplicitStepper(TSIT5, ens), *args)
    np.testing.assert_array_equal(lockstep.status, [Status.SUCCESS, Status.NONFINITE])
    np.testing.assert_array_equal(shared.status, [Status.NONFINITE, Status.NONFINITE])


# ---- operations dispatched per step (hand-counted) ----------------------------------------------

# Lorenz rhs: sigma*(y-x) 2, x*(rho-z)-y 3, x*y-beta*z 3, plus one xp.stack = 9 operations.
# A sum u + h*(a_1 k_1 + ... + a_m k_m) costs 2m + 1 (m products, m - 1 adds, h*, u+), one
# less per a_ij == 1 (added as is). Classic RK4 step: 4 rhs (36); stages 2-4 have one nonzero
# a each, the last a 1 (3 + 3 + 2); solution 9: 53. Tsit5 fixed step (FSAL stage skipped):
# 6 rhs (54); stages with 1..5 terms (35); solution 6 terms (13): 102.
@pytest.mark.parametrize("method, per_step", [("rk4", 53), ("tsit5", 102)])
def test_operation_count_per_fixed_step_is_the_hand_count_at_any_n(method, per_step):
    counts = {}
    for n in (4, 64):
        for dt in (0.5, 0.25):
            prepared = BACKEND.prepare(SolveSpec("lorenz", method, "fixed", "float32", n, dt=dt))
            count, how = count_launches(prepared, "cpu")
            counts[n, dt] = count
            assert how.startswith("cpu: NumPy array operations")
    assert counts[4, 0.25] - counts[4, 0.5] == 2 * per_step
    assert counts[4, 0.5] == counts[64, 0.5] and counts[4, 0.25] == counts[64, 0.25]


# ---- the fused solver (imported, not skipped: a broken fused import must fail these tests) ------

def fused_backend():
    return get_backend("fused")


def run_fused(spec: SolveSpec):
    prepared = fused_backend().prepare(spec)
    out = prepared.run()
    prepared.sync(out)
    result = prepared.fetch(out)
    prepared.close()
    return result


def trajectory_ulps(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference in ulps of each trajectory's largest state (components near zero
    would make per-component ulps meaningless)."""
    scale = np.spacing(np.abs(expected).max(axis=1, keepdims=True))
    return float((np.abs(got - expected) / scale).max())


@pytest.mark.parametrize("method", ["tsit5", "rk4", "rk4_38"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fixed_step_matches_the_fused_cpu_kernel(method, dtype):
    spec = SolveSpec("lorenz", method, "fixed", dtype, 16, dt=0.01)
    expected = run_fused(spec)
    got = solve(spec)
    # Same expressions in the same order, but the fused CPU kernel lets LLVM contract a*b + c
    # into FMAs (fastmath "contract"), NumPy cannot: measured <= 20 ulps after 100 steps.
    assert trajectory_ulps(got.u_final, expected.u_final) <= 64
    np.testing.assert_array_equal(got.accepted, expected.accepted)
    np.testing.assert_array_equal(got.rhs_evals, expected.rhs_evals)


@pytest.mark.parametrize("method, dtype", [("tsit5", "float32"), ("rk4_38", "float64")])
def test_fixed_step_is_bitwise_the_fused_kernel_compiled_without_fma(method, dtype):
    """With FMA contraction off, the fused kernel and the array replica round identically."""
    from solvers.fused.build import make_inputs, run_cpu
    from solvers.fused.codegen import KernelKey

    spec = SolveSpec("lorenz", method, "fixed", dtype, 16, dt=0.01)
    u0, p = spec.ensemble()
    inputs = make_inputs(u0, p, spec.prob.tspan, dtype, mode="fixed", dt=spec.step,
                         n_steps=spec.n_steps)
    expected = run_cpu(KernelKey("lorenz", method, "fixed", dtype, fastmath=()), inputs)
    np.testing.assert_array_equal(solve(spec).u_final, expected.u_final)


@pytest.mark.parametrize("problem, method, tol", [("lorenz", "tsit5", 1e-6), ("sir", "tsit5", 1e-6),
                                                  ("robertson", "rosenbrock23", 1e-5),
                                                  pytest.param("prothero_robinson", "rosenbrock23", 1e-4,
                                                               marks=pytest.mark.slow)])  # 11 s
def test_per_trajectory_steps_match_the_fused_cpu_kernel(problem, method, tol):
    spec = SolveSpec(problem, method, "adaptive", "float64", 16, rtol=tol, atol=tol)
    expected = run_fused(spec)
    got = solve(spec)
    np.testing.assert_array_equal(got.accepted, expected.accepted)
    np.testing.assert_array_equal(got.rejected, expected.rejected)
    np.testing.assert_array_equal(got.rhs_evals, expected.rhs_evals)
    np.testing.assert_array_equal(got.status, expected.status)
    np.testing.assert_allclose(got.u_final, expected.u_final, rtol=1e-9, atol=1e-12)


# ---- on a GPU box: CuPy against NumPy (skipped where CuPy sees no device) -----------------------

requires_gpu = pytest.mark.skipif(not BACKEND.available("gpu")[0],
                                  reason=BACKEND.available("gpu")[1])


@requires_gpu
@pytest.mark.parametrize("fields", [
    dict(problem="lorenz", method="tsit5", mode="fixed"),
    dict(problem="lorenz", method="rk4_38", mode="fixed", saveat=(0.0, 0.5, 1.0)),
    dict(problem="lorenz", method="tsit5", mode="adaptive", rtol=1e-6, atol=1e-6),
    dict(problem="sir", method="tsit5", mode="adaptive", saveat=(0.0, 33.3, 100.0)),
    dict(problem="sir", method="tsit5", mode="adaptive", saveat=(0.0, 33.3, 100.0), variant="shared"),
    dict(problem="robertson", method="rosenbrock23", mode="adaptive", rtol=1e-6, atol=1e-6),
])
def test_gpu_solve_agrees_with_the_cpu_solve(fields):
    cpu = solve(SolveSpec(dtype="float64", n=64, device="cpu", **fields))
    gpu = solve(SolveSpec(dtype="float64", n=64, device="gpu", **fields))
    np.testing.assert_allclose(gpu.u_final, cpu.u_final, rtol=1e-9, atol=1e-12)
    assert np.abs(gpu.accepted - cpu.accepted).max() <= 1  # pow/sqrt may differ by an ulp
    np.testing.assert_array_equal(gpu.status, cpu.status)
    if cpu.saved is not None:
        np.testing.assert_allclose(gpu.saved, cpu.saved, rtol=1e-9, atol=1e-12)


@requires_gpu
def test_gpu_kernel_launches_are_measured_per_solve():
    spec = SolveSpec("lorenz", "rk4", "fixed", "float32", 1024, dt=0.25, device="gpu")
    prepared = BACKEND.prepare(spec)
    prepared.sync(prepared.run())  # CuPy compiles its kernels on first use
    count, how = count_launches(prepared, "gpu")
    if count is None:
        pytest.skip(how)
    operations, _ = count_launches(BACKEND.prepare(spec.with_(device="cpu")), "cpu")
    # Each array operation is one CuPy kernel, except that CuPy may copy each of the 3 rows of an
    # xp.stack by its own kernel: up to 2 more per RHS evaluation (4 steps x 4 evaluations).
    assert operations <= count <= operations + 4 * 4 * 2
    assert how.startswith("gpu: device kernels measured")
