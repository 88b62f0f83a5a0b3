"""Bouncing ball: y' = v, v' = -g; at y = 0 (falling) v <- -e*v. The ensemble sweeps the
restitution e. Bounce times and the state at any time are known in closed form (the reference)."""
import numpy as np

from problems.core import Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)
from problems.events_core import EventProblem


def ball_rhs(u, p, t):
    y, v = u
    g, e = p
    return (v, -g)


def ball_condition(u, p, t):
    y, v = u
    return y


def ball_affect(u, p, t):
    y, v = u
    g, e = p
    return (y, -e * v)


def ball_exact(u0, p, t1, saveat, max_events):
    """Closed form for drops from rest: (event_t (n, K), n_events, u(t1), saved or None)."""
    h, g, e = u0[:, 0], p[:, 0], p[:, 1]
    t_first = np.sqrt(2.0 * h / g)
    v_hit = g * t_first
    # bounce k (k = 0, 1, ...) at t_first + sum_{j=1..k} 2 e^j v_hit / g; as many bounces as it
    # takes to pass t1 (doubling; capped where the bounces accumulate before t1)
    k_max = max_events + 8
    while True:
        ks = np.arange(k_max)
        flights = 2.0 * (e[:, None] ** ks[None, 1:]) * v_hit[:, None] / g[:, None]
        times = t_first[:, None] + np.concatenate([np.zeros((len(h), 1)), np.cumsum(flights, axis=1)], axis=1)
        if (times[:, -1] > t1).all() or k_max >= 4096:
            break
        k_max *= 2
    n_ev = (times <= t1).sum(axis=1)
    ev_t = np.where(ks[None, :max_events] < n_ev[:, None], times[:, :max_events], np.nan)

    def state(t):
        nb = (times <= t).sum(axis=1)               # bounces before t
        last = np.take_along_axis(times, np.maximum(nb - 1, 0)[:, None], axis=1)[:, 0]
        w = (e ** nb) * v_hit                        # speed just after the last bounce
        dt_fall = t - last
        y = np.where(nb == 0, h - 0.5 * g * t * t, w * dt_fall - 0.5 * g * dt_fall ** 2)
        v = np.where(nb == 0, -g * t, w - g * dt_fall)
        return np.stack([y, v], axis=1)

    saved = None if saveat is None else np.stack([state(float(s)) for s in saveat], axis=1)
    return ev_t, n_ev, state(float(t1)), saved


BOUNCING_BALL = EventProblem(
    name="bouncing_ball",
    rhs=ball_rhs,
    state_names=("y", "v"),
    param_names=("g", "e"),
    u0=(1.0, 0.0),
    params=(9.81, 0.9),
    tspan=(0.0, 3.0),
    sweep=Sweep("e", 0.8, 0.95),
    default_dtype="float32",
    dt0=1e-3,
    rtol=1e-6,
    atol=1e-6,
    condition=ball_condition,
    affect=ball_affect,
    direction=-1,
    max_events=16,
    exact=ball_exact,
    citation="DiffEqGPU.jl GPUContinuousCallback example (bouncing ball); closed form by hand",
    description="drop from y = 1 at rest, g = 9.81, e = linspace(0.8, 0.95, N), t in [0, 3] (4-6 bounces)",
)
