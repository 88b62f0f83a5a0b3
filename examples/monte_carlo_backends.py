"""A Monte-Carlo ensemble of Lorenz trajectories (random initial states, random rho) on three
backends, with the harness's clock and accuracy: the results agree, the times differ.

    python examples/monte_carlo_backends.py [N]
"""
import sys

import numpy as np

from harness import benchmark_ensemble
from problems import get_problem
from solvers import random_initial_conditions, solve_ensemble

BACKENDS = {"fused": "tsit5", "array": "tsit5", "scipy": "dop853"}


def main(n: int = 256) -> None:
    lorenz = get_problem("lorenz")
    rng = np.random.default_rng(1)
    p = np.tile(lorenz.params, (n, 1))
    p[:, 1] = rng.uniform(10.0, 28.0, n)                           # rho per trajectory
    inputs = random_initial_conditions(lorenz, n, seed=1, scale=1.0, params=p)
    finals = {}
    for backend, method in BACKENDS.items():
        sol = solve_ensemble("lorenz", inputs, backend=backend, method=method, dtype="float64",
                             rtol=1e-8, atol=1e-8)
        finals[backend] = sol.u_final
        row = benchmark_ensemble("lorenz", inputs, backend=backend, method=method, dtype="float64",
                                 rtol=1e-8, atol=1e-8, repeats=3)
        print(f"{backend:8s} {method:7s} {row['status']}: median {row['time_s'] * 1e3:8.2f} ms, "
              f"max error vs float64 SciPy reference {row['max_rel_err']:.1e}")
    for backend in ("array", "scipy"):
        diff = np.max(np.abs(finals[backend] - finals["fused"]) / np.abs(finals["fused"]).max(axis=1, keepdims=True))
        print(f"fused vs {backend}: largest relative difference of final states {diff:.1e}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
