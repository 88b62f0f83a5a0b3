"""torchdiffeq on event problems (kind "event"): ``odeint_event`` in a restart loop over the batch.

torchdiffeq's ``odeint_event(func, y0, t0, event_fn=...)`` integrates a batched state until
``event_fn`` (one scalar) changes sign, locates the time by bisection on the interpolant
(``find_event``, to the solver's tolerance) and returns it with the state there: it is terminal
for the whole batch. Several conditions are combined into one scalar as torchdiffeq's own
``combine_event_functions`` does: each made positive at the start (times its initial sign) and
the minimum taken. Here the components are every active trajectory's condition (armed from
``event_from``) and the time left to the next stop (a dose time, the arming time, the end).
``find_event`` bisects the combined function to ``atol`` and returns the bracket's midpoint, so the
event state may lie a hair before or after the root of whichever component crossed. At each event
the loop finds which component that was, in time units: a trajectory whose condition changed sign
has crossed; else each trajectory's time to its root is estimated by a Newton step on the
condition along the flow (``g / dg/dt``, the derivative by a forward difference along the
right-hand side) and compared with the time left to the stop. (Comparing the condition's value
with the time left mixes units: a Lorenz trajectory with rho = 0, whose x decays to 2e-9 without
crossing, was once taken for an event when the end of the span was located 6e-8 early.) A
trajectory whose condition is exactly zero at a restart (an event state on the root) takes the
sign it is moving to.

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
        with self.torch.no_grad():  # inference: no autograd bookkeeping, as the ODE cells
            return _Loop(self.spec, self.torch, self.u0, self.p).run()

    def sync(self, out: Any) -> None:
        pass  # CPU tensors: the calls are synchronous

    def fetch(self, out: dict) -> SolveResult:
        n = self.spec.n
        u = out["u"].numpy().T.copy()
        status = np.where(np.isfinite(u).all(axis=1), out["status"], int(Status.NONFINITE))
        restarts = np.full(n, out["restarts"], dtype=np.int64)
        return SolveResult(u_final=u, status=status, accepted=None, rejected=None, rhs_evals=None,
                           events=out["count"].numpy().astype(np.int64), event_t=out["times"].numpy().T.astype(np.float64),
                           notes={"step_scope": "shared", "odeint_event_calls": int(out["restarts"]),
                                  "steps": "not exposed by odeint_event", "restarts_per_trajectory": int(restarts[0])})

    def close(self) -> None:
        self.u0 = self.p = None


class _Loop:
    """The restart loop of one solve (see the module docstring): its state and its steps."""

    def __init__(self, spec: Any, torch: Any, u0: Any, p: tuple) -> None:
        prob = spec.prob
        self.spec, self.torch, self.prob, self.p = spec, torch, prob, p
        self.rhs = prob.bound("rhs", torch)
        self.cond = None if prob.condition is None else prob.bound("condition", torch)
        self.aff = None if prob.affect is None else prob.bound("affect", torch)
        self.dis = None if prob.discrete_affect is None else prob.bound("discrete_affect", torch)
        self.n = spec.n
        self.dt = torch.float64 if spec.dtype == "float64" else torch.float32
        self.y, self.t = u0.clone(), torch.tensor(float(prob.tspan[0]), dtype=self.dt)
        self.done = torch.zeros(self.n, dtype=torch.bool)
        self.count = torch.zeros(self.n, dtype=torch.int64)
        self.times = torch.full((prob.max_events, self.n), float("nan"), dtype=self.dt)
        self.final = self.y.clone()
        self.big = torch.tensor(torch.finfo(self.dt).max, dtype=self.dt)
        self.fd = float(torch.finfo(self.dt).eps) ** 0.5

    def rows(self, vals):
        return self.torch.stack([self.torch.as_tensor(v, dtype=self.dt).expand(self.n) for v in vals])

    def func(self, t, y):
        return self.rows(self.rhs(tuple(y), self.p, t))

    def g(self, t, y):
        """Every trajectory's condition, (N,)."""
        return self.cond(tuple(y), self.p, t) * self.torch.ones(self.n, dtype=self.dt)

    def g_dot(self, t, y, g0):
        """d/dt of every trajectory's condition along the flow (forward difference)."""
        h = self.fd * max(1.0, abs(float(t)))
        return (self.g(t + h, y + h * self.func(t, y)) - g0) / h

    def record(self, mask, t) -> None:
        k = self.torch.clamp(self.count, max=self.prob.max_events - 1)
        idx = self.torch.nonzero(mask & (self.count < self.prob.max_events)).flatten()
        self.times[k[idx], idx] = t
        self.count = self.count + mask

    def signs(self):
        """(s0, live, on_root) at a restart: the sign of each condition, the trajectories whose
        condition takes part, whether one sits exactly on its root (see :meth:`run`)."""
        s0 = self.torch.sign(self.g(self.t, self.y))
        live = (~self.done) & (s0 != 0)
        return s0, live, bool(((~self.done) & (s0 == 0)).any())

    def which(self, s0, live, t_stop):
        """After odeint_event returned: (a trajectory's event?, that trajectory, g * s0)."""
        torch = self.torch
        gt = self.g(self.t, self.y)
        g = torch.where(live, gt * s0, self.big)
        lane = int(torch.argmin(g))
        if float(g[lane]) <= 0:  # a trajectory's condition changed sign: its event
            return True, lane, g
        # located a hair before a root (find_event returns the bracket's midpoint): the
        # component whose root is nearest in time (Newton step g / dg/dt against the stop's)
        rate = -self.g_dot(self.t, self.y, gt) * s0
        eta = torch.where(live & (rate > 0), g / rate, self.big)
        lane = int(torch.argmin(eta))
        return float(eta[lane]) < abs(float(t_stop - self.t)), lane, g

    def affect(self, s0, live, lane, g) -> None:
        """Every trajectory whose condition changed sign in the segment (ties: a shared first
        bounce) has its event here; the one that stopped the solve is among them."""
        prob = self.prob
        crossed = live & (g <= 0)
        crossed[lane] = True
        if prob.direction != 0:
            crossed = crossed & (s0 == -float(prob.direction))  # against the direction: re-armed only
        if not bool(crossed.any()):
            return
        self.record(crossed, self.t)
        hit = self.torch.nonzero(crossed).flatten()
        if prob.terminal:
            self.done[hit] = True
            self.final[:, hit] = self.y[:, hit]
        else:
            new = self.rows(self.aff(tuple(self.y), self.p, self.t))
            self.y[:, hit] = new[:, hit]

    def run(self) -> dict:
        import torchdiffeq  # optional: imported only when this backend runs

        torch, prob, dt = self.torch, self.prob, self.dt
        rtol, atol = self.spec.tol
        stops = list(prob.stops) + [(float(prob.tspan[1]), False)]
        ev_from = prob.tspan[0] if prob.event_from is None else prob.event_from
        si, restarts, status = 0, 0, Status.SUCCESS
        while si < len(stops):
            if restarts >= self.spec.max_steps:
                status = Status.MAX_STEPS
                break
            t_stop = torch.tensor(stops[si][0], dtype=dt)
            armed = self.cond is not None and float(self.t) >= ev_from
            s0, live, on_root = self.signs() if armed else (None, None, False)
            cut = on_root
            if cut:
                # a condition exactly zero here (an event state on the root) would make the
                # combined function zero, and odeint_event return at once: that trajectory
                # sits this segment out, and the segment is cut short so that it is re-armed
                # (off its root) long before it can come back to it
                t_stop = torch.minimum(t_stop, self.t + self.fd * max(1.0, abs(float(self.t))))

            def event_fn(tt, yy, s0=s0, live=live, t_stop=t_stop, armed=armed):
                c = t_stop - tt
                if not armed:
                    return c
                return torch.minimum(torch.min(torch.where(live, self.g(tt, yy) * s0, self.big)), c)

            t_ev, sol = torchdiffeq.odeint_event(self.func, self.y, self.t, event_fn=event_fn, method="dopri5",
                                                 rtol=rtol, atol=atol, options={"dtype": dt})
            restarts += 1
            self.t, self.y = t_ev.detach(), sol[-1].detach().clone()
            lane_hit, lane, g = self.which(s0, live, t_stop) if armed else (False, -1, None)
            if lane_hit:
                self.affect(s0, live, lane, g)
                if bool(self.done.all()):
                    break
            # the stop (or an event located past it, by up to half the bisection's bracket)
            if not lane_hit or float(self.t) >= float(t_stop):
                self.t = t_stop
                if not cut:  # the stop itself, not the short segment of an on-root restart
                    if stops[si][1]:
                        self.y = self.rows(self.dis(tuple(self.y), self.p, self.t))
                        self.record(~self.done, self.t)
                    si += 1
        final = torch.where(self.done[None, :], self.final, self.y)
        return {"u": final, "count": self.count, "times": self.times, "restarts": restarts,
                "status": int(status)}

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
