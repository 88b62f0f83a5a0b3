"""Lorenz plane crossing: the first time x = 0 after t = 0.1, a terminal event per trajectory,
from a sweep of rho (below rho ~ 13.9 no trajectory crosses within the time span and runs to the
end). Reference: SciPy ``solve_ivp(events=...)`` in float64 (DOP853, rtol 1e-12)."""
from problems.core import Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)
from problems.events_core import EventProblem
from problems.lorenz import lorenz_rhs


def plane_x(u, p, t):
    x, y, z = u
    return x


LORENZ_PLANE = EventProblem(
    name="lorenz_plane",
    rhs=lorenz_rhs,
    state_names=("x", "y", "z"),
    param_names=("sigma", "rho", "beta"),
    u0=(1.0, 0.0, 0.0),
    params=(10.0, 28.0, 8.0 / 3.0),
    tspan=(0.0, 2.0),
    sweep=Sweep("rho", 0.0, 28.0),
    default_dtype="float32",
    dt0=1e-3,
    rtol=1e-6,
    atol=1e-6,
    condition=plane_x,
    direction=0,
    terminal=True,
    event_from=0.1,
    max_events=1,
    citation="Lorenz (1963); the event of issue 32",
    description="rho = linspace(0, 28, N), u0 = (1, 0, 0), t in [0, 2], stop at the first x = 0 after t = 0.1",
)
