"""Events in the fused kernel (issue 32): bounce times/counts vs the closed form, the terminal
Lorenz crossing vs SciPy, doses landing exactly on tstops, and CPU lanes == serial bitwise."""
import numpy as np
import pytest

from problems.events_core import AMBIGUOUS_WINDOW
from problems.registry import get_problem
from solvers.fused.events import run_cpu

TOL = {"float32": (1e-6, 1e-4, 2e-3), "float64": (1e-10, 1e-7, 1e-6)}  # (rtol=atol, time err, state err)


def _solve(name, dtype, n, saveat=None, variant="lanes"):
    prob = get_problem(name)
    u0, p = prob.ensemble(n, dtype)
    tol = TOL[dtype][0]
    r = run_cpu(name, u0, p, rtol=tol, atol=tol, saveat=saveat, variant=variant)
    ref = prob.reference(u0, p, saveat, np.arange(n), dtype)
    return prob, r, ref


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bouncing_ball_matches_closed_form(dtype):
    prob, r, ref = _solve("bouncing_ball", dtype, 32, saveat=(0.5, 1.5, 2.5))
    assert (r.status == 0).all()
    assert np.array_equal(r.events, ref.n_events)  # the number of bounces is exact
    k = ref.event_t.shape[1]
    assert np.nanmax(np.abs(r.event_t[:, :k] - ref.event_t)) < TOL[dtype][1]
    assert np.max(np.abs(r.u_final - ref.u_final)) < TOL[dtype][2]
    assert np.nanmax(np.abs(r.saved - ref.saved)) < TOL[dtype][2]
    assert r.saved.shape == (32, 3, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_terminal_lorenz_crossing_matches_scipy(dtype):
    prob, r, ref = _solve("lorenz_plane", dtype, 24)
    assert (r.status == 0).all()
    agree = (r.events == ref.n_events) | ref.ambiguous
    assert agree.all()
    assert (ref.n_events == 0).any() and (ref.n_events == 1).any()
    none = ref.n_events == 0
    assert np.isnan(r.event_t[none, 0]).all()  # trajectories without an event run to the end
    assert np.max(np.abs(r.u_final[none] - ref.u_final[none]) / np.maximum(np.abs(ref.u_final[none]), 1)) < TOL[dtype][2]
    hit = ref.n_events == 1
    assert np.max(np.abs(r.event_t[hit, 0] - ref.event_t[hit, 0])) < TOL[dtype][1] * 10
    assert np.max(np.abs(r.u_final[hit, 0])) < TOL[dtype][2]  # stopped on the plane x = 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_doses_land_exactly_on_tstops(dtype):
    prob = get_problem("pk_doses")
    eps_t = np.finfo(dtype).eps
    before = tuple(np.nextafter(np.asarray(prob.tstops, dtype=dtype), -np.inf).astype(float))
    saveat = tuple(sorted(before + prob.tstops))
    u0, p = prob.ensemble(16, dtype)
    tol = TOL[dtype][0]
    r = run_cpu("pk_doses", u0, p, rtol=tol, atol=tol, saveat=saveat)
    assert (r.events == len(prob.tstops)).all()
    assert np.array_equal(r.event_t[:, :len(prob.tstops)],
                          np.tile(np.asarray(prob.tstops, dtype=dtype), (16, 1)))  # exactly at the tstops
    # a save at a dose time holds the state before the dose; the final state includes every dose
    ref = prob.reference(u0, p, saveat, np.arange(16), dtype)
    assert np.max(np.abs(r.saved - ref.saved) / ref.saved) < TOL[dtype][2]
    assert np.max(np.abs(r.u_final - ref.u_final) / ref.u_final) < TOL[dtype][2]
    assert eps_t > 0


@pytest.mark.parametrize("name", ["bouncing_ball", "lorenz_plane", "pk_doses"])
def test_lanes_equal_serial_bitwise_float64(name):
    prob = get_problem(name)
    saveat = tuple(np.linspace(*prob.tspan, 7))
    _, lanes, _ = _solve(name, "float64", 40, saveat=saveat)
    _, serial, _ = _solve(name, "float64", 40, saveat=saveat, variant="serial")
    for a, b in ((lanes.u_final, serial.u_final), (lanes.saved, serial.saved), (lanes.event_t, serial.event_t),
                 (lanes.accepted, serial.accepted), (lanes.events, serial.events)):
        assert np.array_equal(a, b, equal_nan=True)


def test_ambiguous_window_is_per_dtype():
    assert AMBIGUOUS_WINDOW["float32"] > AMBIGUOUS_WINDOW["float64"]
