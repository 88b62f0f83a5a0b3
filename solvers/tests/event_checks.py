"""Checks shared by the event backends' tests (issue 32): one solve through a backend's lifecycle,
judged against the problem's own reference (closed forms for the bouncing ball and the doses,
float64 SciPy for the Lorenz plane crossing).

The solve tolerance is tight (1e-6 in float32, 1e-10 in float64) so that the bounds below hold
for every backend: event times within TIME_BOUND (absolute, time units), states within
STATE_BOUND (``|u - ref| / max(|ref|, 1)``), event counts exact.
"""
from __future__ import annotations

import numpy as np

from problems.events_core import EventReference
from problems.registry import get_problem
from solvers.base import SolveResult, SolveSpec, Status
from solvers.peers.tests.helpers import solve

#: rtol = atol of the solves.
SOLVE_TOL = {"float32": 1e-6, "float64": 1e-10}
#: Event-time error bound (time units) and state error bound (mixed: |u - ref| / max(|ref|, 1)).
TIME_BOUND = {"float32": 1e-4, "float64": 1e-7}
STATE_BOUND = {"float32": 2e-3, "float64": 1e-6}
METHOD = {"torchdiffeq": "dopri5_event"}


def event_spec(backend: str, problem: str, dtype: str, n: int, saveat=None, tol: float | None = None) -> SolveSpec:
    t = SOLVE_TOL[dtype] if tol is None else tol
    return SolveSpec(problem=problem, method=METHOD.get(backend, "tsit5_event"), mode="adaptive", dtype=dtype,
                     n=n, rtol=t, atol=t, saveat=saveat)


def solve_with_reference(backend: str, spec: SolveSpec) -> tuple[SolveResult, EventReference]:
    res = solve(backend, spec)
    u0, p = spec.ensemble()
    return res, spec.prob.reference(u0, p, spec.saveat, np.arange(spec.n), spec.dtype)


def mixed(got, ref) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.nanmax(np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)))


def check_bouncing_ball(backend: str, dtype: str, n: int = 16, saveat=None) -> SolveResult:
    """Bounce count exact; bounce times, the state at t = T (and saves) within the bounds."""
    res, ref = solve_with_reference(backend, event_spec(backend, "bouncing_ball", dtype, n, saveat))
    assert (res.status == Status.SUCCESS).all()
    assert np.array_equal(res.events, ref.n_events), (res.events, ref.n_events)
    assert (ref.n_events >= 4).all()
    k = ref.event_t.shape[1]
    assert np.array_equal(np.isnan(res.event_t[:, :k]), np.isnan(ref.event_t))
    assert np.nanmax(np.abs(res.event_t[:, :k] - ref.event_t)) < TIME_BOUND[dtype]
    assert mixed(res.u_final, ref.u_final) < STATE_BOUND[dtype]
    if saveat is not None:
        assert res.saved.shape == (n, len(saveat), 2)
        assert mixed(res.saved, ref.saved) < STATE_BOUND[dtype]
    return res


def check_lorenz_plane(backend: str, dtype: str, n: int = 16, saveat=None) -> SolveResult:
    """Per-trajectory crossing times as SciPy's; trajectories without a crossing run to the end."""
    res, ref = solve_with_reference(backend, event_spec(backend, "lorenz_plane", dtype, n, saveat))
    assert (res.status == Status.SUCCESS).all()
    assert np.array_equal(res.events, ref.n_events) or ((res.events == ref.n_events) | ref.ambiguous).all()
    none, hit = ref.n_events == 0, ref.n_events == 1
    assert none.any() and hit.any()
    assert np.isnan(res.event_t[none, 0]).all()
    assert mixed(res.u_final[none], ref.u_final[none]) < STATE_BOUND[dtype]
    assert np.max(np.abs(res.event_t[hit, 0] - ref.event_t[hit, 0])) < 10 * TIME_BOUND[dtype]
    assert np.max(np.abs(res.u_final[hit, 0])) < STATE_BOUND[dtype]  # stopped on the plane x = 0
    if saveat is not None:
        assert res.saved.shape == (n, len(saveat), 3)
        # NaN after a terminal event on every backend, as in the reference
        assert np.array_equal(np.isnan(res.saved), np.isnan(ref.saved))
        assert mixed(res.saved, ref.saved) < 10 * STATE_BOUND[dtype]
    return res


def check_doses(backend: str, dtype: str, n: int = 16, saveat=None) -> SolveResult:
    """Every dose counted, at exactly its tstop; the state (final, and saved) as the closed form."""
    prob = get_problem("pk_doses")
    res, ref = solve_with_reference(backend, event_spec(backend, "pk_doses", dtype, n, saveat))
    m = len(prob.tstops)
    assert (res.status == Status.SUCCESS).all()
    assert (res.events == m).all()
    stops = np.asarray(prob.tstops, dtype=dtype).astype(np.float64)
    assert np.array_equal(res.event_t[:, :m], np.tile(stops, (n, 1)))  # exactly at the tstops
    assert np.max(np.abs(res.u_final - ref.u_final) / ref.u_final) < STATE_BOUND[dtype]
    if saveat is not None:
        assert np.max(np.abs(res.saved - ref.saved) / ref.saved) < STATE_BOUND[dtype]
        if saveat == saves_around_doses(dtype):  # the state jumps by the dose at each tstop
            p = event_spec(backend, "pk_doses", dtype, n).ensemble()[1]
            jump = res.saved[:, 1::2, 0].astype(np.float64) - res.saved[:, 0::2, 0]
            dose = p[:, 1:2].astype(np.float64)
            assert np.max(np.abs(jump - dose) / dose) < STATE_BOUND[dtype]
    return res


def saves_around_doses(dtype: str) -> tuple[float, ...]:
    """Save times at each dose time and one ulp after it (a save at a dose time holds the state
    before the dose, as the closed form does), for :func:`check_doses` to see the jump."""
    stops = np.asarray(get_problem("pk_doses").tstops, dtype=dtype)
    after = np.nextafter(stops, np.asarray(np.inf, dtype=dtype))
    return tuple(float(x) for pair in zip(stops, after) for x in pair)
