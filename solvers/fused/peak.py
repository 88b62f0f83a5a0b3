"""This core's instruction set and measured fused-multiply-add peak (for the CPU floor).

``cpu_isa()`` names the vector ISA the fused CPU kernels are compiled for here (LLVM's host
CPU name and its widest float vector); ``fma_peak()`` measures, on one core, how many
lane-FMAs per nanosecond the widest vectors sustain: a loop of 12 independent
``acc = fma(acc, m, c)`` chains written directly in LLVM IR (llvmlite, Numba's own LLVM),
enough chains to cover the FMA latency of every current x86 core, so it runs at the FMA
ports' throughput. The time is the thread's CPU time, so a core shared with other processes
still gives its own rate (the clock may still vary with load and temperature).

``cpu_fingerprint()`` returns both in one dict, for a run's environment fingerprint.

    python -m solvers.fused.peak          # prints the fingerprint
"""
from __future__ import annotations

import ctypes
import functools
import time

import llvmlite.binding as llvm

_CHAINS = 12  # independent accumulators: >= FMA latency (4) x FMA ports (2), with room


def _init_llvm() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@functools.lru_cache(maxsize=None)
def cpu_isa() -> dict:
    """LLVM's name for this CPU and the float vector width its kernels use.

    ``vector_bits``: 512 with AVX-512F, 256 with AVX/AVX2, else 128; ``isa``: a short label
    ("avx512", "avx2", "avx", "sse"); ``features``: the SIMD feature flags LLVM reports.
    """
    _init_llvm()
    feats = llvm.get_host_cpu_features()
    on = sorted(k for k, v in feats.items() if v and k.startswith(("avx", "fma", "sse4")))
    if feats.get("avx512f"):
        isa, bits = "avx512", 512
    elif feats.get("avx2"):
        isa, bits = "avx2", 256
    elif feats.get("avx"):
        isa, bits = "avx", 256
    else:
        isa, bits = "sse", 128
    return {"cpu_name": llvm.get_host_cpu_name(), "isa": isa, "vector_bits": bits,
            "fma": bool(feats.get("fma")), "features": on}


def _peak_ir(width: int, ftype: str) -> str:
    vt = f"<{width} x {ftype}>"
    suffix = f"v{width}{'f32' if ftype == 'float' else 'f64'}"
    lines = [f"declare {vt} @llvm.fma.{suffix}({vt}, {vt}, {vt})", "",
             f"define void @peak(i64 %n, {ftype} %m, {ftype} %c, ptr %out) {{", "entry:",
             f"  %mv0 = insertelement {vt} poison, {ftype} %m, i32 0",
             f"  %mv = shufflevector {vt} %mv0, {vt} poison, <{width} x i32> zeroinitializer",
             f"  %cv0 = insertelement {vt} poison, {ftype} %c, i32 0",
             f"  %cv = shufflevector {vt} %cv0, {vt} poison, <{width} x i32> zeroinitializer",
             "  br label %loop", "loop:", "  %i = phi i64 [0, %entry], [%i1, %loop]"]
    for k in range(_CHAINS):
        lines.append(f"  %a{k} = phi {vt} [%cv, %entry], [%b{k}, %loop]")
    for k in range(_CHAINS):
        lines.append(f"  %b{k} = call {vt} @llvm.fma.{suffix}({vt} %a{k}, {vt} %mv, {vt} %cv)")
    lines += ["  %i1 = add i64 %i, 1", "  %more = icmp ult i64 %i1, %n",
              "  br i1 %more, label %loop, label %exit", "exit:"]
    acc = "%b0"
    for k in range(1, _CHAINS):
        lines.append(f"  %s{k} = fadd {vt} {acc}, %b{k}")
        acc = f"%s{k}"
    lines += [f"  store {vt} {acc}, ptr %out, align 4", "  ret void", "}"]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=None)
def _peak_function(width: int, dtype: str):
    _init_llvm()
    ftype = "float" if dtype == "float32" else "double"
    mod = llvm.parse_assembly(_peak_ir(width, ftype))
    mod.verify()
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                      features=llvm.get_host_cpu_features().flatten(), opt=3)
    engine = llvm.create_mcjit_compiler(mod, tm)
    engine.finalize_object()
    ct = ctypes.c_float if dtype == "float32" else ctypes.c_double
    fn = ctypes.CFUNCTYPE(None, ctypes.c_int64, ct, ct, ctypes.c_void_p)(engine.get_function_address("peak"))
    return engine, fn, ct  # the engine owns the code: keep it alive with the function


def fma_peak(dtype: str = "float32", seconds: float = 0.2, repeats: int = 5) -> dict:
    """Measured single-core FMA throughput at the widest vector width of this CPU.

    Returns ``lane_fma_per_ns`` (best of ``repeats`` runs of about ``seconds`` each: lane
    FMAs per nanosecond of thread CPU time; x2 for flop/ns), the ``vector_lanes`` used and
    the ``chains``. A kernel doing F lane-FMA-equivalent operations per trajectory step can
    at best take F / lane_fma_per_ns ns per step on one core.
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"invalid dtype {dtype!r}: choose float32 or float64")
    bits = cpu_isa()["vector_bits"]
    width = bits // (32 if dtype == "float32" else 64)
    _engine, fn, ct = _peak_function(width, dtype)
    out = (ct * width)()
    m, c = ct(0.999), ct(1e-3)  # converges to c / (1 - m) = 1: no overflow, no denormals
    fn(1000, m, c, ctypes.addressof(out))  # warm-up
    n = 1 << 16
    while True:  # size the loop to about `seconds`
        t = time.thread_time()
        fn(n, m, c, ctypes.addressof(out))
        el = time.thread_time() - t
        if el >= seconds / 4 or n > 1 << 34:
            break
        n *= 4
    n = max(1, int(n * seconds / max(el, 1e-9)))
    best = 0.0
    for _ in range(repeats):
        t = time.thread_time()
        fn(n, m, c, ctypes.addressof(out))
        el = time.thread_time() - t
        best = max(best, n * _CHAINS * width / (el * 1e9))
    return {"dtype": dtype, "lane_fma_per_ns": best, "vector_lanes": width, "chains": _CHAINS,
            "timer": "thread CPU time, best of %d" % repeats}


def cpu_fingerprint(seconds: float = 0.2) -> dict:
    """ISA and measured float32/float64 FMA peak of one core, for environment fingerprints.

    Keys: ``cpu_name``, ``isa``, ``vector_bits``, ``fma``, ``features`` (see ``cpu_isa``),
    ``fma_peak_f32_per_ns`` and ``fma_peak_f64_per_ns`` (lane FMAs per ns, one core).
    """
    info = dict(cpu_isa())
    info["fma_peak_f32_per_ns"] = round(fma_peak("float32", seconds)["lane_fma_per_ns"], 3)
    info["fma_peak_f64_per_ns"] = round(fma_peak("float64", seconds)["lane_fma_per_ns"], 3)
    info["fma_peak_method"] = f"solvers.fused.peak: {_CHAINS} independent vector FMA chains, thread CPU time"
    return info


if __name__ == "__main__":
    import json

    print(json.dumps(cpu_fingerprint(), indent=2))
