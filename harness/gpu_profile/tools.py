"""Find and run the CUDA toolchain (ptxas, nvdisasm, nvcc) without a GPU.

The PyPI packages ``nvidia-cuda-nvcc`` and ``nvidia-cuda-nvdisasm`` (CUDA 13.x) install the
tools into ``site-packages/nvidia/cu13/bin``; they are preferred over the system ones because
numba-cuda emits PTX ``.version 9.5``, which the system CUDA 13.0 ``ptxas`` refuses.
``$ODEBENCH_CUDA_BIN`` names another folder to try first.

CUDA 13 dropped ``sm_70`` (the V100). A CUDA 12 ``ptxas`` (PyPI ``nvidia-cuda-nvcc-cu12``,
which installs ``site-packages/nvidia/cuda_nvcc/bin``) still assembles it, but that package
has no ``nvdisasm``, and CUDA 13's refuses sm_70 cubins ("SM70 is deprecated"). So an ``sm_70``
row takes registers, spills and local memory from the real sm_70 assembly, and the per-step
SASS counts from the same PTX assembled for ``sm_75`` (Volta and Turing share the instruction
set family). Where no CUDA 12 ptxas is found, the whole ``sm_70`` row is assembled for
``sm_75`` (the same register file and scheduler layout per SM partition) and labelled as that
proxy. The two packages install side by side (``nvidia/cu13`` and ``nvidia/cuda_nvcc``).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Architectures the CUDA 13 toolchain no longer targets, and the proxy used in their place.
DROPPED_ARCHS = {"sm_70": "sm_75", "sm_72": "sm_75"}


class ToolError(RuntimeError):
    """A CUDA tool is missing or failed; the message is one line."""


def _candidate_dirs(package_dir: str) -> list[Path]:
    dirs = []
    env = os.environ.get("ODEBENCH_CUDA_BIN", "").strip()
    if env:
        dirs.append(Path(env))
    for entry in sys.path:
        p = Path(entry) / "nvidia" / package_dir / "bin"
        if p.is_dir():
            dirs.append(p)
    return dirs


@functools.lru_cache(maxsize=None)
def find_tool(name: str, package_dir: str = "cu13") -> Path | None:
    """The tool ``name`` from site-packages ``nvidia/<package_dir>/bin`` (or $ODEBENCH_CUDA_BIN),
    else from PATH (only for the CUDA 13 family); None when absent."""
    for d in _candidate_dirs(package_dir):
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    if package_dir == "cu13":
        found = shutil.which(name)
        return Path(found) if found else None
    return None


@functools.lru_cache(maxsize=None)
def tool_version(path: Path) -> str:
    """'release 13.5, V13.5.37' from ``tool --version`` (or '' when it prints none)."""
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"release [\d.]+, V[\d.]+", out)
    return m.group(0) if m else ""


def sm70_ptxas() -> Path | None:
    """A ptxas that still targets sm_70 (CUDA 12: PyPI nvidia-cuda-nvcc-cu12), or None."""
    return find_tool("ptxas", "cuda_nvcc")


def missing_tools() -> list[str]:
    """Names of the tools the profiler needs and cannot find (empty: all present)."""
    return [n for n in ("ptxas", "nvdisasm") if find_tool(n) is None]


@dataclass(frozen=True)
class Assembled:
    """A cubin and what ``ptxas -v`` said about it."""

    cubin: bytes
    ptxas_log: str
    arch: str            # the architecture asked for
    assembled_for: str   # the architecture the cubin is for (differs when a proxy was used)
    toolchain: str       # "ptxas release 13.5, V13.5.37"


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolError(f"{what} failed to run: {exc}") from None
    if res.returncode != 0:
        first = (res.stderr.strip() or res.stdout.strip() or "no output").splitlines()[0]
        raise ToolError(f"{what} failed (exit {res.returncode}): {first}")
    return res


def _retarget(ptx: str, arch: str) -> str:
    return re.sub(r"^\.target\s+sm_\w+", f".target {arch}", ptx, count=1, flags=re.M)


def assemble_ptx(ptx: str, arch: str) -> Assembled:
    """Assemble PTX for ``arch`` ("sm_90") with ``ptxas -v``.

    For a dropped architecture (sm_70) a CUDA 12 ptxas is used when present (the PTX is
    retargeted to it and its ``.version`` lowered to what that ptxas reads); otherwise the PTX
    is assembled for the proxy in ``DROPPED_ARCHS`` and ``assembled_for`` says so.
    """
    target = arch
    ptxas = find_tool("ptxas")
    if arch in DROPPED_ARCHS:
        old = sm70_ptxas()
        if old is not None:
            ptxas = old
            ptx = re.sub(r"^\.version\s+[\d.]+", ".version 8.0", _retarget(ptx, arch), count=1, flags=re.M)
        else:
            target = DROPPED_ARCHS[arch]
    if ptxas is None:
        raise ToolError("ptxas not found (install nvidia-cuda-nvcc from PyPI or put CUDA on PATH)")
    if target != arch or arch not in DROPPED_ARCHS:
        ptx = _retarget(ptx, target)
    with tempfile.TemporaryDirectory(prefix="odebench-ptxas-") as tmp:
        src, out = Path(tmp) / "k.ptx", Path(tmp) / "k.cubin"
        src.write_text(ptx)
        res = _run([str(ptxas), f"-arch={target}", "-v", "-o", str(out), str(src)], f"ptxas -arch={target}")
        return Assembled(out.read_bytes(), res.stdout + res.stderr, arch, target,
                         f"ptxas {tool_version(ptxas)}")


def cuda_to_ptx(source: str, flags: tuple[str, ...] = ("-O3",), virtual_arch: str = "compute_75") -> tuple[str, str]:
    """(PTX, toolchain) of CUDA C++ ``source``: ``nvcc -ptx -arch=<virtual_arch>``.

    Hand-written kernels go through PTX like Numba's (one PTX for compute_75, assembled by
    :func:`assemble_ptx` for every architecture), so both kinds of kernel meet the same ptxas,
    and sm_70 gets the CUDA 12 ptxas where it is installed.
    """
    nvcc = find_tool("nvcc")
    if nvcc is None:
        raise ToolError("nvcc not found (install nvidia-cuda-nvcc from PyPI or put CUDA on PATH)")
    with tempfile.TemporaryDirectory(prefix="odebench-nvcc-") as tmp:
        src, out = Path(tmp) / "k.cu", Path(tmp) / "k.ptx"
        src.write_text(source)
        _run([str(nvcc), "-ptx", f"-arch={virtual_arch}", *flags, "-o", str(out), str(src)],
             f"nvcc -ptx -arch={virtual_arch}")
        return out.read_text(), f"nvcc {tool_version(nvcc)}"


def disassemble(cubin: bytes) -> str:
    """SASS text of a cubin (``nvdisasm -c``: code sections only, with labels)."""
    nvdisasm = find_tool("nvdisasm")
    if nvdisasm is None:
        raise ToolError("nvdisasm not found (install nvidia-cuda-nvdisasm from PyPI)")
    with tempfile.TemporaryDirectory(prefix="odebench-nvdisasm-") as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        return _run([str(nvdisasm), "-c", str(path)], "nvdisasm").stdout
