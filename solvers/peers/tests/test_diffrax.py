"""diffrax backend: accuracy against the reference, exact fixed step counts, statuses, no x64 leak."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.base import SolveSpec, Status, UnsupportedError
from solvers.peers.tests.helpers import mixed_error, relative_error, scaled_error, solve
from solvers.registry import get_backend

pytest.importorskip("diffrax")

LORENZ_FIXED = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8)
ROBERTSON = SolveSpec(problem="robertson", method="kvaerno5", mode="adaptive", dtype="float64",
                      n=4, dt=1e-3, rtol=1e-8, atol=1e-8)


@pytest.fixture(scope="module")
def robertson_result():
    """A float64 Kvaerno5 solve, run before the float32 solves that must not see x64."""
    return solve("diffrax", ROBERTSON)


@pytest.fixture(scope="module")
def lorenz_fixed_result():
    return solve("diffrax", LORENZ_FIXED)


def test_fixed_lorenz_takes_exactly_1000_steps_in_float32(lorenz_fixed_result):
    res = lorenz_fixed_result
    assert res.u_final.dtype == np.float32
    assert np.all(res.accepted == 1000) and np.all(res.rejected == 0)
    assert np.all(res.status == Status.SUCCESS)
    assert relative_error(res, LORENZ_FIXED) < 1e-4
    # Tsit5 is FSAL: 1 + 6 evaluations per step, derived from solvers.tableaus.
    assert np.all(res.rhs_evals == 1 + 6 * 1000)


def test_vmap_of_jit_variant_computes_the_same_solution(lorenz_fixed_result):
    spec = LORENZ_FIXED.with_(variant="vmap-of-jit")
    a = lorenz_fixed_result
    b = solve("diffrax", spec)
    np.testing.assert_allclose(b.u_final, a.u_final, rtol=1e-5, atol=1e-5)
    assert np.all(b.accepted == 1000)


def test_adaptive_lorenz_float64_matches_reference_and_records_steps():
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="adaptive", dtype="float64", n=8,
                     rtol=1e-6, atol=1e-6)
    res = solve("diffrax", spec)
    assert res.u_final.dtype == np.float64
    assert mixed_error(res, spec) < 1e-5
    assert np.all(res.accepted > 0) and np.all(np.isfinite(res.accepted))
    assert np.all(res.rejected >= 0)
    # Per-lane counts differ (each lane has its own dt), but vmap iterates in lockstep.
    assert len(set(res.accepted.tolist())) > 1
    assert res.notes["lockstep_iterations"] == int((res.accepted + res.rejected).max())


def test_sir_fixed_float32_matches_reference():
    spec = SolveSpec(problem="sir", method="tsit5", mode="fixed", dtype="float32", n=8)
    res = solve("diffrax", spec)
    assert np.all(res.accepted == spec.n_steps)
    assert relative_error(res, spec) < 1e-4


def test_robertson_kvaerno5_float64(robertson_result):
    res = robertson_result
    assert res.u_final.dtype == np.float64
    assert np.all(res.status == Status.SUCCESS)
    # seen 0.22 tolerance units
    assert scaled_error(res, ROBERTSON) < 2.0
    assert np.all(res.accepted > 0)
    assert res.rhs_evals is None and "Newton" in res.notes["rhs_evals"]


def test_float32_after_float64_run_stays_float32(robertson_result):
    import jax

    assert robertson_result.u_final.dtype == np.float64
    prep = get_backend("diffrax").prepare(LORENZ_FIXED)
    out = prep.run()
    prep.sync(out)
    assert out[0].dtype == np.float32          # the device array itself, not only the copy
    assert prep.fetch(out).u_final.dtype == np.float32
    assert not jax.config.jax_enable_x64


def test_saveat_grid_matches_reference():
    from problems.reference import reference

    spec = LORENZ_FIXED.with_(saveat=(0.25, 0.5, 1.0))
    res = solve("diffrax", spec)
    ref = reference(spec.prob, spec.n, spec.dtype, spec.saveat)
    assert res.saved.shape == (8, 3, 3)
    scale = np.maximum(np.abs(ref.saved).max(axis=2, keepdims=True), 1.0)
    assert np.max(np.abs(res.saved - ref.saved) / scale) < 1e-4
    np.testing.assert_array_equal(res.saved[:, -1], res.u_final)


def test_max_steps_is_a_status_not_an_exception():
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="adaptive", dtype="float32", n=4,
                     rtol=1e-6, atol=1e-6, max_steps=5)
    res = solve("diffrax", spec)
    assert np.all(res.status == Status.MAX_STEPS)
    assert np.all(res.accepted + res.rejected == 5)


def test_settings_record_the_mapped_pi_controller():
    spec = LORENZ_FIXED.with_(mode="adaptive", rtol=1e-6, atol=1e-6)
    s = get_backend("diffrax").settings(spec)
    ctrl = s["stepsize_controller"]
    assert ctrl["pcoeff"] == pytest.approx(0.4) and ctrl["icoeff"] == pytest.approx(0.3)
    assert ctrl["safety"] == pytest.approx(0.9) and ctrl["factormin"] == pytest.approx(0.2)
    assert ctrl["factormax"] == pytest.approx(10.0)
    for key in ("method", "dtype", "dt0", "max_steps", "saveat", "batching", "step_control",
                "compilation", "sync", "x64"):
        assert key in s, key
    assert s["step_control"] == "lockstep"
    fixed = get_backend("diffrax").settings(LORENZ_FIXED)
    assert fixed["max_steps"] == 1000 and fixed["stepsize_controller"]["class"] == "ConstantStepSize"


def test_unsupported_combinations_give_reasons():
    b = get_backend("diffrax")
    assert "stiff" in b.check(SolveSpec(problem="robertson", method="tsit5", mode="adaptive",
                                        dtype="float64", n=2))
    assert "rk4_38" in b.check(LORENZ_FIXED.with_(method="rk4_38"))
    assert "fixed" in b.check(ROBERTSON.with_(mode="fixed", dt=1.0))
    assert "controller" in b.check(LORENZ_FIXED.with_(controller="nonsense"))
    with pytest.raises(UnsupportedError):
        b.prepare(LORENZ_FIXED.with_(method="rk4_38"))


def test_gpu_availability_is_reported_with_a_reason():
    ok, reason = get_backend("diffrax").available("gpu")
    import jax

    try:
        has_gpu = bool(jax.devices("gpu"))
    except RuntimeError:
        has_gpu = False
    assert ok == has_gpu
    if not ok:
        assert "GPU" in reason
        assert get_backend("diffrax").check(LORENZ_FIXED.with_(device="gpu")) == reason


# ---- variant "batched": one diffeqsolve on the whole ensemble's (n_states, N) state ----------

def test_batched_fixed_equals_vmap_bitwise_with_the_same_steps(lorenz_fixed_result):
    spec = LORENZ_FIXED.with_(variant="batched")
    res = solve("diffrax", spec)
    # Constant steps: no per-trajectory decision, so the arithmetic is the vmap's, op for op.
    np.testing.assert_array_equal(res.u_final, lorenz_fixed_result.u_final)
    np.testing.assert_array_equal(res.accepted, lorenz_fixed_result.accepted)
    np.testing.assert_array_equal(res.rhs_evals, lorenz_fixed_result.rhs_evals)
    assert res.u_final.dtype == np.float32 and np.all(res.status == Status.SUCCESS)


def test_batched_adaptive_takes_one_shared_step_and_matches_reference():
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="adaptive", dtype="float64", n=8,
                     rtol=1e-6, atol=1e-6, variant="batched")
    res = solve("diffrax", spec)
    assert mixed_error(res, spec) < 1e-5
    assert len(set(res.accepted.tolist())) == 1 and res.accepted[0] > 0
    assert res.notes["step_scope"] == "shared"
    s = get_backend("diffrax").settings(spec)
    assert s["step_control"] == "shared"
    assert "RMS over all n_states x N" in s["stepsize_controller"]["norm"]


def test_batched_saveat_grid_matches_vmap():
    spec = LORENZ_FIXED.with_(saveat=(0.25, 0.5, 1.0))
    a = solve("diffrax", spec)
    b = solve("diffrax", spec.with_(variant="batched"))
    np.testing.assert_array_equal(b.saved, a.saved)


def test_eqx_on_error_is_nan_and_recorded():
    import equinox  # noqa: F401  (imported after the backend module set the variable)

    s = get_backend("diffrax").settings(LORENZ_FIXED)
    assert s["eqx_on_error"].startswith("nan")
    assert s["jax_devices"] >= 1 and "sharding" in s
