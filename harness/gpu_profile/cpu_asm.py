"""The same instruction-count reasoning on the CPU, where it can be checked against a clock.

``lane_kernel_profile(key)`` compiles the fused CPU lane kernel's block function (``_block``,
see ``solvers.fused.codegen``) and reads its x86 assembly (Numba's ``inspect_asm``). The hot
loop is the innermost loop (backward jump) holding the most packed floating-point instructions:
the vectorised lane loop inside the time loop. One iteration of it advances ``W`` lanes (W =
the vector width in float32 lanes of its packed instructions: 4 xmm, 8 ymm, 16 zmm) by one
step, so its instruction count is also the number of lane-operations per trajectory-step.

``measure_peak()`` is the measured float32 FMA throughput of one core (a Numba
microbenchmark): it times 8 independent chains of ``CHAIN`` dependent FMAs (``x = x * a + b``)
per element of an (8, ``ACC``) float32 array, single-threaded. LLVM vectorises the element loop
(ymm on AVX2, zmm where it chooses 512-bit vectors), so 8 independent vector chains are in
flight: enough to cover FMA latency times the FMA ports of current x86 cores. The result is
FMA lane-operations per second (one FMA = 2 flops); the vector width of the FMAs LLVM emitted
is read back from the assembly and stored with it, so a "% of measured peak" statement can say
what the peak is. ``python -m harness.gpu_profile cpu-peak DIR`` writes ``DIR/cpu_peak.json``.

``calibration(df, peak)`` sets the hot loop's count against that peak and the fused kernel's
measured time per trajectory-step in the run: predicted = packed FP instructions per
trajectory-step / measured FMA lane rate (the FP pipes issue FMUL/FADD at the FMA rate or
faster on current x86).
"""
from __future__ import annotations

import json
import platform
import re
import time
from collections import Counter
from pathlib import Path

import llvmlite.binding
import numba
import numpy as np
import pandas as pd

from harness.gpu_profile.kernels import cached, package_digest
from solvers.fused import KernelKey
from solvers.fused.build import load_module
from solvers.fused.purity import sample_args

_RE_LABEL = re.compile(r"^(\.LBB\d+_\d+):")
_RE_JUMP = re.compile(r"^\s*j[a-z]+\s+(\.LBB\d+_\d+)")
_RE_INSTR = re.compile(r"^\s+([a-z][a-z0-9]*)\b(.*)$")
_WIDTH = {"x": 4, "y": 8, "z": 16}

CPU_CLASSES = ("fma", "mul", "add", "fp_other", "scalar_fp", "vec_move", "integer", "control", "other")


def classify_x86(op: str, operands: str) -> str:
    if re.match(r"v?f?n?m?(fmadd|fmsub|fnmadd|fnmsub)\w*ps$", op):
        return "fma"
    if op in ("vmulps", "mulps"):
        return "mul"
    if op in ("vaddps", "vsubps", "addps", "subps"):
        return "add"
    if re.match(r"v?(div|sqrt|max|min|cmp|blendv|and|andn|or|xor|rcp|rsqrt|round)\w*ps$", op):
        return "fp_other"
    if op.endswith(("ss", "sd")) and op.startswith("v") and not op.startswith("vmov") and not op.startswith("vbroadcast"):
        return "scalar_fp"
    if op.startswith(("vmov", "movap", "movup", "vbroadcast", "vperm", "vinsert", "vextract", "vshuf", "vunpck",
                      "vgather", "vpbroadcast")):
        return "vec_move"
    if op.startswith("j") or op in ("call", "ret", "cmp", "test"):
        return "control"
    if op.startswith(("mov", "add", "sub", "inc", "dec", "lea", "imul", "shl", "shr", "sar", "and", "or",
                      "xor", "cmov", "set", "vp", "neg", "not")):
        return "integer"
    return "other"


def first_function(asm: str) -> list[str]:
    """The lines of the first function defined in ``asm`` (the compiled Python function itself;
    Numba's CPython wrapper and helpers follow it)."""
    lines = asm.splitlines()
    start = next((i for i, ln in enumerate(lines) if re.match(r"^_ZN\w+:", ln)), 0)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith(".Lfunc_end")), len(lines))
    return lines[start:end]


def hot_loop(lines: list[str]) -> tuple[dict, int] | None:
    """(class counts of the hot loop's body, float32 lanes per iteration) or None."""
    labels: dict[str, int] = {}
    for i, ln in enumerate(lines):
        m = _RE_LABEL.match(ln)
        if m:
            labels[m.group(1)] = i
    best = None
    for i, ln in enumerate(lines):
        m = _RE_JUMP.match(ln)
        if not (m and m.group(1) in labels and labels[m.group(1)] < i):
            continue
        start = labels[m.group(1)]
        body = [_RE_INSTR.match(x) for x in lines[start:i + 1]]
        body = [(b.group(1), b.group(2)) for b in body if b and not b.group(1).startswith(".")]
        # innermost: no other backward jump strictly inside
        inner = any(_RE_JUMP.match(x) and _RE_JUMP.match(x).group(1) in labels
                    and start < labels[_RE_JUMP.match(x).group(1)] < i for x in lines[start + 1:i])
        if inner:
            continue
        counts = Counter(classify_x86(op, rest) for op, rest in body)
        packed = counts["fma"] + counts["mul"] + counts["add"] + counts["fp_other"]
        if best is None or packed > best[2]:
            widths = Counter(r for op, rest in body if classify_x86(op, rest) in ("fma", "mul", "add")
                             for r in re.findall(r"%([xyz])mm", rest)[-1:])
            w = _WIDTH[widths.most_common(1)[0][0]] if widths else 1
            best = ({c: int(counts.get(c, 0)) for c in CPU_CLASSES}, w, packed)
    return None if best is None else (best[0], best[1])


def lane_kernel_profile(key) -> dict:
    """Hot-loop profile of ``key``'s CPU lane kernel: counts per trajectory-step and the width.
    Cached on disk by the key's content hash and the host CPU LLVM compiles for."""
    cpu = numba.config.CPU_NAME or llvmlite.binding.get_host_cpu_name()
    return cached(f"cpu-{key.module_name()}-{cpu}-{package_digest()}", lambda: _lane_kernel_profile(key, cpu))


def _lane_kernel_profile(key, cpu: str) -> dict:
    mod = load_module(key)
    args = (0,) + sample_args(key)
    sig = tuple(numba.typeof(x) for x in args)
    mod._block.compile(sig)
    found = hot_loop(first_function(mod._block.inspect_asm(sig)))
    if found is None:
        raise ValueError("no loop found in the lane kernel's assembly")
    counts, width = found
    return dict(counts=counts, lanes_per_iteration=width, llvm_cpu=cpu,
                packed_fp_per_trajectory_step=counts["fma"] + counts["mul"] + counts["add"] + counts["fp_other"],
                instructions_per_trajectory_step=sum(counts.values()))


def measured_ns_per_core_step(df: pd.DataFrame) -> tuple[float | None, str]:
    """Core-nanoseconds per trajectory-step of the fused Lorenz Tsit5 float32 fixed solve at the
    largest N of the run (median time x threads / (N x steps))."""
    if df is None or df.empty or "backend" not in df:
        return None, "no results"
    sel = df[(df["status"] == "ok") & (df["backend"] == "fused") & (df["problem"] == "lorenz")
             & (df["method"] == "tsit5") & (df["mode"] == "fixed") & (df["dtype"] == "float32")
             & (df["device"] == "cpu") & (df["variant"].fillna("") == "")]
    if sel.empty:
        return None, "no fused Lorenz fixed CPU row"
    big = sel[sel["n"] == sel["n"].max()]
    threads = None
    if "threads" in big and big["threads"].notna().any():
        threads = int(big["threads"].dropna().iloc[0])
    else:
        try:
            threads = int(json.loads(big["settings"].iloc[0]).get("threads"))
        except (ValueError, TypeError, KeyError, AttributeError):
            threads = None
    if not threads:
        return None, "thread count not recorded"
    n = int(big["n"].iloc[0])
    t = float(big["time_s"].median())
    steps = float(big["steps_mean"].iloc[0])
    return t * threads / (n * steps) * 1e9, f"N = {n:,}, {threads} threads, median {t:.3g} s"


def calibration(df: pd.DataFrame, peak: dict | None) -> dict:
    """Predicted vs measured CPU core-ns per trajectory-step for the Lorenz Tsit5 fixed lane kernel
    (``peak``: :func:`read_peak`'s dict, or None)."""
    prof = lane_kernel_profile(KernelKey("lorenz", "tsit5", "fixed", "float32"))
    measured, how = measured_ns_per_core_step(df)
    out = dict(profile=prof, measured_ns=measured, measured_how=how, predicted_ns=None, peak=peak)
    if peak and peak.get("fma_lanes_per_s_per_core"):
        out["predicted_ns"] = prof["packed_fp_per_trajectory_step"] / peak["fma_lanes_per_s_per_core"] * 1e9
    return out


# ---- the measured FMA peak --------------------------------------------------------------------------

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
