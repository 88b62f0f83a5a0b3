"""Lorenz system: the paper's headline benchmark (non-stiff, float32)."""
from dataclasses import replace

from problems.core import Invariant, Problem, Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)


def lorenz_rhs(u, p, t):
    x, y, z = u
    sigma, rho, beta = p
    return (sigma * (y - x), x * (rho - z) - y, x * y - beta * z)


LORENZ = Problem(
    name="lorenz",
    rhs=lorenz_rhs,
    state_names=("x", "y", "z"),
    param_names=("sigma", "rho", "beta"),
    u0=(1.0, 0.0, 0.0),
    params=(10.0, 28.0, 8.0 / 3.0),
    tspan=(0.0, 1.0),
    sweep=Sweep("rho", 0.0, 21.0),
    stiff=False,
    default_dtype="float32",
    dt=1e-3,          # exactly 1000 fixed steps over [0, 1]
    rtol=1e-8,        # the paper's tolerance (below float32 eps; suites also run 1e-6)
    atol=1e-8,
    invariants=(),
    citation=(
        "Lorenz, J. Atmos. Sci. 20 (1963); protocol of Utkarsh et al., CMAME 2024 "
        "(arXiv:2304.06835), GPUODEBenchmarks lorenz scripts"
    ),
    description="rho = linspace(0, 21, N), u0 = (1, 0, 0), t in [0, 1]",
)


#: The paper's multi-node run (GPUODEBenchmarks MPI/gpu_ode_mpi.jl): the same rho sweep and
#: equations over t in [0, 10], adaptive GPUTsit5 from dt = 0.1, final point only (saveat = [10]),
#: at DiffEqGPU's default tolerances of ``vectorized_asolve`` (abstol 1e-6, reltol 1e-3: the
#: script sets none), 2^30 trajectories over 5 nodes with one V100 each. Derived from LORENZ, not
#: copied: only the time span, step and tolerances differ.
LORENZ_MPI = replace(
    LORENZ, name="lorenz_mpi", tspan=(0.0, 10.0), dt=None, dt0=0.1, rtol=1e-3, atol=1e-6, _cache={},
    description="rho = linspace(0, 21, N), u0 = (1, 0, 0), t in [0, 10], dt0 = 0.1 (the paper's MPI run)",
)
