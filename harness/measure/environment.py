"""The environment fingerprint stored with every run (``environment.json``).

Everything is read without importing the heavy libraries (versions come from package
metadata, the GPU from ``nvidia-smi``), so fingerprinting costs well under a second and never
touches the GPU's memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from importlib import metadata, util
from pathlib import Path
from typing import Any

from harness.measure.threads import cpu_count, resolve, worker_environment
from solvers.fused.peak import cpu_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Distributions whose versions matter for the timings (absent ones are recorded as None).
LIBRARIES = ("numpy", "scipy", "numba", "numba-cuda", "llvmlite", "jax", "jaxlib",
             "jax-cuda12-plugin", "jax-cuda13-plugin", "diffrax", "equinox", "torch",
             "torchdiffeq", "torchode", "cupy", "cupy-cuda12x", "cupy-cuda13x", "pandas",
             "pyarrow", "sympy", "rich", "dask", "distributed", "dask-cuda")

#: Environment variables that change how the libraries run (prefix match unless exact).
ENV_PREFIXES = ("XLA_", "JAX_", "NUMBA_", "OPENBLAS_", "MKL_", "TORCH_", "PYTORCH_", "CUPY_",
                "ODEBENCH_", "EQX_", "OMP_", "KMP_", "GOMP_")
#: ... and any variable ending so (thread counts of libraries not listed above).
ENV_SUFFIXES = ("_NUM_THREADS",)
ENV_EXACT = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "NVIDIA_VISIBLE_DEVICES",
             "CUDA_LAUNCH_BLOCKING", "CUDA_MODULE_LOADING")

#: CPU flags worth knowing for vectorised CPU code.
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512cd", "avx512bw",
             "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "avx_vnni", "amx_tile", "asimd", "sve")


def _run(cmd: list[str], timeout: float = 20.0) -> str | None:
    """stdout of ``cmd``, or None if it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def gpu_info() -> dict[str, Any]:
    """GPUs, driver and CUDA version from nvidia-smi; without it, the CUDA torch was built for."""
    info: dict[str, Any] = {"source": None, "gpus": [], "driver": None, "cuda": None}
    query = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap,uuid",
                  "--format=csv,noheader"])
    if query:
        info["source"] = "nvidia-smi"
        for line in query.strip().splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 4:
                info["gpus"].append({"name": parts[0], "memory": parts[2], "compute_cap": parts[3],
                                     "uuid": parts[4] if len(parts) > 4 else None})
                info["driver"] = parts[1]
        banner = _run(["nvidia-smi"]) or ""
        m = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
        info["cuda"] = m.group(1) if m else None
    else:
        info["source"] = "none: nvidia-smi not found or failed"
    info["torch_cuda_build"] = _torch_cuda_build()
    return info


def _torch_cuda_build() -> str | None:
    """The CUDA version torch was built for, read from torch/version.py without importing it."""
    spec = util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    try:
        m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]?([^'\"\n]*)['\"]?", path.read_text(), re.M)
    except OSError:
        return None
    return m.group(1) if m and m.group(1) not in ("None", "") else None


def cpu_info() -> dict[str, Any]:
    """CPU model, relevant flags, core counts (from /proc/cpuinfo where it exists)."""
    info: dict[str, Any] = {"model": platform.processor() or None, "flags": [],
                            "logical_cores": os.cpu_count()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["usable_cores"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    if m:
        info["model"] = m.group(1).strip()
    m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    if m:
        present = set(m.group(1).split())
        info["flags"] = [f for f in CPU_FLAGS if f in present]
    cores = {(p, c) for p, c in re.findall(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.S)}
    info["physical_cores"] = len(cores) or None
    return info


def memory_bytes() -> int | None:
    try:
        m = re.search(r"^MemTotal:\s*(\d+)\s*kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment_variables() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items())
            if k in ENV_EXACT or k.startswith(ENV_PREFIXES) or k.endswith(ENV_SUFFIXES)}


def git_info() -> dict[str, Any]:
    """Commit, dirty flag and the modified tracked paths of the repository holding this harness
    (None outside git)."""
    if shutil.which("git") is None:
        return {"commit": None, "dirty": None}
    commit = _run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"])
    status = _run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"])
    # porcelain lines are "XY path" (or "XY old -> new"): the paths a reader needs to judge a dirty run
    paths = [] if not status else [line[3:].split(" -> ")[-1] for line in status.splitlines() if line.strip()]
    return {"commit": commit.strip() if commit else None,
            "dirty": None if status is None else bool(status.strip()),
            "dirty_paths": sorted(paths)}


def threads_info(threads: list[int] | None = None) -> dict[str, Any]:
    """The run's thread settings: the values its cells use, and what each worker is given
    (harness.measure.threads sets these variables in every worker before it imports a library)."""
    values = sorted(set(threads)) if threads else [resolve(None)]
    return {"setting": values, "default": resolve(None), "usable_cores": cpu_count(),
            "worker_environment": {str(t): worker_environment(t) for t in values}}


def cpu_vector() -> dict[str, Any]:
    """The vector ISA the fused CPU kernels compile for here and one core's measured FMA peak
    (``solvers.fused.peak.cpu_fingerprint``, about 0.2 s): what a CPU kernel's ns per step is
    compared with. A failure is recorded as its reason."""
    try:
        return cpu_fingerprint(seconds=0.02)
    except Exception as exc:  # noqa: BLE001 - the fingerprint never fails a run
        return {"error": f"{type(exc).__name__}: {exc}"}


def fingerprint(threads: list[int] | None = None) -> dict[str, Any]:
    """The machine and software this process runs on (see module docstring); ``threads``: the
    thread counts the run's cells use (default: every core)."""
    return {
        "hostname": socket.gethostname(),
        "os": {"platform": platform.platform(), "system": platform.system(),
               "release": platform.release(), "machine": platform.machine()},
        "python": {"version": sys.version.split()[0], "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "cpu": cpu_info(),
        "cpu_vector": cpu_vector(),
        "memory_bytes": memory_bytes(),
        "gpu": gpu_info(),
        "libraries": library_versions(),
        "environment_variables": environment_variables(),
        "threads": threads_info(threads),
        "git": git_info(),
    }


#: This process's fingerprint per thread setting (``worker_info`` computes each once).
_FINGERPRINTS: dict[int, dict] = {}


def worker_info(threads: int | None) -> dict[str, Any]:
    """Who runs this task: Dask worker address (empty outside a Dask worker), host, pid, and this
    process's environment fingerprint (computed once per thread setting) with its id."""
    t = resolve(threads)
    if t not in _FINGERPRINTS:
        _FINGERPRINTS[t] = fingerprint([t])
    fp = _FINGERPRINTS[t]
    try:
        from distributed import get_worker  # optional: only a Dask worker has an address

        address = get_worker().address
    except (ImportError, ValueError):
        address = ""
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return {"address": address, "host": socket.gethostname(), "pid": os.getpid(),
            "fingerprint_id": digest, "fingerprint": fp}


def brief(info: dict[str, Any]) -> dict[str, Any]:
    """``worker_info`` without the fingerprint itself (that goes to the run's workers.json)."""
    return {k: v for k, v in info.items() if k != "fingerprint"}


def device_tag(fp: dict[str, Any], device: str) -> str:
    """Short tag for run ids: the GPU model on a GPU run ("h100"), else the host name."""
    if device == "gpu" and fp["gpu"]["gpus"]:
        name = fp["gpu"]["gpus"][0]["name"].lower().replace("nvidia", "").replace("tesla", "")
        words = re.findall(r"[a-z0-9]+", name)
        tag = next((w for w in words if re.search(r"\d", w)), words[0] if words else "gpu")
    else:
        tag = fp["hostname"].split(".")[0].lower()
    return re.sub(r"[^a-z0-9-]+", "-", tag)[:16].strip("-") or "host"
