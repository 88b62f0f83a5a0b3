"""Measured float32 FMA throughput of one CPU core (a Numba microbenchmark), for calibrating
instruction-count reasoning on the CPU, where times can be measured.

``measure_peak()`` times 8 independent chains of ``CHAIN`` dependent FMAs (``x = x * a + b``)
per element of an (8, ``ACC``) float32 array, single-threaded. LLVM vectorises the element loop
(ymm on AVX2, zmm where it chooses 512-bit vectors), so 8 independent vector chains are in
flight: enough to cover FMA latency times the FMA ports of current x86 cores. The result is
FMA lane-operations per second (one FMA = 2 flops); the vector width of the FMAs LLVM emitted
is read back from the assembly and stored with it, so a "% of measured peak" statement can say
what the peak is. ``python -m harness.gpu_profile.cpu_peak DIR`` writes ``DIR/cpu_peak.json``.
"""
from __future__ import annotations

import json
import platform
import re
import sys
import time
from pathlib import Path

import numba
import numpy as np

ACC = 256          # elements per chain row (8 x 256 float32 = 8 KiB: L1-resident)
CHAIN = 16         # dependent FMAs per chain per pass (16 keeps LLVM's vectoriser engaged)
REPEATS = 5
PEAK_FILE = "cpu_peak.json"


@numba.njit(fastmath={"contract"})
def _fma_kernel(acc, a, b, iters):
    n = acc.shape[1]
    for _ in range(iters):
        for j in range(n):
            x0 = acc[0, j]; x1 = acc[1, j]; x2 = acc[2, j]; x3 = acc[3, j]  # noqa: E702
            x4 = acc[4, j]; x5 = acc[5, j]; x6 = acc[6, j]; x7 = acc[7, j]  # noqa: E702
            for _k in range(CHAIN):
                x0 = x0 * a + b; x1 = x1 * a + b; x2 = x2 * a + b; x3 = x3 * a + b  # noqa: E702
                x4 = x4 * a + b; x5 = x5 * a + b; x6 = x6 * a + b; x7 = x7 * a + b  # noqa: E702
            acc[0, j] = x0; acc[1, j] = x1; acc[2, j] = x2; acc[3, j] = x3  # noqa: E702
            acc[4, j] = x4; acc[5, j] = x5; acc[6, j] = x6; acc[7, j] = x7  # noqa: E702
    return acc


def fma_widths(asm: str) -> dict[str, int]:
    """Count of packed-single FMA instructions per register width in x86 assembly."""
    found = re.findall(r"\bv(?:fmadd|fmsub|fnmadd|fnmsub)\w*ps\s+[^\n]*?%([xyz])mm", asm)
    return {"xmm": found.count("x"), "ymm": found.count("y"), "zmm": found.count("z")}


def measure_peak(iters: int = 20000, repeats: int = REPEATS) -> dict:
    """Best-of-``repeats`` single-core FMA lane throughput; a dict for cpu_peak.json."""
    acc = np.ones((8, ACC), dtype=np.float32)
    a, b = np.float32(0.999999), np.float32(1e-7)
    _fma_kernel(acc.copy(), a, b, 1)  # compile
    widths = fma_widths(next(iter(_fma_kernel.inspect_asm().values())))
    best = float("inf")
    for _ in range(repeats):
        x = acc.copy()
        t0 = time.perf_counter()
        _fma_kernel(x, a, b, iters)
        best = min(best, time.perf_counter() - t0)
    fmas = acc.size * CHAIN * iters
    return {"fma_lanes_per_s_per_core": fmas / best, "gflops_fp32_per_core": 2 * fmas / best / 1e9,
            "seconds": best, "fmas": fmas, "fma_instructions_by_width": widths,
            "repeats": repeats, "cpu": platform.processor() or platform.machine(), "numba": numba.__version__,
            "method": f"best of {repeats}; numba njit fastmath=contract; 8 independent chains of {CHAIN} "
                      f"x = x*a + b per element of an (8, {ACC}) float32 array, element loop vectorised; "
                      "one thread"}


def write_peak(run_dir: Path) -> Path:
    path = Path(run_dir) / PEAK_FILE
    path.write_text(json.dumps(measure_peak(), indent=2) + "\n")
    return path


def read_peak(run_dir: Path) -> dict | None:
    """The run folder's measured peak, or None when it has none."""
    path = Path(run_dir) / PEAK_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m harness.gpu_profile.cpu_peak RUN_DIR", file=sys.stderr)
        sys.exit(2)
    print(write_peak(Path(sys.argv[1])))
