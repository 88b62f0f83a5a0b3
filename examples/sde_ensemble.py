"""An SDE ensemble: the linear SDE du = a u dt + b u dW (geometric Brownian motion) by
Euler-Maruyama on the fused kernel and on the array replica (its "philox" variant), each
trajectory with its own counter-based noise stream keyed by (trajectory, seed): the same paths on
both for one seed; the ensemble mean and variance against the exact moments.

    python examples/sde_ensemble.py [N]
"""
import sys

import numpy as np

from problems import get_problem
from solvers import SolveSpec, get_backend


def solve(backend: str, n: int, seed: int = 7, variant: str = "") -> np.ndarray:
    spec = SolveSpec(problem="linear_sde", method="em", mode="fixed", dtype="float32", n=n, seed=seed,
                     variant=variant)
    prepared = get_backend(backend).prepare(spec)
    try:
        out = prepared.run()
        prepared.sync(out)
        return prepared.fetch(out).u_final
    finally:
        prepared.close()


def main(n: int = 4096) -> None:
    prob = get_problem("linear_sde")
    t1 = prob.tspan[1]
    mean, var = prob.moments(np.asarray(prob.u0), prob.params, t1)
    print(f"exact  : mean of u1(T) {mean[0]:.5f}, variance {var[0]:.3e}")
    paths = {}
    # the replica's "philox" variant draws the fused kernel's counter-based increments
    for backend, variant in (("fused", ""), ("array", "philox")):
        u = paths[backend] = solve(backend, n, variant=variant).astype(np.float64)
        print(f"{backend:6s} : mean of u1(T) {u[:, 0].mean():.5f}, variance {u[:, 0].var():.3e} (N={n})")
    same = np.max(np.abs(paths["fused"] - paths["array"]))
    print(f"fused vs array, same seed: largest difference of final states {same:.1e} (the same noise paths)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
