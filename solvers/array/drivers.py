"""The time loops: fixed steps, lockstep per-trajectory steps, and one shared step.

Each driver runs on the host and dispatches whole-ensemble array operations through ``xp``:

* ``solve_fixed``: exactly ``n_steps`` steps of ``dt``; ``t_i = t0 + i * dt`` (integer step
  counter, state dtype). No host synchronisation inside the loop.
* ``solve_lockstep``: every trajectory has its own ``t``, ``dt``, controller memory and
  accept/reject, following the fused kernel's per-trajectory loop (DiffEqGPU's PI controller),
  but all lanes iterate together, masked with ``where``, until the last one finishes:
  ``jax.vmap`` semantics. Every iteration computes a trial step for every lane, finished or not,
  and asks the host whether any lane is still running.
* ``solve_shared``: one ``dt`` for the whole ensemble from one RMS error norm over all states of
  all trajectories, accepted or rejected for all: ``EnsembleGPUArray`` / batched torchdiffeq
  semantics. The controller runs on the host (``pi_step_factor``) after one device->host copy of
  the norm per attempt.

They return a ``Solution`` whose arrays are still in ``xp`` (on the device).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from solvers.array.control import LaneController, rms_whole_batch, scaled_error, scaled_ssq_per_trajectory
from solvers.array.steppers import Attempt, Ensemble, tsit5_dense_weights_lanes
from solvers.base import Status
from solvers.tableaus import SNAP_ULPS, PIController, pi_step_factor, rk_update, tsit5_dense_weights


@dataclass
class Solution:
    """A finished ensemble solve, arrays still in the solve's namespace.

    u: final states (n_states, N). saved: (N, len(saveat), n_states) or None. status: (N,) codes
    of ``Status``. accepted / rejected / rhs_evals: (N,) arrays, or ints shared by every
    trajectory. notes: facts for ``SolveResult.notes``.
    """

    u: Any
    saved: Any
    status: Any
    accepted: Any
    rejected: Any
    rhs_evals: Any
    notes: dict = field(default_factory=dict)


# =================================================================================================
# Saving
# =================================================================================================

def _new_saved(ens: Ensemble, n_saves: int, n_states: int) -> Any:
    # NaN until written, so a save point the solve never reached is visible as such.
    return ens.xp.full((ens.n_lanes, n_saves, n_states), math.nan, dtype=ens.dtype)


class GridSaver:
    """Save points of a fixed-step solve: the states after given steps (``save_steps[j]``,
    0 = the initial state), the step grid ``t0 + i*dt`` being the only times a fixed solve has."""

    def __init__(self, ens: Ensemble, save_steps: Sequence[int], n_states: int) -> None:
        self.saved = _new_saved(ens, len(save_steps), n_states)
        self.after: dict[int, list[int]] = {}  # steps taken -> save indices
        for j, k in enumerate(save_steps):
            self.after.setdefault(int(k), []).append(j)

    def save(self, steps_taken: int, u: Any) -> None:
        for j in self.after.get(steps_taken, ()):
            self.saved[:, j, :] = u.T


class SharedSaver:
    """Save points of a shared-step solve: Tsit5 dense output with one ``theta`` for the batch
    (a save time equal to the step's end takes the new state itself)."""

    def __init__(self, ens: Ensemble, saveat: Sequence[float], n_states: int) -> None:
        self.times = tuple(saveat)
        self.typed = np.dtype(ens.dtype).type
        self.next = 0
        self.saved = _new_saved(ens, len(saveat), n_states)

    def start(self, u0: Any, t0: float) -> None:
        while self.next < len(self.times) and self.times[self.next] <= t0:
            self.saved[:, self.next, :] = u0.T
            self.next += 1

    def after_step(self, u: Any, t: float, h: float, att: Attempt, t_end: float) -> None:
        while self.next < len(self.times) and self.times[self.next] <= t_end:
            s = self.times[self.next]
            if s == t_end:
                value = att.u_new
            else:
                weights = [self.typed(w) for w in tsit5_dense_weights((s - t) / h)]
                value = rk_update(u, self.typed(h), weights, att.stages)
            self.saved[:, self.next, :] = value.T
            self.next += 1


class LaneSaver:
    """Save points of a lockstep solve: each trajectory has its own pointer to its next save time.

    After each iteration the lanes whose accepted step passed their next save time are gathered,
    interpolated with Tsit5's dense output (a ``theta`` per lane; a save time equal to the step's
    end takes the new state) and scattered into ``saved``; repeated while any lane has another
    save time inside its step.
    """

    def __init__(self, ens: Ensemble, saveat: Sequence[float], n_states: int) -> None:
        xp = ens.xp
        self.ens = ens
        self.n_saves = len(saveat)
        self.host_times = tuple(saveat)
        self.times = xp.asarray(np.asarray(saveat), dtype=ens.dtype)
        self.saved = _new_saved(ens, len(saveat), n_states)
        self.next = None

    def start(self, u0: Any, t0: float) -> None:
        xp = self.ens.xp
        first = sum(1 for s in self.host_times if s <= t0)
        for j in range(first):
            self.saved[:, j, :] = u0.T
        self.next = xp.full(self.ens.n_lanes, first, dtype=xp.int64)

    def after_attempt(self, u: Any, t: Any, h: Any, att: Attempt, accept: Any, t_end: Any) -> None:
        xp = self.ens.xp
        while True:
            index = xp.minimum(self.next, self.n_saves - 1)
            due = accept & (self.next < self.n_saves) & (self.times[index] <= t_end)
            if not bool(xp.any(due)):
                return
            lanes = xp.nonzero(due)[0]
            j = index[lanes]
            save_t, end_t, h_lanes = self.times[j], t_end[lanes], h[lanes]
            theta = (save_t - t[lanes]) / h_lanes
            stages = [k[:, lanes] for k in att.stages]
            value = rk_update(u[:, lanes], h_lanes, tsit5_dense_weights_lanes(theta), stages)
            value = xp.where(save_t == end_t, att.u_new[:, lanes], value)
            self.saved[lanes, j] = value.T
            self.next = self.next + due


# =================================================================================================
# Fixed steps
# =================================================================================================

def solve_fixed(stepper: Any, ens: Ensemble, u0: Any, t0: float, dt: float, n_steps: int,
                saver: GridSaver | None) -> Solution:
    """``n_steps`` steps of ``dt`` from ``(t0, u0)``, ``t_i = t0 + i*dt`` in the state dtype."""
    xp = ens.xp
    typed = np.dtype(ens.dtype).type
    t0, h = typed(t0), typed(dt)
    u = u0
    if saver is not None:
        saver.save(0, u)
    for i in range(n_steps):
        u = stepper.step(u, t0 + typed(i) * h, h)
        if saver is not None:
            saver.save(i + 1, u)
    finite = xp.all(xp.isfinite(u), axis=0)
    status = xp.where(finite, int(Status.SUCCESS), int(Status.NONFINITE))
    return Solution(u=u, saved=None if saver is None else saver.saved, status=status,
                    accepted=n_steps, rejected=0, rhs_evals=n_steps * stepper.step_stages,
                    notes={"step_scope": "none"})


# =================================================================================================
# Adaptive, per-trajectory step control in lockstep
# =================================================================================================

RUNNING = -1  # internal status of a lane still integrating


def solve_lockstep(stepper: Any, ens: Ensemble, u0: Any, tspan: tuple[float, float], dt0: float,
                   rtol: float, atol: float, ctrl: PIController, max_steps: int,
                   saver: LaneSaver | None) -> Solution:
    """Per-trajectory adaptive solve, all lanes iterating together until the last one ends.

    Each lane follows the fused kernel's loop: stop at ``max_steps`` attempts; clip the step to
    land on ``tf``; stop when an unclipped step is below ``dtmin`` or does not move ``t``; stop
    (NONFINITE) when the error estimate or the candidate state is not finite; else accept
    (``ssq <= n``, i.e. ``EEst <= 1``) or reject and take the PI controller's next step. Every iteration computes
    the attempt for all lanes and applies it only where the lane is running.
    """
    xp = ens.xp
    typed = np.dtype(ens.dtype).type
    t0, tf = typed(tspan[0]), typed(tspan[1])
    rtol, atol = typed(rtol), typed(atol)
    control = LaneController(ctrl, u0.shape[0], ens.dtype, xp)
    snap = typed(SNAP_ULPS * np.finfo(ens.dtype).eps)
    n = ens.n_lanes

    u = u0
    t = xp.full(n, t0, dtype=ens.dtype)
    dt = xp.full(n, dt0, dtype=ens.dtype)
    lm = xp.full(n, control.lm_init, dtype=ens.dtype)  # controller memory, log(n qold^2)
    accepted = xp.zeros(n, dtype=xp.int64)
    rejected = xp.zeros(n, dtype=xp.int64)
    status = xp.full(n, RUNNING if t0 < tf else int(Status.SUCCESS), dtype=xp.int32)
    f0 = ens.derivative(u, t)
    if saver is not None:
        saver.start(u, float(t0))

    iterations = 0
    while bool(xp.any(status == RUNNING)):
        iterations += 1
        running = status == RUNNING
        remaining = tf - t
        last = dt >= remaining - snap * abs(tf)   # within SNAP_ULPS ulps: land on tf
        h = xp.where(last, remaining, dt)
        maxed = accepted + rejected >= max_steps
        underflow = ~last & ((h < control.dtmin) | (t + h == t))

        att = stepper.attempt(u, f0, t, h)
        ssq = scaled_ssq_per_trajectory(xp, att.err, u, att.u_new, rtol, atol)
        finite = xp.isfinite(ssq) & xp.all(xp.isfinite(att.u_new), axis=0)
        dt_rejected, dt_accepted, lm_accepted = control.update(ssq, lm, h)

        go = running & ~maxed & ~underflow
        accept = go & finite & (ssq <= control.n_states)
        reject = go & finite & ~(ssq <= control.n_states)
        bad = go & ~finite
        t_end = xp.where(last, tf, t + h)

        if saver is not None:
            saver.after_attempt(u, t, h, att, accept, t_end)
        u = xp.where(accept | bad, att.u_new, u)
        f0 = xp.where(accept, att.f_new, f0)
        t = xp.where(accept, t_end, t)
        # after a clipped landing step, go on from the step the controller had proposed
        dt_accepted = xp.where(h < dt, xp.maximum(dt_accepted, dt), dt_accepted)
        dt = xp.where(accept, dt_accepted, xp.where(reject, dt_rejected, dt))
        lm = xp.where(accept, lm_accepted, lm)
        accepted = accepted + accept
        rejected = rejected + (reject | bad)
        status = xp.where(running & maxed, int(Status.MAX_STEPS), status)
        status = xp.where(running & ~maxed & underflow, int(Status.DT_UNDERFLOW), status)
        status = xp.where(bad, int(Status.NONFINITE), status)
        status = xp.where(accept & (t_end >= tf), int(Status.SUCCESS), status)

    rhs_evals = 1 + stepper.rhs_per_attempt * (accepted + rejected)
    return Solution(u=u, saved=None if saver is None else saver.saved, status=status,
                    accepted=accepted, rejected=rejected, rhs_evals=rhs_evals,
                    notes={"step_scope": "per-trajectory, lockstep",
                           "lockstep_iterations": iterations,
                           # what every lane actually computed, finished or not
                           "rhs_evals_computed_per_lane": 1 + stepper.rhs_per_attempt * iterations})


# =================================================================================================
# Adaptive, one shared step for the ensemble
# =================================================================================================

def solve_shared(stepper: Any, ens: Ensemble, u0: Any, tspan: tuple[float, float], dt0: float,
                 rtol: float, atol: float, ctrl: PIController, max_steps: int,
                 saver: SharedSaver | None) -> Solution:
    """Adaptive solve with one step size, one error norm and one accept/reject for all lanes.

    The same loop as ``solve_lockstep`` for one "lane" that is the whole ensemble; ``t``, ``dt``
    and the controller (``pi_step_factor``) live on the host in float64. A non-finite norm
    stops the whole batch (one bad trajectory poisons the shared norm).
    """
    xp = ens.xp
    typed = np.dtype(ens.dtype).type
    t0, tf = float(tspan[0]), float(tspan[1])
    t, dt, qold = t0, float(dt0), ctrl.qold_init
    accepted = rejected = 0
    status = Status.SUCCESS
    u = u0
    f0 = ens.derivative(u, typed(t))
    if saver is not None:
        saver.start(u, t0)
    while t < tf:
        if accepted + rejected >= max_steps:
            status = Status.MAX_STEPS
            break
        remaining = tf - t
        last = dt >= remaining - SNAP_ULPS * np.finfo(ens.dtype).eps * abs(tf)   # land on tf
        h = remaining if last else dt
        if not last and (h < ctrl.dtmin or t + h == t):
            status = Status.DT_UNDERFLOW
            break
        att = stepper.attempt(u, f0, typed(t), typed(h))
        eest = rms_whole_batch(xp, scaled_error(xp, att.err, u, att.u_new, rtol, atol))
        if not math.isfinite(eest):
            status = Status.NONFINITE
            rejected += 1
            break
        factor, qold_new, accept = pi_step_factor(eest, qold, ctrl)
        # after a clipped landing step, go on from the step the controller had proposed
        dt = max(h * factor, dt) if accept and h < dt else h * factor
        if not accept:
            rejected += 1
            continue
        t_end = tf if last else t + h
        if saver is not None:
            saver.after_step(u, t, h, att, t_end)
        u, f0, t, qold = att.u_new, att.f_new, t_end, qold_new
        accepted += 1
    return Solution(u=u, saved=None if saver is None else saver.saved,
                    status=xp.full(ens.n_lanes, int(status), dtype=xp.int32),
                    accepted=accepted, rejected=rejected,
                    rhs_evals=1 + stepper.rhs_per_attempt * (accepted + rejected),
                    notes={"step_scope": "shared"})
