"""The event problem kind: an ODE with per-trajectory events, written once.

An event problem is an ODE right-hand side (written as in problems.core: tuple unpacking, math
from ``m``, no float literals, no ``if`` on states) plus what happens along a trajectory:

* a **continuous event**: ``condition(u, p, t)`` returns one scalar; a zero crossing of it (in
  ``direction``: -1 downward, +1 upward, 0 both) is located on the step's dense interpolant and
  ``affect(u, p, t)`` returns the new state (a tuple, one entry per state). ``terminal``: the
  first crossing ends that trajectory (no affect). ``event_from``: crossings before this time are
  not looked for (the event is armed from then on; solvers land a step on it).
* a **discrete event**: at each time of ``tstops`` (shared by every trajectory; solvers land a
  step exactly on it) ``discrete_affect(u, p, t)`` returns the new state (a dose).

The kind brings its own accuracy measure (``reference_for(spec).accuracy(result)``) and extra
row columns (``columns(result)``: event counts, count mismatches, event-time error): the harness
calls both without knowing the kind. References are closed forms where the problem gives one
(``exact``), else float64 SciPy (``solve_ivp(events=...)``, restarted at every non-terminal event,
piecewise between tstops) on a subsample.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import types
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from problems.base import ProblemBase, check_dtype, check_n, row_number
from problems.core import Sweep
from problems.reference import _default_cache_dir, subsample_indices

#: Float64 SciPy settings of the references without a closed form.
SCIPY_SETTINGS = {"method": "DOP853", "rtol": 1e-12, "atol": 1e-14}
#: Trajectories a SciPy reference integrates at most (closed forms take the whole ensemble).
MAX_SCIPY_REFERENCE = 256
#: Bounds of an ok event row: max_rel_err (see EventAccuracy) per dtype.
EVENT_BOUNDS = {"float32": 1e-2, "float64": 1e-5}
#: A reference event within this distance (in units of the time span) of the end time, or a
#: trajectory whose event condition only grazes zero, is ambiguous: solvers may count it or not,
#: so its count is not held against them (``ambiguous`` of an EventReference). The same holds for
#: a solver's event in that window that the reference places just after the end (its count is one
#: more; ``EventAccuracy`` checks that case, which the reference's event times cannot show).
AMBIGUOUS_WINDOW = {"float32": 1e-4, "float64": 1e-8}


def violation(row: dict[str, Any]) -> str | None:
    """Why an ok event row fails its bounds, else None (problems.kinds asks it)."""
    miss = row_number(row.get("event_count_errors"))
    if not math.isnan(miss) and miss > 0:
        return f"{int(miss)} trajectories with a wrong number of events"
    rel = row_number(row.get("max_rel_err"))
    bound = EVENT_BOUNDS.get(str(row.get("dtype")), EVENT_BOUNDS["float32"])
    if not math.isnan(rel) and rel > bound:
        return f"max_rel_err {rel:.3g} > bound {bound:g} (event times and states vs the reference)"
    return None


@dataclass
class EventReference:
    """Float64 truth for trajectories ``idx`` of an ensemble.

    event_t: (n, K) event times (NaN-padded; terminal: the one crossing; discrete events count).
    n_events: (n,) events in the time span. u_final: (n, d). saved: (n, S, d) or None (NaN after
    a terminal event). ambiguous: (n,) bool, trajectories whose count is ill-posed (see
    AMBIGUOUS_WINDOW).
    """

    idx: np.ndarray
    event_t: np.ndarray
    n_events: np.ndarray
    u_final: np.ndarray
    saved: np.ndarray | None
    ambiguous: np.ndarray


@dataclass(frozen=True)
class EventProblem(ProblemBase):
    """One ODE with events (see module docstring for condition / affect / tstops).

    Attributes beyond an ODE's (problems.core.Problem): condition, affect, direction, terminal,
    event_from, tstops, discrete_affect; max_events: how many event times a solver records per
    trajectory; exact: (u0 (n, d), p (n, np), t1, saveat, max_events) -> EventReference fields
    (event_t, n_events, u_final, saved) in closed form, or None (SciPy reference).
    """

    kind: ClassVar[str] = "event"
    stiff: ClassVar[bool] = False
    dt: ClassVar[None] = None
    rhs_array: ClassVar[None] = None

    name: str
    rhs: Callable[..., tuple]
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    u0: tuple[float, ...]
    params: tuple[float, ...]
    tspan: tuple[float, float]
    sweep: Sweep
    default_dtype: str
    dt0: float
    rtol: float
    atol: float
    condition: Callable[..., Any] | None = None
    affect: Callable[..., tuple] | None = None
    direction: int = 0
    terminal: bool = False
    event_from: float | None = None
    tstops: tuple[float, ...] = ()
    discrete_affect: Callable[..., tuple] | None = None
    max_events: int = 16
    exact: Callable[..., tuple] | None = None
    citation: str = ""
    description: str = ""
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        check_dtype(self.default_dtype)
        if len(self.u0) != len(self.state_names) or len(self.params) != len(self.param_names):
            raise ValueError(f"{self.name}: u0/params and their names differ in length")
        if self.direction not in (-1, 0, 1):
            raise ValueError(f"{self.name}: direction must be -1, 0 or 1")
        if self.condition is not None and not self.terminal and self.affect is None:
            raise ValueError(f"{self.name}: a non-terminal condition needs an affect")
        if bool(self.tstops) != (self.discrete_affect is not None):
            raise ValueError(f"{self.name}: tstops and discrete_affect go together")
        t0, t1 = self.tspan
        if any(not t0 < s < t1 for s in self.tstops) or list(self.tstops) != sorted(self.tstops):
            raise ValueError(f"{self.name}: tstops must be sorted and inside the open time span")

    @property
    def sweep_index(self) -> int:
        return self.param_names.index(self.sweep.param)

    @property
    def stops(self) -> tuple[tuple[float, bool], ...]:
        """Every time a step must land on: (time, apply discrete_affect there), sorted (the
        arming time ``event_from`` lands without an affect)."""
        out = [(float(s), True) for s in self.tstops]
        if self.event_from is not None and self.event_from > self.tspan[0]:
            out.append((float(self.event_from), False))
        return tuple(sorted(out))

    # ---- the ensemble ------------------------------------------------------------------
    def ensemble(self, n: int, dtype: str | None = None, start: int = 0,
                 stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Initial states (N, n_states) and parameters (N, n_params), rounded to ``dtype``."""
        n = check_n(n)
        dt = np.dtype(check_dtype(dtype or self.default_dtype))
        values = self.sweep.values(n, start, stop)
        k = len(values)
        u0 = np.tile(np.asarray(self.u0, dtype=np.float64), (k, 1))
        p = np.tile(np.asarray(self.params, dtype=np.float64), (k, 1))
        p[:, self.sweep_index] = values
        return np.ascontiguousarray(u0.astype(dt)), np.ascontiguousarray(p.astype(dt))

    # ---- translation -------------------------------------------------------------------
    def bound(self, which: str, namespace: Any, wrap: Callable | None = None) -> Callable:
        """The function ``which`` ("rhs", "condition", "affect", "discrete_affect") with its math
        namespace ``m`` bound to ``namespace``, passed through ``wrap`` (e.g. numba.njit)."""
        f = getattr(self, which)
        if f is None:
            raise ValueError(f"{self.name} has no {which}")
        key = (which, getattr(namespace, "__name__", id(namespace)), wrap)
        if key not in self._cache:
            glb = dict(f.__globals__)
            glb["m"] = namespace
            g = types.FunctionType(f.__code__, glb, f.__name__, f.__defaults__, f.__closure__)
            g.__qualname__ = f.__qualname__
            self._cache[key] = wrap(g) if wrap is not None else g
        return self._cache[key]

    def rhs_for(self, namespace: Any) -> Callable[..., tuple]:
        return self.bound("rhs", namespace)

    def fingerprint_blob(self) -> str:
        src = "".join(inspect.getsource(f) for f in (self.rhs, self.condition, self.affect,
                                                      self.discrete_affect, self.exact) if f is not None)
        return repr((self.name, src, self.u0, self.params, self.tspan, self.sweep, self.default_dtype,
                     self.dt0, self.direction, self.terminal, self.event_from, self.tstops))

    # ---- references ----------------------------------------------------------------------
    def reference(self, u0: np.ndarray, p: np.ndarray, saveat, idx: np.ndarray, dtype: str) -> EventReference:
        """The float64 truth for the trajectories ``idx`` of inputs ``u0``/``p`` (the solve's
        dtype, as the solver saw them)."""
        u0 = np.asarray(u0[idx], dtype=np.float64)
        p = np.asarray(p[idx], dtype=np.float64)
        if self.exact is not None:
            ev_t, n_ev, u_fin, saved = self.exact(u0, p, self.tspan[1], saveat, self.max_events)
        else:
            ev_t, n_ev, u_fin, saved = cached_scipy_reference(self, u0, p, saveat)
        window = AMBIGUOUS_WINDOW[dtype] * (self.tspan[1] - self.tspan[0])
        near_end = np.abs(np.nan_to_num(ev_t, nan=-1e300) - self.tspan[1]) < window
        return EventReference(idx, ev_t, n_ev, u_fin, saved, near_end.any(axis=1))

    def reference_for(self, spec: Any) -> "EventAccuracy":
        """The accuracy measure of a solve of ``spec`` (the reference computed on first use)."""
        return EventAccuracy(self, spec)


def cached_scipy_reference(prob: EventProblem, u0: np.ndarray, p: np.ndarray, saveat) -> tuple:
    """:func:`scipy_reference`, cached on disk (as problems.reference caches the ODE references)
    under a hash of the problem's definition, the float64 inputs, the save times and the SciPy
    settings: the backends of a run solve the same ensembles, and each would wait ~5 s for 256
    Lorenz trajectories."""
    h = hashlib.sha256(json.dumps({"problem": prob.fingerprint(), "settings": SCIPY_SETTINGS,
                                   "saveat": None if saveat is None else [float(x) for x in saveat]},
                                  sort_keys=True).encode())
    h.update(np.ascontiguousarray(u0, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
    path = _default_cache_dir() / f"{prob.name}-events-{h.hexdigest()[:20]}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["event_t"], z["n_events"], z["u_final"], (z["saved"] if "saved" in z.files else None)
    ev_t, n_ev, u_fin, saved = scipy_reference(prob, u0, p, saveat)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"event_t": ev_t, "n_events": n_ev, "u_final": u_fin}
        if saved is not None:
            arrays["saved"] = saved
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout still gets its reference, just not cached
    return ev_t, n_ev, u_fin, saved


def scipy_reference(prob: EventProblem, u0: np.ndarray, p: np.ndarray, saveat) -> tuple:
    """Float64 SciPy truth, one trajectory at a time: ``solve_ivp`` with the condition as a
    terminal event, restarted after each affect; integrated piecewise between stops."""
    from scipy.integrate import solve_ivp  # only here: a closed-form reference needs no SciPy

    f = prob.bound("rhs", math)
    cond = None if prob.condition is None else prob.bound("condition", math)
    aff = None if prob.affect is None else prob.bound("affect", math)
    dis = None if prob.discrete_affect is None else prob.bound("discrete_affect", math)
    n, d, k = u0.shape[0], u0.shape[1], prob.max_events
    ev_t = np.full((n, k), np.nan)
    n_ev = np.zeros(n, dtype=np.int64)
    u_fin = np.empty((n, d))
    s_times = None if saveat is None else np.asarray(saveat, dtype=np.float64)
    saved = None if saveat is None else np.full((n, len(saveat), d), np.nan)
    t0, t1 = prob.tspan
    for i in range(n):
        pt = tuple(float(v) for v in p[i])

        def fun(t, y, pt=pt):
            return f(tuple(y), pt, t)

        def event(t, y, pt=pt):
            return cond(tuple(y), pt, t)

        event.terminal = True
        event.direction = prob.direction
        y, t = u0[i].copy(), t0
        segments = [s for s in prob.stops] + [(t1, False)]
        done = False
        for stop, dose in segments:
            while t < stop and not done:
                armed = cond is not None and (prob.event_from is None or t >= prob.event_from)
                sol = solve_ivp(fun, (t, stop), y, events=event if armed else None, dense_output=True,
                                **SCIPY_SETTINGS)
                if not sol.success:
                    raise RuntimeError(f"reference solve failed for {prob.name} (p={pt}): {sol.message}")
                t_end = float(sol.t[-1])
                if s_times is not None:
                    sel = (s_times >= t) & (s_times <= t_end)
                    if sel.any():
                        saved[i, sel] = sol.sol(s_times[sel]).T
                y = sol.y[:, -1].copy()
                hit = armed and sol.status == 1
                t = t_end
                if hit:
                    if n_ev[i] < k:
                        ev_t[i, n_ev[i]] = t
                    n_ev[i] += 1
                    if prob.terminal:
                        done = True
                    else:
                        y = np.asarray(aff(tuple(y), pt, t), dtype=np.float64)
                        # step off the root so the restarted solve does not find it again
                        t = np.nextafter(t, np.inf)
            if done:
                break
            if dose:
                y = np.asarray(dis(tuple(y), pt, t), dtype=np.float64)
                if n_ev[i] < k:
                    ev_t[i, n_ev[i]] = t
                n_ev[i] += 1
        u_fin[i] = y
    return ev_t, n_ev, u_fin, saved


@dataclass
class EventAccuracy:
    """Measures an event-ensemble result against its reference.

    ``accuracy(result) -> (max_rel_err, note)``: the largest of the event-time error (absolute,
    in units of the time span, over the events both recorded), the final-state error and the
    saved-state error (``|u - ref| / max(|ref|, 1)``: states pass through zero at every bounce,
    so a pure relative error is meaningless there), over the reference trajectories whose event
    count matches. ``columns(result)``: events_mean / events_max (per trajectory),
    event_count_errors (trajectories whose count differs from the reference, ambiguous ones
    left out) and max_event_t_err.
    """

    problem: EventProblem
    spec: Any
    _ref: EventReference | None = None

    def ref(self) -> EventReference:
        if self._ref is None:
            u0, p = self.spec.ensemble()
            n = u0.shape[0]
            idx = (np.arange(n, dtype=np.int64) if self.problem.exact is not None
                   else subsample_indices(n, MAX_SCIPY_REFERENCE))
            self._ref = self.problem.reference(u0, p, self.spec.saveat, idx, self.spec.dtype)
        return self._ref

    def _parts(self, result: Any) -> dict[str, Any]:
        ref = self.ref()
        idx = ref.idx
        out: dict[str, Any] = {}
        n_ev = getattr(result, "events", None)
        ev_t = getattr(result, "event_t", None)
        if n_ev is None:
            out["count_errors"] = math.nan
            match = np.ones(len(idx), dtype=bool)
        else:
            n_ev = np.asarray(n_ev)[idx]
            match = n_ev == ref.n_events
            ambiguous = ref.ambiguous | self._late_extra(n_ev, ev_t, ref)
            out["count_errors"] = int(np.count_nonzero(~match & ~ambiguous))
        span = self.problem.tspan[1] - self.problem.tspan[0]
        if ev_t is not None:
            got = np.asarray(ev_t, dtype=np.float64)[idx]
            k = min(got.shape[1], ref.event_t.shape[1])
            diff = np.abs(got[:, :k] - ref.event_t[:, :k])[match]
            out["t_err"] = float(np.nanmax(diff, initial=0.0)) / span if diff.size else 0.0
        else:
            out["t_err"] = math.nan
        u = np.asarray(result.u_final, dtype=np.float64)[idx]
        errs = [np.abs(u - ref.u_final) / np.maximum(np.abs(ref.u_final), 1.0)]
        if ref.saved is not None and getattr(result, "saved", None) is not None:
            s = np.asarray(result.saved, dtype=np.float64)[idx]
            errs.append((np.abs(s - ref.saved) / np.maximum(np.abs(ref.saved), 1.0)).reshape(len(idx), -1))
        state = np.concatenate([e.reshape(len(idx), -1) for e in errs], axis=1)[match]
        out["state_err"] = float(np.nanmax(state, initial=0.0)) if state.size else math.nan
        out["matched"] = int(match.sum())
        out["n_ref"] = len(idx)
        return out

    def _late_extra(self, n_ev: np.ndarray, ev_t: Any, ref: EventReference) -> np.ndarray:
        """Trajectories whose solver found one event more than the reference, that one inside
        AMBIGUOUS_WINDOW of the end (the reference has it just after the end)."""
        if ev_t is None:
            return np.zeros(len(ref.idx), dtype=bool)
        got = np.asarray(ev_t, dtype=np.float64)[ref.idx]
        last = np.clip(n_ev - 1, 0, got.shape[1] - 1)
        t_last = np.take_along_axis(got, last[:, None], axis=1)[:, 0]
        t1 = self.problem.tspan[1]
        window = AMBIGUOUS_WINDOW[self.spec.dtype] * (t1 - self.problem.tspan[0])
        return (n_ev == ref.n_events + 1) & (n_ev <= got.shape[1]) & (np.abs(t_last - t1) < window)

    def accuracy(self, result: Any) -> tuple[float, str]:
        parts = self._parts(result)
        err = max(x for x in (parts["t_err"], parts["state_err"]) if not math.isnan(x)) \
            if not (math.isnan(parts["t_err"]) and math.isnan(parts["state_err"])) else math.nan
        notes = []
        if parts["matched"] < parts["n_ref"]:
            notes.append(f"{parts['n_ref'] - parts['matched']} of {parts['n_ref']} reference trajectories "
                         "with another event count (left out of max_rel_err)")
        u = np.asarray(result.u_final, dtype=np.float64)
        bad = ~np.isfinite(u).all(axis=1)
        if bad.any():
            notes.append(f"{int(bad.sum())} trajectories non-finite")
        return err, "; ".join(notes)

    def columns(self, result: Any) -> dict[str, float]:
        """Extra row columns (schema: events_mean, events_max, event_count_errors, max_event_t_err)."""
        n_ev = getattr(result, "events", None)
        parts = self._parts(result)
        return {"events_mean": math.nan if n_ev is None else float(np.mean(n_ev)),
                "events_max": math.nan if n_ev is None else float(np.max(n_ev)),
                "event_count_errors": float(parts["count_errors"]),
                "max_event_t_err": parts["t_err"]}
