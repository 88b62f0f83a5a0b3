"""One FMA policy and one vector-width policy for every compiled backend (issue 33, item 3).

* **FMA**: multiply-add contraction ON wherever the compiler has a documented switch: Numba
  ``fastmath={'contract'}`` (the fused kernel), XLA (contracts by default), torch Inductor
  (``torch._inductor.config.cpp.enable_floating_point_contract_flag = "fast"``; its default is
  ``-ffp-contract=off``) and g++ (``-ffp-contract=fast``, the C++ arm). Eager PyTorch and NumPy
  run precompiled kernels with no such switch: recorded as what they are.
* **Vector width**: the widest the CPU supports, for every compiler that can be told: 512 bits
  on a CPU with AVX-512F, else 256 (AVX2). LLVM prefers 256-bit vectors on some AVX-512 CPUs
  (Intel Skylake-X .. Sapphire Rapids: the ``prefer-256-bit`` tuning); Numba is given the
  host's features with ``-prefer-256-bit`` (``NUMBA_CPU_FEATURES``), XLA
  ``--xla_cpu_prefer_vector_width=<bits>``, Inductor ``cpp.simdlen=<bits>`` and g++
  ``-mprefer-vector-width=<bits>``.

Numba and XLA read these once, from the environment, when they start: :func:`environment`
gives the variables a worker process gets before it imports them (``harness.measure.threads``
adds them to every worker's environment) and :func:`apply` sets them in this process if the
libraries are not imported yet. Every backend records :func:`settings` in its rows.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any

import llvmlite.binding as llvm

XLA_WIDTH_FLAG = "--xla_cpu_prefer_vector_width"

#: What each code generator does under the policy (the ``fma`` setting of a row).
FMA = {
    "numba": "on: Numba fastmath={'contract'}",
    "xla": "on: XLA contracts a*b+c by default",
    "inductor": "on: torch._inductor.config.cpp.enable_floating_point_contract_flag='fast'",
    "gcc": "on: g++ -ffp-contract=fast",
    "torch-eager": "ATen's precompiled kernels (no switch; one op per kernel, nothing to contract)",
    "numpy": "NumPy's precompiled ufuncs (no switch; one op per call, nothing to contract)",
    "scipy": "SciPy/Fortran as built (no switch)",
    "cuda": "on: NVVM/NVRTC contract a*b+c into fma by default",
}


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def vector_bits() -> int:
    """The policy's vector width in bits: 512 with AVX-512F, else 256."""
    return 512 if "avx512f" in cpu_flags() else 256


def numba_cpu_features() -> str | None:
    """``NUMBA_CPU_FEATURES`` for the policy: the host's LLVM features with 256-bit preference
    off (None below AVX-512, where the host default already is the widest)."""
    if vector_bits() < 512:
        return None
    return llvm.get_host_cpu_features().flatten() + ",-prefer-256-bit"


def xla_flags(existing: str) -> str:
    """``existing`` XLA_FLAGS with the policy's preferred vector width (replacing an old one)."""
    kept = [f for f in existing.split() if not f.startswith(XLA_WIDTH_FLAG)]
    return " ".join(kept + [f"{XLA_WIDTH_FLAG}={vector_bits()}"])


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a worker gets (on top of ``base``, default os.environ) for the policy."""
    base = os.environ if base is None else base
    env = {"XLA_FLAGS": xla_flags(base.get("XLA_FLAGS", ""))}
    feats = base.get("NUMBA_CPU_FEATURES") or numba_cpu_features()
    if feats:
        env["NUMBA_CPU_FEATURES"] = feats
    return env


def apply() -> list[str]:
    """Set :func:`environment` in this process for the libraries not imported yet; returns the
    variables set (Numba and JAX read them once, at import/start)."""
    env = environment()
    done = []
    if "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = env["XLA_FLAGS"]
        done.append("XLA_FLAGS")
    if "numba" not in sys.modules and "NUMBA_CPU_FEATURES" in env:
        os.environ["NUMBA_CPU_FEATURES"] = env["NUMBA_CPU_FEATURES"]
        done.append("NUMBA_CPU_FEATURES")
    return done


def _numba_width() -> str:
    feats = os.environ.get("NUMBA_CPU_FEATURES", "")
    if vector_bits() == 512 and "-prefer-256-bit" not in feats:
        return "512 if LLVM's CPU tuning allows (NUMBA_CPU_FEATURES not set to -prefer-256-bit)"
    return f"{vector_bits()} (NUMBA_CPU_FEATURES{' with -prefer-256-bit' if vector_bits() == 512 else ''})"


def _xla_width() -> str:
    for f in os.environ.get("XLA_FLAGS", "").split():
        if f.startswith(XLA_WIDTH_FLAG + "="):
            return f"{f.split('=', 1)[1]} ({f})"
    return "256 (XLA's default; --xla_cpu_prefer_vector_width not set)"


def vector_width(compiler: str) -> str:
    """The ``vector_width`` setting of a row whose code comes from ``compiler``."""
    bits = vector_bits()
    return {
        "numba": _numba_width,
        "xla": _xla_width,
        "inductor": lambda: f"{bits} (torch._inductor.config.cpp.simdlen={bits})",
        "gcc": lambda: f"{bits} (g++ -march=native -mprefer-vector-width={bits})",
        "torch-eager": lambda: "ATen's runtime dispatch (ATEN_CPU_CAPABILITY: the widest it was built for)",
        "numpy": lambda: "NumPy's runtime dispatch (the widest it was built for)",
        "scipy": lambda: "as built (serial Fortran/Python)",
        "cuda": lambda: "n/a (GPU: one thread per trajectory)",
    }[compiler]()


def settings(compiler: str) -> dict[str, Any]:
    """``fma`` and ``vector_width`` for a row whose code comes from ``compiler`` (a key of FMA)."""
    return {"fma": FMA[compiler], "vector_width": vector_width(compiler)}


def inductor_config() -> dict[str, Any]:
    """Set (and return) the Inductor options of the policy, before ``torch.compile`` runs."""
    import torch._inductor.config as cfg  # torch: optional heavy dependency

    cfg.cpp.enable_floating_point_contract_flag = "fast"
    cfg.cpp.simdlen = vector_bits()
    return {"cpp.enable_floating_point_contract_flag": "fast", "cpp.simdlen": vector_bits()}
