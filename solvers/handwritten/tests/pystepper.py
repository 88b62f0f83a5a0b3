"""An independent pure-Python float64 stepper: the yardstick the backends are tested against.

Plain loops over Python floats, one trajectory at a time, written from ``solvers.tableaus``
(``TSIT5`` and friends, ``pi_step_factor``, ``scaled_rms_norm``: the executable specification
of DiffEqGPU's controller) and not from ``solvers.handwritten.rk``.
"""
from __future__ import annotations

import math

from solvers.tableaus import ExplicitRK, PIController, get_controller, pi_step_factor, scaled_rms_norm


def _stage_arg(u, h, coeffs, ks):
    return [ui + h * sum(c * k[i] for c, k in zip(coeffs, ks)) for i, ui in enumerate(u)]


def fixed_solve(f, u0, p, t0, dt, n_steps, tab: ExplicitRK):
    """``n_steps`` steps of size ``dt`` from ``t0``; returns the final state (list of floats)."""
    u = [float(x) for x in u0]
    for i in range(n_steps):
        t = t0 + i * dt
        ks = [list(f(u, p, t))]
        for s in range(1, tab.stages):
            ks.append(list(f(_stage_arg(u, dt, tab.a[s], ks), p, t + tab.c[s] * dt)))
        u = _stage_arg(u, dt, tab.b, ks)
    return u


def adaptive_solve(f, u0, p, t0, t1, dt0, rtol, atol, tab: ExplicitRK, ctrl: PIController | None = None,
                   max_steps: int = 100_000):
    """DiffEqGPU's adaptive loop for one trajectory: ``(u_final, accepted, rejected)``.

    Accept when ``pi_step_factor`` says so; a step leaving less than 1e-14 lands on t1; the next
    step never passes t1; the first step is ``min(dt0, t1 - t0)``.
    """
    ctrl = ctrl or get_controller("diffeqgpu", tab.order)
    u = [float(x) for x in u0]
    t, dt, qold = t0, min(dt0, t1 - t0), ctrl.qold_init
    k1 = list(f(u, p, t))
    accepted = rejected = 0
    while t < t1:
        if accepted + rejected >= max_steps:
            raise RuntimeError("max_steps reached in the reference stepper")
        ks = [k1]
        for s in range(1, tab.stages):
            ks.append(list(f(_stage_arg(u, dt, tab.a[s], ks), p, t + tab.c[s] * dt)))
        u_new = _stage_arg(u, dt, tab.a[-1], ks[:-1])       # FSAL: the last stage's argument
        err = [dt * sum(e * k[i] for e, k in zip(tab.btilde, ks)) for i in range(len(u))]
        eest = scaled_rms_norm(err, u, u_new, atol, rtol)
        assert math.isfinite(eest)
        factor, qold_new, accept = pi_step_factor(eest, qold, ctrl)
        if not accept:
            rejected += 1
            dt = dt * factor
            continue
        accepted += 1
        remaining = t1 - t - dt
        dt_next = min(abs(dt * factor), abs(remaining))
        t = t1 if remaining < 1e-14 else t + dt
        u, k1, qold, dt = u_new, ks[-1], qold_new, dt_next
    return u, accepted, rejected
