"""SIR epidemic model (added by this project; float32 and float64)."""
from problems.core import Invariant, Problem, Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)


def sir_rhs(u, p, t):
    s, i, r = u
    b, g = p
    infection = b * s * i
    recovery = g * i
    return (-infection, infection - recovery, recovery)


SIR = Problem(
    name="sir",
    rhs=sir_rhs,
    state_names=("S", "I", "R"),
    param_names=("b", "g"),
    u0=(0.99, 0.01, 0.0),
    params=(0.5, 0.1),
    tspan=(0.0, 100.0),
    sweep=Sweep("b", 0.1, 1.0),
    stiff=False,
    default_dtype="float32",
    dt=0.1,           # 1000 fixed steps over [0, 100], like Lorenz
    rtol=1e-6,
    atol=1e-6,
    invariants=(Invariant("population", (1.0, 1.0, 1.0)),),
    citation="Kermack & McKendrick, Proc. R. Soc. A 115 (1927); added here as a third workload",
    description="b = linspace(0.1, 1.0, N), g = 0.1, u0 = (0.99, 0.01, 0), t in [0, 100]",
)
