"""A float32 FMA throughput microbenchmark of one CPU core (Numba), meant for calibrating
instruction-count reasoning on the CPU where times can be measured.

STATUS: NOT VALIDATED as a peak. ``measure_peak()`` times CHAIN dependent FMAs per element of an
ACC-element float32 array (LLVM vectorises the element loop but keeps only 2 vector chains in
flight), single-threaded, and returns FMA lane-operations per second: a latency-bound lower
bound of the peak. Its JSON carries ``status`` saying so; no report may call it "the peak"
until a kernel with >= 8 independent vector accumulators replaces it.
``python -m harness.cpu_peak DIR`` writes ``DIR/cpu_peak.json``.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numba
import numpy as np

ACC = 2048         # elements (8 KiB float32: L1-resident)
CHAIN = 64         # dependent FMAs per element per pass
REPEATS = 5


@numba.njit(fastmath={"contract"})
def _fma_kernel(acc, a, b, iters):
    # Each element runs CHAIN dependent FMAs; LLVM vectorises the element loop (8-lane ymm on
    # AVX2, seen in inspect_asm) but interleaves only 2 vectors: 2 chains in flight, so this is
    # a LATENCY-BOUND LOWER BOUND of the FMA peak, not the peak (see NOT_VALIDATED).
    for _ in range(iters):
        for j in range(acc.shape[0]):
            x = acc[j]
            for _k in range(CHAIN):
                x = x * a + b
            acc[j] = x
    return acc


#: Why no report may call this number "the peak" yet.
NOT_VALIDATED = ("lower bound: LLVM keeps only 2 independent vector chains in flight; a kernel with "
                 ">= 8 independent vector accumulators is needed for the FMA peak")


def measure_peak(iters: int = 400, repeats: int = REPEATS) -> dict:
    """Best-of-``repeats`` single-core FMA lane throughput; a dict for cpu_peak.json."""
    acc = np.ones(ACC, dtype=np.float32)
    a, b = np.float32(0.999999), np.float32(1e-7)
    prev = numba.get_num_threads()
    _fma_kernel(acc.copy(), a, b, 10)  # compile
    best = float("inf")
    for _ in range(repeats):
        x = acc.copy()
        t0 = time.perf_counter()
        _fma_kernel(x, a, b, iters)
        best = min(best, time.perf_counter() - t0)
    fmas = ACC * CHAIN * iters
    numba.set_num_threads(prev)
    return {"fma_lanes_per_s_per_core": fmas / best, "gflops_fp32_per_core": 2 * fmas / best / 1e9,
            "seconds": best, "fmas": fmas, "accumulators": ACC, "repeats": repeats,
            "cpu": platform.processor() or platform.machine(), "numba": numba.__version__,
            "method": f"best of {repeats}; numba njit fastmath=contract; {CHAIN} chained x = x*a + b per "
                      f"element of a {ACC}-element float32 array, element loop vectorised; one thread",
            "status": NOT_VALIDATED}


def write_peak(run_dir: Path) -> Path:
    path = Path(run_dir) / "cpu_peak.json"
    path.write_text(json.dumps(measure_peak(), indent=2) + "\n")
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m harness.cpu_peak RUN_DIR", file=sys.stderr)
        sys.exit(2)
    print(write_peak(Path(sys.argv[1])))
