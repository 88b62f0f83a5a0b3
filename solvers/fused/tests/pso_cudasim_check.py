"""Run the fused swarm's CUDA kernels under Numba's CUDA simulator (own process, with
NUMBA_ENABLE_CUDASIM=1: see test_pso_cudasim.py) and print JSON comparing them with the
array-style replica (NumPy, unaffected by the simulator) on the same random stream, float64."""
import json
import os

import numpy as np

#: name -> (problem, method, particles, iterations)
CASES = {"rosenbrock-sync": ("pso_rosenbrock", "pso", 8, 3),
         "rosenbrock-async": ("pso_rosenbrock", "pso-async", 8, 3),
         "fhn-sync": ("pso_fitzhugh_nagumo", "pso", 4, 1)}


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    from solvers.base import SolveSpec
    from solvers.registry import get_backend

    fused, array = get_backend("fused"), get_backend("array")
    report = {}
    for name, (problem, method, n, iters) in CASES.items():
        out = {}
        for label, backend, device in (("gpu", fused, "gpu"), ("array", array, "cpu")):
            spec = SolveSpec(problem, method, "fixed", "float64", n, device=device, max_steps=iters, seed=3)
            prep = backend.prepare(spec)
            res = prep.fetch(prep.run())
            out[label] = (res.u_final[0], res.notes["best_cost"])
        (xg, cg), (xa, ca) = out["gpu"], out["array"]
        report[name] = {"max_abs_position": float(np.max(np.abs(xg - xa))),
                        "rel_cost": float(abs(cg - ca) / max(abs(ca), 1e-300)), "finite": bool(np.isfinite(cg))}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
