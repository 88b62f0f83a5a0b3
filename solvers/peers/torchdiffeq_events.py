"""torchdiffeq on event problems (kind "event"): ``odeint_event`` in a restart loop over the batch.

torchdiffeq's ``odeint_event(func, y0, t0, event_fn=...)`` integrates a batched state until
``event_fn`` (one scalar) changes sign, locates the time by bisection on the interpolant
(``find_event``, to the solver's tolerance) and returns it with the state there: it is terminal
for the whole batch. Several conditions are combined into one scalar as torchdiffeq's own
``combine_event_functions`` does: each made positive at the start (times its initial sign) and
the minimum taken. Here the components are every active trajectory's condition (armed from
``event_from``) and the time left to the next stop (a dose time, the arming time, the end). At
each event the loop finds which component crossed (the smallest at the event state):

* a stop: the dose is applied to the whole batch (or the end reached);
* a trajectory whose condition crossed in the problem's direction: its affect is applied (the
  others are left as they are), its event recorded; terminal: it is frozen and leaves the
  combination;
* a trajectory whose condition crossed the other way (e.g. a bounced ball whose located root was
  a hair below the floor rising through it): nothing but the restart (this re-arms it).

Every event of any trajectory is a restart of the whole batch: a batch of N bouncing balls is N
times as many ``odeint_event`` calls as one ball. The step is shared (torchdiffeq's batch has one
step size, RMS norm over the whole batch). The method is dopri5 (torchdiffeq has no Tsit5).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.base import SolveResult, Status


class TorchdiffeqEventPrepared:
    dispatch = "torch"

    def __init__(self, spec: Any) -> None:
        import torch  # optional: imported only when this backend runs

        self.spec = spec
        self.torch = torch
        self.tdtype = torch.float64 if spec.dtype == "float64" else torch.float32
        u0, p = spec.ensemble()
        self.u0 = torch.as_tensor(u0.T.copy())          # (d, N): states as rows
        self.p = tuple(torch.as_tensor(p[:, j].copy()) for j in range(p.shape[1]))

    def run(self) -> dict:
        import torchdiffeq  # optional: imported only when this backend runs

        torch, spec, prob = self.torch, self.spec, self.spec.prob
        rhs = prob.bound("rhs", torch)
        cond = None if prob.condition is None else prob.bound("condition", torch)
        aff = None if prob.affect is None else prob.bound("affect", torch)
        dis = None if prob.discrete_affect is None else prob.bound("discrete_affect", torch)
        rtol, atol = spec.tol
        n, d = spec.n, prob.n_states
        p = self.p
        dt = self.tdtype

        def rows(vals):
            return torch.stack([torch.as_tensor(v, dtype=dt).expand(n) for v in vals])

        def func(t, y):
            return rows(rhs(tuple(y), p, t))

        stops = list(prob.stops) + [(float(prob.tspan[1]), False)]
        ev_from = prob.tspan[0] if prob.event_from is None else prob.event_from
        y, t = self.u0.clone(), torch.tensor(float(prob.tspan[0]), dtype=dt)
        done = torch.zeros(n, dtype=torch.bool)
        count = torch.zeros(n, dtype=torch.int64)
        times = torch.full((prob.max_events, n), float("nan"), dtype=dt)
        final = y.clone()
        si, restarts, steps = 0, 0, 0
        big = torch.tensor(torch.finfo(dt).max, dtype=dt)
        while si < len(stops):
            t_stop = torch.tensor(stops[si][0], dtype=dt)
            armed = cond is not None and float(t) >= ev_from
            if armed:
                s0 = torch.sign(cond(tuple(y), p, t)) * torch.ones(n, dtype=dt)
                live = (~done) & (s0 != 0)
            else:
                s0 = live = None

            def event_fn(tt, yy, s0=s0, live=live, t_stop=t_stop, armed=armed):
                c = t_stop - tt
                if not armed:
                    return c
                g = torch.where(live, cond(tuple(yy), p, tt) * s0, big)
                return torch.minimum(torch.min(g), c)

            t_ev, sol = torchdiffeq.odeint_event(func, y, t, event_fn=event_fn, method="dopri5",
                                                 rtol=rtol, atol=atol, options={"dtype": dt})
            restarts += 1
            t, y = t_ev.detach(), sol[-1].detach()
            comp_t = float(t_stop - t)
            if armed:
                g = torch.where(live, cond(tuple(y), p, t) * s0, big)
                lane = int(torch.argmin(g))
                lane_hit = float(torch.abs(g[lane])) < abs(comp_t)
            else:
                lane_hit = False
            if not lane_hit:  # the stop
                t = t_stop
                if stops[si][1]:
                    y = rows(dis(tuple(y), p, t))
                    rec = ~done
                    k = torch.clamp(count, max=prob.max_events - 1)
                    idx = torch.nonzero(rec & (count < prob.max_events)).flatten()
                    times[k[idx], idx] = t
                    count = count + rec
                si += 1
                continue
            # every trajectory whose condition changed sign in the segment (ties: a shared first
            # bounce) has its event here; the one that stopped the solve is among them
            crossed = live & (g <= 0)
            crossed[lane] = True
            if prob.direction != 0:
                crossed = crossed & (s0 == -float(prob.direction))  # against the direction: re-armed only
            hit = torch.nonzero(crossed).flatten()
            if hit.numel() == 0:
                continue
            k = torch.clamp(count[hit], max=prob.max_events - 1)
            keep = count[hit] < prob.max_events
            times[k[keep], hit[keep]] = t
            count[hit] += 1
            if prob.terminal:
                done[hit] = True
                final[:, hit] = y[:, hit]
            else:
                new = rows(aff(tuple(y), p, t))
                y[:, hit] = new[:, hit]
            if bool(done.all()):
                break
        final = torch.where(done[None, :], final, y)
        return {"u": final, "count": count, "times": times, "restarts": restarts, "steps": steps}

    def sync(self, out: Any) -> None:
        pass  # CPU tensors: the calls are synchronous

    def fetch(self, out: dict) -> SolveResult:
        n = self.spec.n
        u = out["u"].numpy().T.copy()
        status = np.where(np.isfinite(u).all(axis=1), int(Status.SUCCESS), int(Status.NONFINITE))
        restarts = np.full(n, out["restarts"], dtype=np.int64)
        return SolveResult(u_final=u, status=status, accepted=None, rejected=None, rhs_evals=None,
                           events=out["count"].numpy().astype(np.int64), event_t=out["times"].numpy().T.astype(np.float64),
                           notes={"step_scope": "shared", "odeint_event_calls": int(out["restarts"]),
                                  "steps": "not exposed by odeint_event", "restarts_per_trajectory": int(restarts[0])})

    def close(self) -> None:
        self.u0 = self.p = None


def check(backend: Any, spec: Any) -> str | None:
    if spec.variant:
        return "torchdiffeq event solves: default variant only"
    if spec.device != "cpu":
        return "torchdiffeq event solves: written for the CPU here"
    if spec.saveat is not None:
        return "torchdiffeq's odeint_event returns the state at the event only (no saveat in a restart loop)"
    return None


def prepare(backend: Any, spec: Any) -> TorchdiffeqEventPrepared:
    return TorchdiffeqEventPrepared(spec)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    rtol, atol = spec.tol
    return {"library": backend.available(spec.device)[1], "method": "dopri5 (torchdiffeq has no Tsit5)",
            "step_control": "shared", "rtol": rtol, "atol": atol,
            "events": "odeint_event restarted at every event of any trajectory; conditions and the time "
                      "to the next stop combined into one scalar (min of sign-normalised values)",
            "root_finder": "torchdiffeq find_event: bisection on the interpolant to the solver tolerance",
            "batch": "one (d, N) state, one step size for the batch"}
