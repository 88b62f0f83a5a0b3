"""SciPy backend: explicit and stiff methods against the reference, counts, reasons."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.base import SolveSpec, Status
from solvers.peers.tests.helpers import mixed_error, relative_error, scaled_error, solve
from solvers.registry import get_backend

LORENZ = SolveSpec(problem="lorenz", method="rk45", mode="adaptive", dtype="float64", n=8,
                   rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["rk45", "dop853"])
def test_explicit_methods_on_lorenz(method):
    spec = LORENZ.with_(method=method)
    res = solve("scipy", spec)
    assert mixed_error(res, spec) < 1e-5
    assert np.all(res.status == Status.SUCCESS)
    assert np.all(res.accepted > 0) and np.all(res.rhs_evals > res.accepted)


@pytest.mark.parametrize("method", ["radau", "bdf", "lsoda"])
def test_stiff_methods_on_robertson_use_the_derived_jacobian(method):
    spec = SolveSpec(problem="robertson", method=method, mode="adaptive", dtype="float64", n=4,
                     dt=1e-3, rtol=1e-8, atol=1e-8)
    res = solve("scipy", spec)
    # seen radau 0.003, bdf 2.8, lsoda 2.2 tolerance units
    assert scaled_error(res, spec) < 10.0
    assert np.all(res.status == Status.SUCCESS)
    assert res.notes["njev_mean"] > 0  # the Jacobian was used


def test_float32_spec_returns_float32_but_computes_in_float64():
    spec = SolveSpec(problem="sir", method="rk45", mode="adaptive", dtype="float32", n=4,
                     rtol=1e-6, atol=1e-6)
    res = solve("scipy", spec)
    assert res.u_final.dtype == np.float32
    assert res.notes["arithmetic_dtype"] == "float64"
    assert relative_error(res, spec) < 1e-4


def test_saveat_uses_dense_output_and_keeps_step_counts():
    from problems.reference import reference

    spec = LORENZ.with_(method="dop853", rtol=1e-9, atol=1e-9, saveat=(0.25, 0.5))
    res = solve("scipy", spec)
    ref = reference(spec.prob, spec.n, spec.dtype, spec.saveat)
    assert res.saved.shape == (8, 2, 3)
    scale = np.maximum(np.abs(ref.saved).max(axis=2, keepdims=True), 1.0)
    assert np.max(np.abs(res.saved - ref.saved) / scale) < 1e-6
    assert np.all(res.accepted > 2)


def test_unsupported_combinations_give_reasons():
    b = get_backend("scipy")
    assert "no fixed-step" in b.check(LORENZ.with_(mode="fixed"))
    assert "stiff" in b.check(SolveSpec(problem="robertson", method="rk45", mode="adaptive",
                                        dtype="float64", n=2))
    assert b.check(LORENZ.with_(device="gpu")) == "scipy has no gpu path"
    ok, reason = b.available("gpu")
    assert not ok and "CPU only" in reason


def test_settings_say_what_scipy_cannot_do():
    s = get_backend("scipy").settings(LORENZ)
    assert s["step_control"] == "serial"
    assert "no step cap" in s["max_steps"]
    assert s["first_step"] == LORENZ.step
    assert s["solve_ivp_method"] == "RK45"


# ---- the Fortran paths: odeint (LSODA) and ode("dop853") / ode("dopri5") -----------------------

@pytest.mark.parametrize("method,variant", [("lsoda", "odeint"), ("dop853", "ode"), ("rk45", "ode")])
def test_fortran_paths_on_lorenz_match_reference(method, variant):
    spec = LORENZ.with_(method=method, variant=variant)
    res = solve("scipy", spec)
    assert mixed_error(res, spec) < 1e-5
    assert np.all(res.status == Status.SUCCESS)
    assert np.all(res.accepted > 0) and np.all(res.rhs_evals > res.accepted)
    assert res.notes["integrator"].startswith(variant)


def test_fortran_dop853_counts_rejections_and_float32_comes_back_float32():
    spec = LORENZ.with_(method="dop853", variant="ode", dtype="float32", rtol=1e-8, atol=1e-8)
    res = solve("scipy", spec)
    assert res.u_final.dtype == np.float32 and relative_error(res, spec) < 1e-4
    assert res.rejected is not None and np.all(res.rejected >= 0)


def test_odeint_lsoda_on_robertson_uses_the_derived_jacobian():
    spec = SolveSpec(problem="robertson", method="lsoda", mode="adaptive", dtype="float64", n=4,
                     dt=1e-3, rtol=1e-8, atol=1e-8, variant="odeint")
    res = solve("scipy", spec)
    assert scaled_error(res, spec) < 10.0  # every component, in units of the tolerance
    assert np.all(res.status == Status.SUCCESS)
    assert "Dfun" in get_backend("scipy").settings(spec)["jacobian"]


@pytest.mark.parametrize("method,variant", [("lsoda", "odeint"), ("dop853", "ode")])
def test_fortran_step_cap_is_a_status(method, variant):
    spec = LORENZ.with_(method=method, variant=variant, max_steps=5)
    res = solve("scipy", spec)
    assert np.all(res.status == Status.MAX_STEPS)
    assert np.all(np.isnan(res.u_final))


def test_fortran_saveat_matches_reference():
    from problems.reference import reference

    spec = LORENZ.with_(method="dop853", variant="ode", rtol=1e-9, atol=1e-9, saveat=(0.25, 0.5))
    res = solve("scipy", spec)
    ref = reference(spec.prob, spec.n, spec.dtype, spec.saveat)
    scale = np.maximum(np.abs(ref.saved).max(axis=2, keepdims=True), 1.0)
    assert np.max(np.abs(res.saved - ref.saved) / scale) < 1e-6


def test_fortran_variants_refuse_methods_they_do_not_have():
    b = get_backend("scipy")
    assert "lsoda" in b.check(LORENZ.with_(method="rk45", variant="odeint"))
    assert "dop853" in b.check(LORENZ.with_(method="radau", variant="ode"))
