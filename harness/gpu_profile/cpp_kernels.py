"""Profile rows of the hand-written C++ fused solver (backend "cuda-cpp") beside Numba's.

For a fused ``KernelKey`` (problem, method, mode, dtype) the cuda-cpp backend also solves, the
row profiles the kernel ``solvers.cpp.cuda_source`` names for it, compiled as the backend's
NVRTC build is (same options), through :func:`kernels.profile_cuda_source`: nvcc to PTX for
compute_75, then the same ptxas per architecture as Numba's PTX. Rows carry ``source``
"cuda-cpp" and are cached on disk by content hash (the C++ source, the kernel, the
architecture, the block size, the tool versions and this package's source).
"""
from __future__ import annotations

import hashlib

from harness.gpu_profile import kernels, tools

SOURCE = "cuda-cpp"


def supports(key) -> bool:
    """Whether the cuda-cpp backend has a kernel for ``key``'s method and mode (final state only)."""
    from solvers.cpp.source import ENTRY_POINTS

    return (key.method, key.mode) in ENTRY_POINTS and getattr(key, "save", "final") == "final"


def default_block() -> int:
    """The cuda-cpp backend's CUDA block size (one source of truth: the backend)."""
    from solvers.cpp.backend import THREADS_PER_BLOCK

    return int(THREADS_PER_BLOCK)


def flags() -> tuple[str, ...]:
    """nvcc options matching the backend's NVRTC build (-O3 is nvcc's default device level too)."""
    from solvers.cpp.build import NVRTC_OPTIONS

    return ("-O3", *NVRTC_OPTIONS)


def profile_key(key, arch: str, block: int | None = None) -> dict:
    """The profile row of the cuda-cpp kernel for ``key`` on ``arch`` (a row with its reason on failure)."""
    from solvers.cpp import cuda_source

    block = block or default_block()
    fields = dict(problem=key.problem, method=key.method, mode=key.mode, dtype=key.dtype, variant="", source=SOURCE)
    try:
        source, (name,) = cuda_source(key.problem, key.method, key.mode, key.dtype, key.controller)
    except Exception as exc:  # noqa: BLE001 - a problem SymPy cannot print as C is a row, not a crash
        return kernels._failed_row(fields, arch, f"cuda-cpp source: {type(exc).__name__}: {exc}"[:300])
    opts = flags()
    versions = [tools.tool_version(p) if p else "none" for p in (tools.find_tool("nvcc"), tools.find_tool("ptxas"))]
    cache_key = "cpprow-" + hashlib.sha256("|".join(
        (source, name, arch, str(block), *opts, *versions, str(tools.sm70_ptxas()), kernels._package_digest())
    ).encode()).hexdigest()[:24]

    def compute():
        rows = kernels.profile_cuda_source(source, arch, block, opts, kernel=name)
        if len(rows) != 1:
            raise tools.ToolError(f"expected the entry function {name}, found {len(rows)}")
        return rows[0]

    try:
        row = kernels._cached(cache_key, compute)
    except (tools.ToolError, ValueError, RuntimeError) as exc:
        return kernels._failed_row(fields, arch, " ".join(str(exc).split())[:300])
    row = {**row, **fields}
    return {c: row.get(c) for c in kernels.PROFILE_COLUMNS}
