"""Compile the C++ solver: g++ into a shared library loaded by ctypes (cached on disk by content
hash), nvcc into a cubin for inspection, NVRTC (cuda.core) at run time on a GPU.

The host library lives in ``<cache>/cpp/<hash>/solver.so`` with its source and g++'s
vectorisation report beside it; the hash covers the source text, the compiler command and the
compiler's version, so a changed problem, tableau or flag gets a fresh build and a stale library
is never loaded. ``$ODEBENCH_CACHE`` moves the cache root; ``$ODEBENCH_CXX`` names the compiler.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from solvers.cache import cache_root as shared_cache_root
from solvers import numeric_policy
from solvers.cache import writable_cache

#: g++ flags: -fno-math-errno / -fno-trapping-math let sqrt and floor become vector instructions
#: (no errno, no FP-exception side effects: nothing here reads either); no -ffast-math:
#: the NaN / overflow checks of the status codes must stay exact. GCC contracts a*b+c into fma
#: by default in GNU mode; -ffp-contract=fast says so explicitly (solvers.numeric_policy: one
#: FMA policy for all), as NVRTC/nvcc do on the GPU and as the Numba kernel does, and
#: -mprefer-vector-width is the policy's vector width (the widest the CPU supports).
CXX_FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
             "-ffp-contract=fast", f"-mprefer-vector-width={numeric_policy.vector_bits()}",
             "-std=c++17", "-shared",
             "-fPIC", "-fopt-info-vec-optimized")
#: NVRTC / nvcc options: C++17, the default fmad=true, no fast math (as numba-cuda's default).
NVRTC_OPTIONS = ("-std=c++17", "-diag-suppress=177")  # 177: unused constants of other methods

_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL] = {}


def cache_root() -> Path:
    return shared_cache_root("cpp")


def compiler() -> str | None:
    """Path of the host C++ compiler ($ODEBENCH_CXX, else g++ on PATH), or None."""
    name = os.environ.get("ODEBENCH_CXX", "g++")
    return shutil.which(name)


@functools.lru_cache(maxsize=None)
def compiler_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{path} --version failed: {out.stderr.strip()[:200]}")
    return out.stdout.splitlines()[0].strip()


def host_available() -> tuple[bool, str]:
    """(True, compiler version) if a working C++ compiler with OpenMP is here, else (False, why)."""
    cxx = compiler()
    if cxx is None:
        return False, f"no C++ compiler: {os.environ.get('ODEBENCH_CXX', 'g++')!r} is not on PATH"
    try:
        return True, compiler_version(cxx)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return False, f"C++ compiler unusable: {exc}"


@dataclass(frozen=True)
class HostBuild:
    library: Path
    report: Path   # g++'s -fopt-info-vec-optimized output
    digest: str


def build_host(source: str) -> HostBuild:
    """Compile ``source`` into a shared library (or find it in the disk cache)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError(host_available()[1])
    blob = hashlib.sha256()
    for part in (source, " ".join(CXX_FLAGS), compiler_version(cxx)):
        blob.update(part.encode())
        blob.update(b"\0")
    digest = blob.hexdigest()[:16]
    folder = writable_cache("cpp") / digest
    lib, report = folder / "solver.so", folder / "vectorisation.txt"
    if lib.exists():
        return HostBuild(lib, report, digest)
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "solver.cpp"
    src.write_text(source)
    tmp = folder / f"solver.{os.getpid()}.so"
    proc = subprocess.run([cxx, *CXX_FLAGS, "-o", str(tmp), str(src)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cxx).name} failed: {proc.stderr.strip()[:2000]}")
    report.write_text(proc.stderr)
    os.replace(tmp, lib)  # atomic: a concurrent process never loads half a library
    return HostBuild(lib, report, digest)


def load_host(source: str) -> ctypes.CDLL:
    """The loaded library for ``source`` (built on first use; one load per process)."""
    with _lock:
        b = build_host(source)
        if b.digest not in _libraries:
            _libraries[b.digest] = ctypes.CDLL(str(b.library))
        return _libraries[b.digest]


def host_assembly(source: str) -> str:
    """The x86 assembly g++ makes of ``source`` with the library's flags (for inspection)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError(host_available()[1])
    flags = [f for f in CXX_FLAGS if f not in ("-shared", "-fopt-info-vec-optimized")]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "solver.cpp"
        src.write_text(source)
        proc = subprocess.run([cxx, *flags, "-S", "-o", "-", str(src)], capture_output=True,
                              text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cxx).name} -S failed: {proc.stderr.strip()[:2000]}")
    return proc.stdout


#: double-precision arithmetic and float -> double conversions in x86 assembly.
X86_FP64 = re.compile(r"\bv?(add|sub|mul|div|sqrt|min|max|fn?m(add|sub)\d*)[sp]d\b|\bv?cvt(ss2sd|ps2pd)\b")


def lane_loop_vectorised(report: str, source: str, function: str) -> bool:
    """Whether g++ reports the ``#pragma omp simd`` lane loop of ``function`` (a block driver of
    fused.hpp) as vectorised. g++ places the report at the loop body's first statement; a
    report on the pragma line itself is the reduction's helper loop, not the lane loop."""
    lines = source.splitlines()
    start = next(i for i, ln in enumerate(lines)
                 if re.search(rf"\bstatic void {function}\s*\(", ln)) + 1  # 1-based line numbers
    pragma = next(i for i in range(start, len(lines)) if "#pragma omp simd" in lines[i]) + 1
    hits = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+: optimized: loop vectorized", report)}
    return any(pragma + 1 < k <= pragma + 8 for k in hits)


# ---- CUDA: nvcc (inspection without a GPU) --------------------------------------------------------

def nvcc_candidates() -> list[str]:
    """nvcc binaries to try: site-packages' nvidia/cu13 (PyPI), then PATH."""
    out = []
    for p in sys.path:
        cand = Path(p) / "nvidia" / "cu13" / "bin" / "nvcc"
        if cand.is_file():
            out.append(str(cand))
    which = shutil.which("nvcc")
    if which:
        out.append(which)
    return out


@dataclass(frozen=True)
class CudaBuild:
    cubin: Path
    ptxas_log: str
    nvcc: str


def build_cubin(source: str, arch: str, out_dir: Path, nvcc: str | None = None) -> CudaBuild:
    """``nvcc -cubin -arch=<arch>`` of ``source`` (as a .cu file) into ``out_dir``; the ptxas
    verbose log (registers, spills) is returned with it. Raises RuntimeError with nvcc's
    message on failure (e.g. an architecture the toolchain dropped)."""
    tools = [nvcc] if nvcc else nvcc_candidates()
    if not tools:
        raise RuntimeError("no nvcc found (site-packages nvidia/cu13/bin or PATH)")
    out_dir.mkdir(parents=True, exist_ok=True)
    cu = out_dir / "solver.cu"
    cu.write_text(source)
    errors = []
    for tool in tools:
        cubin = out_dir / f"solver_{arch}.cubin"
        proc = subprocess.run([tool, "-cubin", f"-arch={arch}", *NVRTC_OPTIONS, "-O3", "-Xptxas", "-v",
                               "-o", str(cubin), str(cu)], capture_output=True, text=True, timeout=600)
        if proc.returncode == 0:
            return CudaBuild(cubin, proc.stderr + proc.stdout, tool)
        errors.append(f"{tool}: {proc.stderr.strip()[:500]}")
    raise RuntimeError("; ".join(errors))


def ptxas_usage(log: str) -> dict[str, dict[str, int]]:
    """Per-kernel {registers, spill_stores, spill_loads, stack} from a ``ptxas -v`` log."""
    usage: dict[str, dict[str, int]] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = m.group(1)
            usage[current] = {}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            usage[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                                  spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            usage[current]["registers"] = int(m.group(1))
    return usage


def sass(cubin: Path, nvcc: str) -> str:
    """The SASS of ``cubin`` (nvdisasm beside the nvcc used, else cuobjdump / nvdisasm on PATH)."""
    bindir = Path(nvcc).parent
    for tool, args in ((bindir / "nvdisasm", ["-c"]), (bindir / "cuobjdump", ["-sass"])):
        if tool.is_file():
            env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
            proc = subprocess.run([str(tool), *args, str(cubin)], capture_output=True, text=True,
                                  timeout=300, env=env)
            if proc.returncode == 0:
                return proc.stdout
    raise RuntimeError(f"no working nvdisasm / cuobjdump beside {nvcc}")


def fp64_instructions(sass_text: str) -> list[str]:
    """SASS lines with a double-precision instruction (DADD, DMUL, DFMA, DSETP, F2F.F64...)."""
    pat = re.compile(r"\b(DADD|DMUL|DFMA|DSETP|DMNMX|DSET|DRCP|DMMA|F2F\.F64[.\w]*|F2F\.[\w.]*F64|"
                     r"I2F\.F64[.\w]*|F2I\.F64[.\w]*|MUFU\.[\w.]*64H)\b")
    return [ln.strip() for ln in sass_text.splitlines() if pat.search(ln)]


# ---- CUDA: NVRTC at run time ------------------------------------------------------------------------

def nvrtc_cubin(source: str, arch: str) -> bytes:
    """Compile ``source`` with NVRTC (cuda.bindings; needs no driver) into a cubin for ``arch``
    (e.g. "sm_90"). Raises RuntimeError with NVRTC's log on failure."""
    from cuda.bindings import nvrtc  # cuda-python is optional: only the GPU build needs NVRTC

    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), b"solver.cu", 0, [], [])
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f"nvrtcCreateProgram: {err}")
    try:
        opts = [o.encode() for o in (*NVRTC_OPTIONS, f"-arch={arch}")]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            _, size = nvrtc.nvrtcGetProgramLogSize(prog)
            log = b" " * size
            nvrtc.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f"NVRTC failed for {arch}: {log.decode(errors='replace')[:2000]}")
        _, size = nvrtc.nvrtcGetCUBINSize(prog)
        cubin = b" " * size
        nvrtc.nvrtcGetCUBIN(prog, cubin)
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def nvrtc_kernel(source: str, kernel: str, device):
    """The kernel ``kernel`` of ``source``, compiled by NVRTC for ``device`` (a cuda.core
    Device) and loaded; cached in the process per (source, kernel, arch)."""
    from cuda.core import ObjectCode  # cuda-python is optional: only the GPU build loads kernels

    arch = "sm_" + "".join(str(x) for x in device.compute_capability)
    key = (hashlib.sha256(source.encode()).hexdigest(), kernel, arch)
    with _lock:
        if key not in _nvrtc_cache:
            _nvrtc_cache[key] = ObjectCode.from_cubin(nvrtc_cubin(source, arch)).get_kernel(kernel)
        return _nvrtc_cache[key]


_nvrtc_cache: dict = {}
