"""The array-style replica of the fused event kernel (kind "event"): one shared step.

Every operation is an operation over arrays of the whole ensemble (NumPy on a CPU, CuPy on a
GPU), with the fused kernel's Tsit5 (``solvers.array.steppers.ExplicitStepper``), error norm and
PI controller; the step is shared by the ensemble, as in DiffEqGPU's ``EnsembleGPUArray`` (the
ensemble is one big ODE with a vector of conditions):

* one ``t``, one ``dt``, one error norm over the active trajectories' states, one
  accept/reject, by the fused kernel's law (issue 29): each trajectory's squared norm
  ``ssq = n EEst^2`` (``solvers.tableaus.error_scales``/``scaled_ssq``, through
  ``solvers.array.control.scaled_ssq_per_trajectory``), their mean over the active trajectories
  (``n`` times the batch's mean ``EEst^2``; for one trajectory its own ``ssq``), accepted when
  ``<= n``, and ``solvers.tableaus.pi_control_squared`` (one log, one exp, memory ``lm``) on the
  host in float64;
* after each accepted step the condition is evaluated for every trajectory; if any crosses,
  each crossing trajectory's root is located on the interpolant (the fused kernel's Illinois
  iteration, vectorised over the crossing lanes, same tolerance), and **the shared step is cut
  at the earliest root**: every trajectory moves to that time by interpolation, the affect is
  applied to those whose root it is (terminal: they are frozen and leave the norm), ``k1`` is
  re-evaluated for the whole ensemble and the integration goes on. An event in any trajectory
  shortens the step of all: the cost of synchronisation is measured in the step count;
* stops (dose times, the arming time, the end) are landed on exactly, the dose applied to all.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers.array.backend import namespace, to_host
from solvers.array.control import scaled_ssq_per_trajectory
from solvers.array.steppers import Ensemble, ExplicitStepper, tsit5_dense_weights_lanes
from solvers.base import SolveResult, Status
from solvers.event_policy import ROOT_MAX_ITER, ROOT_TOL_ULPS
from solvers.tableaus import MATH_OPS, SNAP_ULPS, TSIT5, SquaredPI, get_controller, pi_control_squared, rk_update


class _Lanes:
    """The event state of the ensemble: condition functions and per-trajectory records."""

    def __init__(self, prob, xp, params, n, dtype) -> None:
        self.prob, self.xp, self.params, self.n, self.dtype = prob, xp, params, n, dtype
        self.cond = None if prob.condition is None else prob.bound("condition", xp)
        self.aff = None if prob.affect is None else prob.bound("affect", xp)
        self.dis = None if prob.discrete_affect is None else prob.bound("discrete_affect", xp)
        self.count = xp.zeros(n, dtype=xp.int64)
        self.times = xp.full((prob.max_events, n), math.nan, dtype=dtype)
        self.done = xp.zeros(n, dtype=bool)

    def g(self, u, t, lanes=None):
        p = self.params if lanes is None else tuple(q[lanes] for q in self.params)
        out = self.cond(tuple(u), p, t)
        size = self.n if lanes is None else lanes.shape[0]
        return self.xp.broadcast_to(self.xp.asarray(out, dtype=self.dtype), (size,))

    def record(self, mask, t) -> None:
        xp = self.xp
        row = xp.minimum(self.count, self.prob.max_events - 1)
        keep = mask & (self.count < self.prob.max_events)
        cols = xp.nonzero(keep)[0]
        self.times[row[cols], cols] = t if np.ndim(t) == 0 else t[cols]
        self.count = self.count + mask

    def crossing(self, gprev, gnew):
        z = self.dtype.type(0)
        down = (gprev > z) & (gnew <= z)
        up = (gprev < z) & (gnew >= z)
        return down if self.prob.direction < 0 else up if self.prob.direction > 0 else (down | up)


def _interp(xp, u, h, stages, theta, lanes):
    w = tsit5_dense_weights_lanes(theta)
    return rk_update(u[:, lanes], h, w, [k[:, lanes] for k in stages])


def _roots(ev: _Lanes, u, t, h, stages, lanes, ga, gb):
    """Left ends of the crossing brackets (theta) of ``lanes``, the fused kernel's iteration."""
    xp, T = ev.xp, ev.dtype.type
    n = lanes.shape[0]
    a, b = xp.zeros(n, dtype=ev.dtype), xp.ones(n, dtype=ev.dtype)
    fa, fb = ga.copy(), gb.copy()
    side = xp.zeros(n, dtype=xp.int8)
    tol, zero, half = T(ROOT_TOL_ULPS * np.finfo(ev.dtype).eps), T(0), T(0.5)
    hh = T(h)
    for _ in range(ROOT_MAX_ITER):
        live = (b - a) > tol
        if not bool(xp.any(live)):
            break
        with np.errstate(all="ignore"):
            c = b - fb * (b - a) / (fb - fa)
        c = xp.where((c > a) & (c < b), c, (a + b) * half)
        fc = ev.g(_interp(xp, u, hh, stages, c, lanes), T(t) + c * hh, lanes)
        same = ((fc > zero) == (fa > zero)) & (fc != zero) & live
        other = live & ~same
        a, fa = xp.where(same, c, a), xp.where(same, fc, fa)
        fb = xp.where(same & (side == -1), fb * half, fb)
        b, fb = xp.where(other, c, b), xp.where(other, fc, fb)
        fa = xp.where(other & (side == 1), fa * half, fa)
        side = xp.where(same, -1, xp.where(other, 1, side)).astype(xp.int8)
    return a


class ArrayEventPrepared:
    dispatch = "xp"

    def __init__(self, spec: Any) -> None:
        self.spec, self.prob = spec, spec.prob
        self.xp = namespace(spec.device)
        self.dtype = spec.np_dtype
        u0, p = spec.ensemble()
        self.u0 = self.xp.asarray(np.ascontiguousarray(u0.T))
        self.params = self.xp.asarray(np.ascontiguousarray(p.T))

    def run(self) -> dict:
        xp, spec, prob = self.xp, self.spec, self.prob
        T = self.dtype.type
        n = spec.n
        params = tuple(xp.asarray(self.params))
        ens = Ensemble(xp=xp, rhs=prob.bound("rhs", xp), params=params, n_lanes=n, dtype=self.dtype)
        stepper = ExplicitStepper(TSIT5, ens)
        ev = _Lanes(prob, xp, params, n, self.dtype)
        rtol, atol = spec.tol
        ctrl = get_controller("diffeqgpu", TSIT5.order)  # the fused event kernel's (DiffEqGPU's for Tsit5)
        pi = SquaredPI.of(ctrl, prob.n_states).constants()  # host float64, as the old pi_step_factor
        t0, tf = prob.tspan
        stops = list(prob.stops) + [(float(tf), False)]
        saves = [] if spec.saveat is None else list(spec.saveat)
        saved = None if spec.saveat is None else xp.full((n, len(saves), prob.n_states), math.nan, dtype=self.dtype)
        u = xp.asarray(self.u0)
        u_final = u.copy()
        t, dt, lm, acc, rej, si, sti = float(t0), float(spec.step), pi["LM_INIT"], 0, 0, 0, 0
        status = Status.SUCCESS
        ev_from = prob.event_from if prob.event_from is not None else t0
        while si < len(saves) and saves[si] <= t:
            saved[:, si, :] = u.T
            si += 1
        f0 = ens.derivative(u, T(t))
        gprev = None if ev.cond is None or t < ev_from else ev.g(u, T(t))
        with np.errstate(all="ignore"):
            while True:
                while sti < len(stops) - 1 and stops[sti][0] <= t:
                    if stops[sti][1]:
                        u = ens.stack_rows(ev.dis(tuple(u), params, T(t)))
                        ev.record(~ev.done, T(t))
                        f0 = ens.derivative(u, T(t))
                    sti += 1
                    if ev.cond is not None and t >= ev_from:
                        gprev = ev.g(u, T(t))
                if t >= tf or bool(xp.all(ev.done)):
                    break
                if acc + rej >= spec.max_steps:
                    status = Status.MAX_STEPS
                    break
                nxt = stops[sti][0]
                remaining = nxt - t
                last = dt >= remaining - SNAP_ULPS * np.finfo(self.dtype).eps * abs(nxt)
                h = remaining if last else dt
                if not last and (h < ctrl.dtmin or t + h == t):
                    status = Status.DT_UNDERFLOW
                    break
                att = stepper.attempt(u, f0, T(t), T(h))
                active = ~ev.done
                ssq = float(xp.mean(scaled_ssq_per_trajectory(xp, att.err, u, att.u_new, T(rtol), T(atol))[active]))
                if not math.isfinite(ssq):
                    status = Status.NONFINITE
                    rej += 1
                    break
                dt_acc, dt_rej, lm_new = pi_control_squared(ssq, lm, h, pi, MATH_OPS)
                accept = ssq <= pi["NSTATES"]
                dt = (max(dt_acc, dt) if h < dt else dt_acc) if accept else dt_rej
                if not accept:
                    rej += 1
                    continue
                acc += 1
                t_end = nxt if last else t + h
                hit, theta = None, 1.0
                if gprev is not None:
                    gnew = ev.g(att.u_new, T(t_end))
                    cross = ev.crossing(gprev, gnew) & active
                    if bool(xp.any(cross)):
                        lanes = xp.nonzero(cross)[0]
                        roots = _roots(ev, u, t, h, att.stages, lanes, gprev[lanes], gnew[lanes])
                        theta = float(xp.min(roots))
                        hit = xp.zeros(n, dtype=bool)
                        hit[lanes[roots == T(theta)]] = True
                t_ev = t_end if hit is None else t + T(theta) * T(h)
                while si < len(saves) and saves[si] <= t_ev:
                    s = saves[si]
                    val = att.u_new if s == t_end else rk_update(
                        u, T(h), [T(w) for w in tsit5_dense_weights_lanes(np.asarray((s - t) / h))], att.stages)
                    saved[:, si, :] = xp.where(ev.done[None, :], T(math.nan), val).T
                    si += 1
                lm = lm_new
                if hit is None:
                    u, f0, t = att.u_new, att.f_new, t_end
                    if gprev is not None:
                        gprev = gnew
                    continue
                full = xp.arange(n)
                u = _interp(xp, u, T(h), att.stages, xp.full(n, theta, dtype=self.dtype), full)
                t = float(t_ev)
                ev.record(hit, T(t))
                if prob.terminal:
                    u_final[:, hit] = u[:, hit]
                    ev.done = ev.done | hit
                else:
                    new = ens.stack_rows(ev.aff(tuple(u), params, T(t)))
                    u = xp.where(hit[None, :], new, u)
                f0 = ens.derivative(u, T(t))
                gprev = ev.g(u, T(t))
        u_final = xp.where(ev.done[None, :], u_final, u)
        return {"u": u_final, "saved": saved, "status": int(status), "acc": acc, "rej": rej,
                "count": ev.count, "times": ev.times}

    def sync(self, out: Any) -> None:
        if self.spec.device == "gpu":
            import cupy  # optional: present only where a GPU solve runs

            cupy.cuda.get_current_stream().synchronize()

    def fetch(self, out: dict) -> SolveResult:
        n = self.spec.n
        shared = lambda v: np.full(n, int(v), dtype=np.int64)  # noqa: E731
        return SolveResult(
            u_final=np.ascontiguousarray(to_host(out["u"]).T),
            saved=None if out["saved"] is None else to_host(out["saved"]),
            status=shared(out["status"]), accepted=shared(out["acc"]), rejected=shared(out["rej"]),
            rhs_evals=shared(1 + 6 * (out["acc"] + out["rej"])), events=to_host(out["count"]).astype(np.int64),
            event_t=np.ascontiguousarray(to_host(out["times"]).T),
            notes={"step_scope": "shared", "events": "shared step cut at the earliest event of any trajectory"})

    def close(self) -> None:
        self.u0 = self.params = None


def check(backend: Any, spec: Any) -> str | None:
    """The array backend's event-specific check (after its generic one)."""
    return None if spec.variant == "" else "the event replica has one variant: '' (shared step)"


def prepare(backend: Any, spec: Any) -> ArrayEventPrepared:
    return ArrayEventPrepared(spec)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    rtol, atol = spec.tol
    return {"step_control": "shared", "method": "tsit5", "namespace": "numpy" if spec.device == "cpu" else "cupy",
            "fused": False, "dt0": spec.step, "rtol": rtol, "atol": atol, "max_steps": spec.max_steps,
            "controller": "diffeqgpu: solvers.tableaus.pi_control_squared (one log, one exp, memory lm) on the "
                          "host in float64, on the mean over the active trajectories of their ssq = n EEst^2, "
                          "accepted when <= n",
            "events": "shared step cut at the earliest root of any trajectory; the affect applied to "
                      "the trajectories whose root it is",
            "root_finder": f"Illinois on the interpolant, vectorised over crossing lanes, bracket <= "
                           f"{ROOT_TOL_ULPS} ulp of theta", "saveat": None if spec.saveat is None else len(spec.saveat)}
