"""diffrax on event problems (kind "event"), written as its documentation suggests.

diffrax's ``Event`` ends a ``diffeqsolve`` at the first event (it is terminal). A per-trajectory,
non-terminal event is therefore a restart loop: per trajectory, a ``jax.lax.while_loop`` whose
body runs ``diffeqsolve(..., event=Event(cond_fn, root_finder=optx.Newton(rtol, atol),
direction=...))`` from the current ``(t, y)`` to the next stop (a dose time, the event's arming
time, the end), then applies the affect (or the dose) to ``sol.ys[-1]`` and goes on; the loop is
batched with ``jax.jit(jax.vmap(solve_one))``, so every trajectory restarts at its own events
(vmap runs the loop until the last trajectory is done, the finished ones masked). A terminal
event ends the trajectory's loop. Before the arming time the condition is a constant, so no
crossing is looked for there.

Saving: ``SaveAt(ts=...)`` is given to the one solve of a terminal problem after its arming time
(ts up to the arming time go to the first solve); values diffrax leaves for ts after a terminal
event (inf) are reported as NaN, as the fused kernel leaves them. Non-terminal problems with
saveat are refused (every restart would need its own slice of ts: not written here).

Step controller: ``PIDController`` with DiffEqGPU's PI coefficients mapped to diffrax's (as the
ODE cells, ``solvers.peers._common.diffeqgpu_pid``); each restart starts again from dt0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.base import SolveResult, Status
from solvers.peers import _common
from solvers.peers.diffrax_backend import x64


def root_tolerances(spec) -> dict[str, float]:
    """The Newton root finder's tolerances: the solve's, but not below 100 eps of the dtype (in
    float32 a tolerance of 1e-6 on a time near 1 is a few ulps: Newton then fails to converge
    and diffrax reports the solve as failed)."""
    floor = 100 * float(np.finfo(spec.dtype).eps)
    rtol, atol = spec.tol
    return {"rtol": max(rtol, floor), "atol": max(atol, floor)}


def _controller(diffrax, spec):
    rtol, atol = spec.tol
    pid = _common.diffeqgpu_pid(5, 5)
    return diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=pid["pcoeff"], icoeff=pid["icoeff"],
                                 dcoeff=pid["dcoeff"], safety=pid["safety"], factormin=pid["factormin"],
                                 factormax=pid["factormax"])


class DiffraxEventPrepared:
    dispatch = "jax"

    def __init__(self, spec: Any) -> None:
        import diffrax  # optional (JAX stack): imported only when this backend runs
        import jax
        import jax.numpy as jnp
        import optimistix as optx  # optional (JAX stack): diffrax's root finders

        self.spec = spec
        self._x64 = lambda: x64(spec.dtype)
        prob = spec.prob
        d, npar = prob.n_states, prob.n_params
        dtype = spec.np_dtype
        rtol, atol = spec.tol
        rhs = prob.bound("rhs", jnp)
        cond = None if prob.condition is None else prob.bound("condition", jnp)
        aff = None if prob.affect is None else prob.bound("affect", jnp)
        dis = None if prob.discrete_affect is None else prob.bound("discrete_affect", jnp)

        def split(y, args):
            return tuple(y[i] for i in range(d)), tuple(args[j] for j in range(npar))

        def vec(vals, like):
            return jnp.stack([jnp.asarray(v, dtype=like.dtype) * jnp.ones((), like.dtype) for v in vals])

        term = diffrax.ODETerm(lambda t, y, args: vec(rhs(*split(y, args[1]), t), y))  # args = (armed, p)
        solver = diffrax.Tsit5()
        ctrl = _controller(diffrax, spec)
        t0, tf = (float(x) for x in prob.tspan)
        ev_from = t0 if prob.event_from is None else float(prob.event_from)
        stops = list(prob.stops) + [(tf, False)]
        stop_t = np.asarray([s for s, _ in stops], dtype=dtype)
        stop_dose = np.asarray([dose for _, dose in stops], dtype=bool)
        k_max, cap = prob.max_events, 2 * prob.max_events + len(stops) + 4
        root = optx.Newton(**root_tolerances(spec))
        event = None
        if cond is not None:
            def cond_fn(t, y, args, **kwargs):
                armed, p = args
                return jnp.where(armed, cond(*split(y, p), t), jnp.ones((), y.dtype))
            direction = None if prob.direction == 0 else prob.direction > 0
            event = diffrax.Event(cond_fn, root_finder=root, direction=direction)

        def segment(t, y, t_end, armed, p):
            sol = diffrax.diffeqsolve(term, solver, t, t_end, spec.step, y, args=(armed, p),
                                      stepsize_controller=ctrl, event=event,
                                      saveat=diffrax.SaveAt(t1=True), max_steps=spec.max_steps, throw=False)
            hit = jnp.zeros((), bool) if event is None else sol.event_mask
            ok = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
            return (sol.ts[-1], sol.ys[-1], hit, ok, sol.stats["num_accepted_steps"],
                    sol.stats["num_rejected_steps"])

        s_t, s_dose = jnp.asarray(stop_t), jnp.asarray(stop_dose)

        def solve_one(u0, p):
            def body(c):
                t, y, si, n, times, done, acc, rej, ok, it = c
                armed = t >= ev_from
                t1, y1, hit, ok1, a1, r1 = segment(t, y, s_t[si], armed, p)
                times = jnp.where(hit & (n < k_max), times.at[jnp.minimum(n, k_max - 1)].set(t1), times)
                n = n + hit
                if aff is not None:
                    y1 = jnp.where(hit, vec(aff(*split(y1, p), t1), y1), y1)
                landed = ~hit
                if dis is not None:
                    dose = landed & s_dose[si]
                    y1 = jnp.where(dose, vec(dis(*split(y1, p), t1), y1), y1)
                    times = jnp.where(dose & (n < k_max), times.at[jnp.minimum(n, k_max - 1)].set(t1), times)
                    n = n + dose
                si = jnp.where(landed, jnp.minimum(si + 1, len(stops) - 1), si)
                done = done | (hit & prob.terminal) | (landed & (t1 >= tf)) | ~ok1
                return (t1, y1, si, n, times, done, acc + a1, rej + r1, ok & ok1, it + 1)

            def keep_going(c):
                return ~c[5] & (c[9] < cap)

            init = (jnp.asarray(t0, dtype), u0, jnp.asarray(0), jnp.asarray(0),
                    jnp.full((k_max,), jnp.nan, dtype), jnp.asarray(False), jnp.asarray(0), jnp.asarray(0),
                    jnp.asarray(True), jnp.asarray(0))
            t, y, _, n, times, done, acc, rej, ok, _ = jax.lax.while_loop(keep_going, body, init)
            return y, n, times, acc, rej, ok & done

        u0, p = spec.ensemble()
        self._saves = None
        with self._x64():
            device = jax.devices(spec.device)[0]
            self.u0 = jax.device_put(u0, device)
            self.p = jax.device_put(p, device)
        self.fn = jax.jit(jax.vmap(solve_one))
        if spec.saveat is not None:  # terminal problems only (check): saves by a second pass
            self._saves = self._saver(diffrax, jax, jnp, term, solver, ctrl, event, ev_from, tf, dtype)

    def _saver(self, diffrax, jax, jnp, term, solver, ctrl, event, ev_from, tf, dtype):
        """jit(vmap) of: solve to the arming time with SaveAt(ts=ts before it), then on with the
        Event and SaveAt(ts=ts after it) (diffrax fills ts after a terminal event with inf)."""
        ts = np.asarray(self.spec.saveat, dtype=dtype)
        t0 = float(self.spec.prob.tspan[0])
        before, after = ts[ts <= ev_from], ts[ts > ev_from]

        def one(u0, p):
            out = []
            y = u0
            if ev_from > t0:
                sol = diffrax.diffeqsolve(term, solver, t0, ev_from, self.spec.step, u0, args=(False, p),
                                          stepsize_controller=ctrl, max_steps=self.spec.max_steps, throw=False,
                                          saveat=diffrax.SaveAt(ts=jnp.asarray(before) if before.size else None,
                                                                t1=True))
                out.append(sol.ys[:-1] if before.size else sol.ys[:0])
                y = sol.ys[-1]
            sol = diffrax.diffeqsolve(term, solver, max(ev_from, t0), tf, self.spec.step, y, args=(True, p),
                                      stepsize_controller=ctrl, event=event, max_steps=self.spec.max_steps,
                                      throw=False, saveat=diffrax.SaveAt(ts=jnp.asarray(after)))
            out.append(sol.ys)
            return jnp.concatenate(out, axis=0)

        return jax.jit(jax.vmap(one))

    def run(self) -> Any:
        with self._x64():
            out = self.fn(self.u0, self.p)
            return out if self._saves is None else (out, self._saves(self.u0, self.p))

    def sync(self, out: Any) -> None:
        import jax  # optional (JAX stack): imported only when this backend runs

        jax.block_until_ready(out)

    def fetch(self, out: Any) -> SolveResult:
        saved = None
        if self._saves is not None:
            out, s = out
            saved = np.asarray(s).copy()
            saved[~np.isfinite(saved)] = np.nan
        y, n, times, acc, rej, ok = (np.asarray(x) for x in out)
        status = np.where(ok, int(Status.SUCCESS), int(Status.FAILED))
        return SolveResult(u_final=np.asarray(y).reshape(self.spec.n, -1), saved=saved, status=status,
                           accepted=acc.astype(np.int64), rejected=rej.astype(np.int64),
                           rhs_evals=(6 * (acc + rej)).astype(np.int64), events=n.astype(np.int64),
                           event_t=np.asarray(times, dtype=np.float64),
                           notes={"events": "restart loop per trajectory (lax.while_loop under vmap)",
                                  "rhs_evals": "6 per step (sol.stats has no evaluation count)"})

    def close(self) -> None:
        self.u0 = self.p = self.fn = self._saves = None


# ---- the kind module interface (solvers.base.KindSupport) ----------------------------------------
def check(backend: Any, spec: Any) -> str | None:
    if spec.variant:
        return "diffrax event solves: default variant only (jit of vmap of a restart loop)"
    if spec.saveat is not None and not spec.prob.terminal:
        return "diffrax event solves save (SaveAt(ts)) only for terminal events (a restart loop per trajectory)"
    return _common.controller_reason(backend.name, spec)


def prepare(backend: Any, spec: Any) -> DiffraxEventPrepared:
    return DiffraxEventPrepared(spec)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    rtol, atol = spec.tol
    prob = spec.prob
    return {
        "library": backend.available(spec.device)[1], "method": "tsit5", "solver": "diffrax.Tsit5()",
        "step_control": "lockstep", "dt0": spec.step, "rtol": rtol, "atol": atol, "max_steps": spec.max_steps,
        "stepsize_controller": "PIDController with DiffEqGPU's PI mapped (solvers.peers._common.diffeqgpu_pid)",
        "event": (f"diffrax.Event(cond_fn, root_finder=optimistix.Newton(**{root_tolerances(spec)}), "
                  f"direction={None if prob.direction == 0 else prob.direction > 0})") if prob.condition else "none",
        "events": "restart loop per trajectory: lax.while_loop of diffeqsolve, jax.jit(jax.vmap(...))",
        "tstops": "a restart at every dose time (diffeqsolve to it, dose, go on)" if prob.tstops else "none",
        "saveat": None if spec.saveat is None else "SaveAt(ts=...) in a second pass (terminal event)",
        "x64": f"jax.enable_x64({spec.dtype == 'float64'})", "throw": False,
    }
