"""Run the fused nonlinear CUDA kernel under Numba's CUDA simulator on a few starts; print JSON
with its roots, statuses and iterations (run as its own process with NUMBA_ENABLE_CUDASIM=1: see
test_nonlinear.py)."""
import json
import os

import numpy as np


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    from numba import cuda

    from problems.registry import get_problem
    from solvers.fused.nonlinear import NonlinearKernelKey, kernel_args, load_module

    prob = get_problem("generalized_rosenbrock")
    report = {}
    for method in ("newton", "trust-region"):
        x0, p = prob.ensemble(4, "float64", seed=3)
        mod = load_module(NonlinearKernelKey("generalized_rosenbrock", method, "float64", "cuda"))
        xt, pt = np.ascontiguousarray(x0.T), np.ascontiguousarray(p.T)
        out = cuda.to_device(np.empty_like(xt))
        stats = cuda.to_device(np.zeros((3, 4), np.int32))
        status = cuda.to_device(np.zeros(4, np.int32))
        mod.solve_kernel[1, 4](*kernel_args(cuda.to_device(xt), cuda.to_device(pt), out, stats, status,
                                            1e-10, 1e-10, 1000, 1.0, "float64"))
        report[method] = {"x": out.copy_to_host().T.tolist(), "status": status.copy_to_host().tolist(),
                          "iterations": stats.copy_to_host()[0].tolist()}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
