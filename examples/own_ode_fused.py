"""Your own ODE on the fused kernel: a damped pendulum, 10,000 trajectories with per-trajectory
initial angles and damping, solved by one fused kernel (one lane per trajectory) on the CPU.

    python examples/own_ode_fused.py [N]
"""
import sys

import numpy as np

from problems import m
from solvers import solve_ensemble


def pendulum(u, p, t):
    theta, omega = u
    damping, g_over_l = p                 # constants are parameters: no float literals
    return (omega, -damping * omega - g_over_l * m.sin(theta))


def main(n: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    u0 = np.column_stack([rng.uniform(-3.0, 3.0, n), np.zeros(n)])         # (N, 2)
    p = np.column_stack([rng.uniform(0.05, 0.5, n), np.full(n, 9.81)])      # (N, 2)
    sol = solve_ensemble(pendulum, u0, p, (0.0, 10.0), rtol=1e-6, atol=1e-6,
                         saveat=np.linspace(0.0, 10.0, 11))
    print(f"{sol.backend}: u {sol.u.shape} {sol.u.dtype}, {int(sol.ok.sum())} of {n} trajectories ok, "
          f"mean {sol.steps.mean():.0f} steps")
    energy = 0.5 * sol.u[:, :, 1] ** 2 + 9.81 * (1 - np.cos(sol.u[:, :, 0]))
    print(f"mean energy at t = 0, 5, 10: {energy[:, 0].mean():.3f}, {energy[:, 5].mean():.3f}, "
          f"{energy[:, -1].mean():.3f} (damped: decreasing)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
