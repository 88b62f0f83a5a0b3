"""The paper's linear SDE (DiffEqGPU artifact, sde_examples/bench_gpu.jl).

du = p1 u dt + p2 u dW, diagonal noise, u0 = (0.1, 0.1, 0.1), p = (1.5, 0.01), t in [0, 1],
float32, Euler-Maruyama at dt = 2^-8; every trajectory has the same parameters, only the
noise differs. Geometric Brownian motion per component: E[u] = u0 e^{p1 t},
Var[u] = u0^2 e^{2 p1 t} (e^{p2^2 t} - 1).
"""
from __future__ import annotations

import math

import numpy as np

from problems.core import m  # noqa: F401  (the namespace the definitions use; rebound per backend)
from problems.sde_core import SDEProblem


def linear_drift(u, p, t):
    u1, u2, u3 = u
    a, b = p
    return (a * u1, a * u2, a * u3)


def linear_diffusion(u, p, t):
    u1, u2, u3 = u
    a, b = p
    return (b * u1, b * u2, b * u3)


def linear_moments(u0, p, t):
    """Closed-form mean and variance at ``t`` (geometric Brownian motion)."""
    a, b = p
    mean = u0 * math.exp(a * t)
    var = u0 ** 2 * math.exp(2 * a * t) * (math.exp(b * b * t) - 1.0)
    return mean, var


def linear_em_moments(u0, p, t, dt):
    """Mean and variance of the Euler-Maruyama chain itself: u_{k+1} = u_k (1 + a h + b dW)."""
    a, b = p
    n = int(round(t / dt))
    m1 = u0 * (1.0 + a * dt) ** n
    m2 = u0 ** 2 * ((1.0 + a * dt) ** 2 + b * b * dt) ** n
    return m1, m2 - m1 ** 2


LINEAR_SDE = SDEProblem(
    name="linear_sde", drift=linear_drift, diffusion=linear_diffusion, noise="diagonal", n_noise=3,
    state_names=("u1", "u2", "u3"), param_names=("p1", "p2"), u0=(0.1, 0.1, 0.1), params=(1.5, 0.01),
    tspan=(0.0, 1.0), dt=2.0 ** -8, default_dtype="float32",
    moments=linear_moments, em_moments=linear_em_moments, nonnegative=False,
    citation="Utkarsh et al. 2024 (CMAME), DiffEqGPU artifact GPU_ODE_Julia/sde_examples/bench_gpu.jl",
    description="linear SDE du = p1 u dt + p2 u dW, diagonal noise; same parameters, noise differs",
)
