"""The sigma-Gen chemical Langevin model (DiffEqGPU artifact, sde_examples/bench_crn_model.jl,
credited to Torkel Loman).

Species (sigma, A1, A2, A3); parameters (S, D, tau, v0, n, eta). Reactions (rate):
0 -> sigma (v0 + (S sigma)^n / ((S sigma)^n + (D A3)^n + 1)); sigma -> 0 (sigma);
0 -> A1 (sigma/tau); A1 -> 0 (A1/tau); 0 -> A2 (A1/tau); A2 -> 0 (A2/tau);
0 -> A3 (A2/tau); A3 -> 0 (A3/tau).
Chemical Langevin noise: 8 Wiener processes, diffusion column j = nu_j eta sqrt(|a_j|) (the
artifact's abs under the square root keeps it real where a Langevin path goes negative).
Grid (full product, 1680 k^2 trajectories for k points per axis): S = D = 10^linspace(-1, 2, k),
tau, v0, n, eta from the lists below; u0 = (v0, v0, v0, v0); t in [0, 1000], dt = 0.1, float32.
Here N is the number of trajectories: N = 1680 k^2 (6720, 15120, 26880, ... for k = 2, 3, 4).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from problems.core import m  # noqa: F401  (rebound per backend)
from problems.sde_core import SDEProblem

TAUS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
V0S = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2)
NS = (2.0, 3.0, 4.0)
ETAS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
PER_SD_POINT = len(TAUS) * len(V0S) * len(NS) * len(ETAS)  # 1680


def _rates(u, p):
    sigma, a1, a2, a3 = u
    S, D, tau, v0, n, eta, one = p
    ss = (S * sigma) ** n
    return (v0 + ss / (ss + (D * a3) ** n + one), sigma, sigma / tau, a1 / tau,
            a1 / tau, a2 / tau, a2 / tau, a3 / tau)


def crn_drift(u, p, t):
    r1, r2, r3, r4, r5, r6, r7, r8 = _rates(u, p)
    return (r1 - r2, r3 - r4, r5 - r6, r7 - r8)


def crn_diffusion(u, p, t):
    r1, r2, r3, r4, r5, r6, r7, r8 = _rates(u, p)
    S, D, tau, v0, n, eta, one = p
    z = eta - eta
    g1, g2 = eta * m.sqrt(abs(r1)), eta * m.sqrt(abs(r2))
    g3, g4 = eta * m.sqrt(abs(r3)), eta * m.sqrt(abs(r4))
    g5, g6 = eta * m.sqrt(abs(r5)), eta * m.sqrt(abs(r6))
    g7, g8 = eta * m.sqrt(abs(r7)), eta * m.sqrt(abs(r8))
    return ((g1, -g2, z, z, z, z, z, z),
            (z, z, g3, -g4, z, z, z, z),
            (z, z, z, z, g5, -g6, z, z),
            (z, z, z, z, z, z, g7, -g8))


def grid_points(n: int) -> int:
    """Points per S/D axis for N trajectories; ValueError unless N = 1680 k^2."""
    k = math.isqrt(max(n // PER_SD_POINT, 0))
    if k < 1 or PER_SD_POINT * k * k != n:
        raise ValueError(f"crn_sigmagen: N must be 1680 k^2 (k grid points per S/D axis: 6720, 15120, 26880, ...), got {n}")
    return k


def crn_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    k = grid_points(n)
    sd = 10.0 ** np.linspace(-1.0, 2.0, k)
    S, D, tau, v0, hill, eta = (a.reshape(-1) for a in np.meshgrid(
        sd, sd, np.array(TAUS), np.array(V0S), np.array(NS), np.array(ETAS), indexing="ij"))
    p = np.stack([S, D, tau, v0, hill, eta, np.ones_like(S)], axis=1)
    u0 = np.repeat(v0[:, None], 4, axis=1)
    return u0, p


CRN_SIGMAGEN = SDEProblem(
    name="crn_sigmagen", drift=crn_drift, diffusion=crn_diffusion, noise="dense", n_noise=8,
    state_names=("sigma", "A1", "A2", "A3"), param_names=("S", "D", "tau", "v0", "n", "eta", "one"),
    u0=(0.01, 0.01, 0.01, 0.01), params=(1.0, 1.0, 1.0, 0.01, 2.0, 0.01, 1.0),
    tspan=(0.0, 1000.0), dt=0.1, default_dtype="float32",
    grid=crn_grid, grid_sizes="N = 1680 k^2 (k = 2, 3, 4, ... points per S/D axis)", nonnegative=True,
    citation="Utkarsh et al. 2024 (CMAME), DiffEqGPU artifact sde_examples/bench_crn_model.jl (model by T. Loman)",
    description="sigma-Gen chemical Langevin model, 4 species, 8 reactions, dense noise",
)


#: The same model cut to t in [0, 100] (1,000 of the protocol's 10,000 steps at dt = 0.1): for
#: CPU suites, where the peers need minutes per cell at the full length. dt cannot be raised
#: instead: explicit Euler on the tau = 0.1 decays is unstable beyond dt ~ 0.2.
CRN_SIGMAGEN_SHORT = replace(
    CRN_SIGMAGEN, name="crn_sigmagen_short", tspan=(0.0, 100.0), _cache={},
    description="sigma-Gen chemical Langevin model, t in [0, 100] (CPU-suite cut of crn_sigmagen)",
)
