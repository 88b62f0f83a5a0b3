"""Run the fused SDE CUDA kernel under Numba's CUDA simulator; print JSON comparing it with the
CPU kernels (run as its own process with NUMBA_ENABLE_CUDASIM=1: see test_sde_cudasim.py)."""
import json
import os
import subprocess
import sys

import numpy as np


def cpu_results() -> dict:
    """The CPU kernels' results, from a process without the simulator (numba.njit real)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import json, numpy as np; from solvers.fused.tests.sde_cudasim_check import CASES, cpu_case; "
            "print(json.dumps({k: cpu_case(*c) for k, c in CASES.items()}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


#: name -> (problem, n, dtype, n_steps, seed)
CASES = {"linear_sde-f32": ("linear_sde", 8, "float32", 256, 5),
         "linear_sde-f64": ("linear_sde", 8, "float64", 64, 5),
         "crn-f32": ("crn_sigmagen_short", 6720, "float32", 20, 2)}
#: the CRN case simulates a strided subset of its grid (the simulator runs each thread in Python)
CRN_SUBSET = slice(0, 6720, 839)


def _inputs(problem, n, dtype):
    from problems.registry import get_problem

    u0, p = get_problem(problem).ensemble(n, dtype)
    if n == 6720:
        u0, p = u0[CRN_SUBSET].copy(), p[CRN_SUBSET].copy()
    return u0, p


def cpu_case(problem, n, dtype, n_steps, seed):
    from problems.registry import get_problem
    from solvers.fused.sde import run_cpu

    u0, p = _inputs(problem, n, dtype)
    dt = get_problem(problem).dt
    return {v: run_cpu(problem, u0, p, dt=dt, n_steps=n_steps, seed=seed, variant=v).tolist()
            for v in ("lanes", "serial")}


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    from numba import cuda

    from problems.registry import get_problem
    from solvers.fused.sde import SDEKernelKey, kernel_args, load_module

    cpu = cpu_results()
    report = {}
    for name, (problem, n, dtype, n_steps, seed) in CASES.items():
        u0, p = _inputs(problem, n, dtype)
        mod = load_module(SDEKernelKey(problem, dtype, "cuda"))
        out = np.empty_like(u0)
        d_out = cuda.to_device(out)
        args = kernel_args(cuda.to_device(u0), cuda.to_device(p), d_out, seed, 0.0,
                           get_problem(problem).dt, n_steps, 1, dtype)
        mod.solve_kernel[1, 32](*args)
        gpu = d_out.copy_to_host()
        lanes, serial = (np.array(cpu[name][v]) for v in ("lanes", "serial"))
        report[name] = {
            "finite": bool(np.isfinite(gpu).all()),
            "lanes_equal_serial": bool(np.array_equal(lanes, serial)),
            "max_rel_gpu_vs_cpu": float(np.max(np.abs(gpu - lanes) / np.maximum(np.abs(lanes), 1e-30))),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
