"""The SDE weak check against the Euler-Maruyama chain's exact moments (issue 28): it passes an
Euler-Maruyama sampler and fails one with the drift's sign flipped, half the diffusion, or the
method's bias removed (exact geometric Brownian motion)."""
from __future__ import annotations

import numpy as np
import pytest

from problems.linear_sde import LINEAR_SDE as LIN
from problems.sde_core import SDEAccuracy
from solvers.base import SolveSpec

N = 2 ** 16


def _em(drift_sign: float = 1.0, diffusion_scale: float = 1.0, seed: int = 1) -> np.ndarray:
    """Final states of N float64 Euler-Maruyama paths of the linear SDE, perturbed as asked."""
    u0, p = LIN.ensemble(N, "float64")
    p = p.copy()
    p[:, 0] *= drift_sign
    p[:, 1] *= diffusion_scale
    rng = np.random.default_rng(seed)
    u, dt = u0.copy(), LIN.dt
    for k in range(int(round(LIN.tspan[1] / dt))):
        u = LIN.em_step_numpy(u, p, k * dt, dt, rng.standard_normal((N, LIN.n_noise)) * np.sqrt(dt))
    return u


def _exact_gbm(seed: int = 1) -> np.ndarray:
    u0, p = LIN.ensemble(N, "float64")
    a, b, t = p[:, :1], p[:, 1:], LIN.tspan[1]
    w = np.random.default_rng(seed).standard_normal(u0.shape) * np.sqrt(t)
    return u0 * np.exp((a - b * b / 2) * t + b * w)


def _check(u: np.ndarray) -> dict:
    return SDEAccuracy(LIN, SolveSpec("linear_sde", "em", "fixed", "float64", N)).weak_check(u)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_euler_maruyama_sampler_passes(seed):
    assert _check(_em(seed=seed))["ok"]


@pytest.mark.parametrize("make", [lambda: _em(drift_sign=-1.0), lambda: _em(diffusion_scale=0.5), _exact_gbm],
                         ids=["drift-sign-flipped", "half-diffusion", "bias-removed"])
def test_a_wrong_sampler_fails(make):
    assert not _check(make())["ok"]


def test_the_closed_form_stays_as_information():
    c = _check(_em())
    assert np.all(c["closed_mean"] > c["mean"])  # EM's mean (1 + a h)^n falls short of e^{a t}
