"""FitzHugh-Nagumo: the ODE of ParallelParticleSwarms.jl's parameter-fitting benchmark.

dv = v - v^3/3 - w + l, dw = tau_inv (v + a - b w), u0 = (1, 1), true parameters
(a, b, tau_inv, l) = (0.7, 0.8, 0.08, 0.5), data on t = 0:0.01:3 (301 points): as in
SciML/ParallelParticleSwarms.jl benchmarks/Fitzhugh_Nagumo/ode_estimation.jl (also the
SciMLBenchmarks "FitzHugh-Nagumo Parameter Estimation" page, same model and bounds [0, 5]).

The 1/3 of v^3/3 would be a literal: it is carried as a fixed fifth parameter ``third`` so that
no float64 constant reaches a float32 kernel (problems.core rules). As an ODE ensemble the sweep
varies the input current l over [0.3, 0.7]; the particle-swarm problem (problems.pso_problems)
sets the first four parameters per particle and keeps ``third``.
"""
from problems.core import Problem, Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)


def fitzhugh_nagumo_rhs(u, p, t):
    v, w = u
    a, b, tau_inv, l, third = p
    return (v - third * (v * v * v) - w + l, tau_inv * (v + a - b * w))


FITZHUGH_NAGUMO = Problem(
    name="fitzhugh_nagumo",
    rhs=fitzhugh_nagumo_rhs,
    state_names=("v", "w"),
    param_names=("a", "b", "tau_inv", "l", "third"),
    u0=(1.0, 1.0),
    params=(0.7, 0.8, 0.08, 0.5, 1.0 / 3.0),
    tspan=(0.0, 3.0),
    sweep=Sweep("l", 0.3, 0.7),
    stiff=False,
    default_dtype="float32",
    dt=0.01,          # the data grid: 300 fixed steps save exactly at every data point
    rtol=1e-6,        # ParallelParticleSwarms.jl made its data at reltol = abstol = 1e-6 (Vern9)
    atol=1e-6,
    citation=("FitzHugh, Biophys. J. 1 (1961); Nagumo et al., Proc. IRE 50 (1962); protocol of "
              "SciML/ParallelParticleSwarms.jl benchmarks/Fitzhugh_Nagumo/ode_estimation.jl"),
    description="u0 = (1, 1), t in [0, 3], (a, b, tau_inv) = (0.7, 0.8, 0.08), l = linspace(0.3, 0.7, N)",
)
