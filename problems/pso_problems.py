"""The particle-swarm problems of issue 18 (ParallelParticleSwarms.jl's two benchmarks)."""
from __future__ import annotations

from problems.fitzhugh_nagumo import FITZHUGH_NAGUMO
from problems.pso_core import ODEFit, PSOProblem, rosenbrock

_PPS = "SciML/ParallelParticleSwarms.jl"

PSO_ROSENBROCK = PSOProblem(
    name="pso_rosenbrock",
    dim=10, lower=-1.0, upper=10.0, iterations=500,
    optimum=(1.0,) * 10,
    objective=rosenbrock, objective_params=(1.0, 100.0),
    default_dtype="float32",
    tolerance=1e-2,
    citation=f"{_PPS} benchmarks/CPU_vs_GPU/benchmark.jl (10-D Rosenbrock, bounds [-1, 10], p = (1, 100), "
             "10,000 particles, 500 iterations, Float32)",
    description="10-D Rosenbrock on [-1, 10]^10, minimum 0 at all ones; 500 iterations",
)

PSO_FITZHUGH_NAGUMO = PSOProblem(
    name="pso_fitzhugh_nagumo",
    dim=4, lower=0.0, upper=5.0, iterations=100,
    optimum=(0.7, 0.8, 0.08, 0.5),
    fit=ODEFit(FITZHUGH_NAGUMO, "tsit5"),
    default_dtype="float32",
    tolerance=5e-2,  # (a, b, tau_inv) lie in a flat valley on t in [0, 3] (see the recovery test)
    citation=f"{_PPS} benchmarks/Fitzhugh_Nagumo/ode_estimation.jl (parameters in [0, 5]^4, data on "
             "0:0.01:3, sum of squares, 10,000 particles, 100 iterations, GPUTsit5 fixed step)",
    description="fit (a, b, tau_inv, l) of FitzHugh-Nagumo to 301 noiseless points on [0, 3]; "
                "Tsit5 at dt = 0.01 per particle per iteration; 100 iterations",
)
