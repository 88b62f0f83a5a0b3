"""Robertson's chemical kinetics: the stiff benchmark (float64)."""
from problems.core import Invariant, Problem, Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)


def robertson_rhs(u, p, t):
    y1, y2, y3 = u
    k1, k2, k3 = p
    return (
        -k1 * y1 + k3 * y2 * y3,
        k1 * y1 - k2 * y2 * y2 - k3 * y2 * y3,
        k2 * y2 * y2,
    )


ROBERTSON = Problem(
    name="robertson",
    rhs=robertson_rhs,
    state_names=("y1", "y2", "y3"),
    param_names=("k1", "k2", "k3"),
    u0=(1.0, 0.0, 0.0),
    params=(0.04, 3e7, 1e4),
    tspan=(0.0, 1e5),
    sweep=Sweep("k3", 10.0, 1e4),
    stiff=True,
    default_dtype="float64",
    dt=None,          # no fixed-step mode in the protocol
    dt0=1e-3,         # initial adaptive step, as the stiff-branch scripts
    rtol=1e-8,
    atol=1e-8,
    invariants=(Invariant("mass", (1.0, 1.0, 1.0)),),
    citation=(
        "Robertson (1966), in Hairer & Wanner, Solving ODEs II; protocol of the "
        "GPUODEBenchmarks u/stiff branch (k3 = linspace(10, 1e4, N), t in [0, 1e5])"
    ),
    description="k3 = linspace(10, 1e4, N), u0 = (1, 0, 0), t in [0, 1e5]",
)
