"""The same instruction-count reasoning on the CPU, where it can be checked against a clock.

``lane_kernel_profile(key)`` compiles the fused CPU lane kernel's block function (``_block``,
see ``solvers.fused.codegen``) and reads its x86 assembly (Numba's ``inspect_asm``). The hot
loop is the innermost loop (backward jump) holding the most packed floating-point instructions:
the vectorised lane loop inside the time loop. One iteration of it advances ``W`` lanes (W =
the vector width in float32 lanes of its packed instructions: 4 xmm, 8 ymm, 16 zmm) by one
step, so its instruction count is also the number of lane-operations per trajectory-step.

``calibration(df, run_dir)`` sets that count against the FMA throughput measured by
``harness.gpu_profile.cpu_peak`` (``cpu_peak.json`` in the run folder) and the fused kernel's measured time
per trajectory-step in the run: predicted = packed FP instructions per trajectory-step /
measured FMA lane rate (the FP pipes issue FMUL/FADD at the FMA rate or faster on current x86).
"""
from __future__ import annotations

import re
from collections import Counter

import pandas as pd

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
    import numba

    from harness.gpu_profile.kernels import _cached, _package_digest

    cpu = numba.config.CPU_NAME or __import__("llvmlite.binding", fromlist=["x"]).get_host_cpu_name()
    return _cached(f"cpu-{key.module_name()}-{cpu}-{_package_digest()}", lambda: _lane_kernel_profile(key, cpu))


def _lane_kernel_profile(key, cpu: str) -> dict:
    import numba

    from solvers.fused.build import load_module
    from solvers.fused.purity import sample_args

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
    import json

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
    """Predicted vs measured CPU core-ns per trajectory-step for the Lorenz Tsit5 fixed lane kernel."""
    from solvers.fused import KernelKey

    prof = lane_kernel_profile(KernelKey("lorenz", "tsit5", "fixed", "float32"))
    measured, how = measured_ns_per_core_step(df)
    out = dict(profile=prof, measured_ns=measured, measured_how=how, predicted_ns=None, peak=peak)
    if peak and peak.get("fma_lanes_per_s_per_core"):
        out["predicted_ns"] = prof["packed_fp_per_trajectory_step"] / peak["fma_lanes_per_s_per_core"] * 1e9
    return out
