"""Run under NUMBA_ENABLE_CUDASIM=1 (by test_cudasim.py): the CUDA kernel against the CPU kernels.

The GPU path of the backend (device arrays, launch, sync, copy back) runs on Numba's CUDA
simulator, which executes the kernel's Python source thread by thread with NumPy scalars.
Each case is solved three times: GPU (simulated), CPU without FMA contraction (the same
arithmetic as the simulator, operation by operation), and the default CPU kernel
(``fastmath={'contract'}``). Prints one JSON line with the comparisons.

    NUMBA_ENABLE_CUDASIM=1 python -m solvers.fused.tests.cudasim_check
"""
from __future__ import annotations

import json
import sys

import numpy as np

from solvers.base import SolveSpec
from solvers.fused.backend import FusedBackend
from solvers.fused.bits import cuda_simulated

N = 8  # one simulated block of 8 threads: the simulator is slow

# Small cases: larger fixed steps and looser tolerances than the protocol, few steps each.
CASES = {
    "tsit5-fixed-f32": dict(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", dt=0.02),
    "tsit5-adaptive-f32-dense": dict(problem="lorenz", method="tsit5", mode="adaptive", dtype="float32",
                                     rtol=1e-4, atol=1e-4, saveat=(0.0, 0.25, 0.5, 1.0)),
    "tsit5-adaptive-f64": dict(problem="lorenz", method="tsit5", mode="adaptive", dtype="float64",
                               rtol=1e-7, atol=1e-7),
    "rosenbrock23-adaptive-f64": dict(problem="robertson", method="rosenbrock23", mode="adaptive",
                                      dtype="float64", rtol=1e-4, atol=1e-8),
    "rodas4-adaptive-f32-stop": dict(problem="robertson", method="rodas4", mode="adaptive", dtype="float32",
                                     rtol=1e-4, atol=1e-8, saveat=(0.0, 1.0, 1e3, 1e5)),
    # the looped layout of large systems (solvers/fused/looped.py): local arrays in the thread
    "lorenz96-16-adaptive-f32-looped": dict(problem="lorenz96-16", method="tsit5", mode="adaptive",
                                            dtype="float32", rtol=1e-4, atol=1e-4),
}


def _solve(backend: FusedBackend, device: str, case: dict):
    spec = SolveSpec(n=N, device=device, **case)
    prep = backend.prepare(spec)
    out = prep.run()
    prep.sync(out)
    res = prep.fetch(out)
    prep.close()
    return res


def _ulps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference in units of the last place of each trajectory's largest state."""
    scale = np.spacing(np.max(np.abs(b), axis=-1, keepdims=True).astype(b.dtype))
    return float(np.max(np.abs(a.astype(np.float64) - b) / scale))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to each trajectory's largest state."""
    scale = np.max(np.abs(b), axis=-1, keepdims=True).astype(np.float64)
    return float(np.max(np.abs(a.astype(np.float64) - b) / scale))


def main() -> int:
    if not cuda_simulated():
        print("run with NUMBA_ENABLE_CUDASIM=1", file=sys.stderr)
        return 2
    exact, default = FusedBackend(fastmath=()), FusedBackend()
    report = {}
    for name, case in CASES.items():
        gpu = _solve(default, "gpu", case)
        cpu = _solve(exact, "cpu", case)
        fma = _solve(default, "cpu", case)
        row = {
            "dtype": case["dtype"],
            "mode": case["mode"],
            "steps_max": int((gpu.accepted + gpu.rejected).max()),
            "all_success": bool(np.all(gpu.status == 0)),
            "nofma_ulps": _ulps(gpu.u_final, cpu.u_final),
            "nofma_counts_equal": all(np.array_equal(getattr(gpu, k), getattr(cpu, k))
                                      for k in ("accepted", "rejected", "rhs_evals", "status")),
            "fma_rel": _rel(gpu.u_final, fma.u_final),
            "fma_counts_equal": all(np.array_equal(getattr(gpu, k), getattr(fma, k))
                                    for k in ("accepted", "rejected", "status")),
            "fma_max_count_diff": int(np.max(np.abs(gpu.accepted - fma.accepted))),
        }
        if gpu.saved is not None:
            row["nofma_saved_ulps"] = _ulps(gpu.saved, cpu.saved)
            row["saved_end_is_final"] = bool(np.array_equal(gpu.saved[:, -1], gpu.u_final))
        report[name] = row
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
