"""What to profile: every fused kernel Numba generates (``source`` "numba"), the hand-written C++
kernel of each key the cuda-cpp backend also solves (``source`` "cuda-cpp"), and the MPGOS variant.

:func:`fused_profiles` gives their rows on every architecture asked for, each row cached on disk
by content hash (``kernels.cached``): a Numba row by its ``KernelKey``'s module name (a digest of
what generates it), a cuda-cpp row by the C++ source and kernel name; both also by the
architecture, the block size, the toolchain versions and ``kernels.package_digest()``.

The cuda-cpp kernel of a ``KernelKey`` is the one ``solvers.cpp.cuda_source`` names for it,
compiled as the backend's NVRTC build is (same options): nvcc to PTX for compute_75, then the
same ptxas per architecture as Numba's PTX (``kernels.profile_cuda_source``).

The MPGOS variant (:func:`mpgos_variant_ptx`) is the fused Lorenz kernel with the right-hand
side's constants written as Python float literals (``10.0``, ``2.666``), as MPGOS's Lorenz
source had them: float64 constants silently promote the float32 arithmetic. It exists only to
be profiled (a negative control of the float32 purity check), never timed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys

from harness.gpu_profile import kernels, tools
from problems.kinds import kind_of
from problems.registry import problem_names
from solvers.cpp import cuda_source
from solvers.cpp.backend import THREADS_PER_BLOCK as CPP_BLOCK
from solvers.cpp.build import NVRTC_OPTIONS
from solvers.cpp.source import ENTRY_POINTS
from solvers.fused import FusedBackend, KernelKey, generate_source
from solvers.fused.purity import cuda_ptx, signature

ARCHS = ("sm_70", "sm_75", "sm_90")
#: PTX is generated once per kernel for this compute capability and assembled for every arch
#: (ptxas assembles PTX for any architecture at or above its .target).
PTX_CC = (7, 5)
MPGOS_VARIANT = "mpgos-double-literals"
#: ``source`` of the rows of Numba's fused kernels and of the hand-written C++ ones.
NUMBA_SOURCE = "numba"
CPP_SOURCE = "cuda-cpp"
#: The fused backend's default CUDA block size (one source of truth: its constructor).
DEFAULT_BLOCK = int(inspect.signature(FusedBackend.__init__).parameters["threads_per_block"].default)
#: nvcc options matching the cuda-cpp backend's NVRTC build (-O3 is nvcc's default device level too).
CPP_FLAGS = ("-O3", *NVRTC_OPTIONS)


# ---- Numba's fused kernels ---------------------------------------------------------------------------

def fused_keys(problems=None, methods=None, modes=None, dtypes=("float32", "float64")):
    """Every (problem, method, mode, dtype) KernelKey the fused backend supports (CUDA target,
    final state saved), filtered by the given names."""
    keys = []
    for prob in problem_names():
        if problems and prob not in problems:
            continue
        kind = kind_of(prob)
        if not kind.gpu_profiled:
            continue  # kernels of the other kinds (SDE, swarm, nonlinear) are built elsewhere
        for method, mode_list in FusedBackend.kinds[kind.name].methods.items():
            if methods and method not in methods:
                continue
            for mode in mode_list:
                if modes and mode not in modes:
                    continue
                for dtype in dtypes:
                    keys.append(KernelKey(prob, method, mode, dtype, target="cuda"))
    return keys


def fused_ptx(key) -> str:
    """PTX of a fused CUDA kernel (compute_75), cached on disk by the key's content hash."""
    cc = f"{PTX_CC[0]}{PTX_CC[1]}"
    return kernels.cached(f"ptx-{key.module_name()}-cc{cc}", lambda: cuda_ptx(key, PTX_CC))


def _key_fields(key, variant: str = "", source: str = NUMBA_SOURCE) -> dict:
    return dict(problem=key.problem, method=key.method, mode=key.mode, dtype=key.dtype, variant=variant,
                source=source)


def _single_row(rows: list[dict], what: str) -> dict:
    if len(rows) != 1:
        raise tools.ToolError(f"expected {what}, found {len(rows)}")
    return rows[0]


def _cached_row(cache_key: str, compute, fields: dict, arch: str) -> dict:
    """The row ``compute()`` gives (cached under ``cache_key``) with ``fields`` set, in
    ``PROFILE_COLUMNS`` order; a failed row with the tool's reason when compiling fails."""
    try:
        row = kernels.cached(cache_key, compute)
    except (tools.ToolError, ValueError, RuntimeError) as exc:
        return kernels.failed_row(fields, arch, " ".join(str(exc).split())[:300])
    row = {**row, **fields}
    return {c: row.get(c) for c in kernels.PROFILE_COLUMNS}


def profile_numba(key, arch: str, block: int = DEFAULT_BLOCK, variant: str = "") -> dict:
    """The profile row of one fused kernel (or its MPGOS ``variant``) on ``arch``."""
    asm_tool = tools.find_tool("ptxas")
    version = tools.tool_version(asm_tool) if asm_tool else "none"
    cache_key = "row-" + hashlib.sha256(
        f"{key.module_name()}|{variant}|{arch}|{block}|{version}|{tools.sm70_ptxas()}|{kernels.package_digest()}"
        .encode()).hexdigest()[:24]

    def compute():
        ptx = mpgos_variant_ptx(key) if variant == MPGOS_VARIANT else fused_ptx(key)
        return _single_row(kernels.profile_ptx(ptx, arch, block), "one entry function")

    return _cached_row(cache_key, compute, _key_fields(key, variant), arch)


# ---- the hand-written C++ kernels (backend cuda-cpp) -------------------------------------------------

def cpp_supports(key) -> bool:
    """Whether the cuda-cpp backend has a kernel for ``key``'s method and mode (final state only)."""
    return (key.method, key.mode) in ENTRY_POINTS and getattr(key, "save", "final") == "final"


def profile_cpp(key, arch: str, block: int | None = None) -> dict:
    """The profile row of the cuda-cpp kernel for ``key`` on ``arch`` (``block`` None: the
    backend's own block size)."""
    block = block or int(CPP_BLOCK)
    fields = _key_fields(key, source=CPP_SOURCE)
    try:
        source, (name,) = cuda_source(key.problem, key.method, key.mode, key.dtype, key.controller)
    except Exception as exc:  # noqa: BLE001 - a problem SymPy cannot print as C is a row, not a crash
        return kernels.failed_row(fields, arch, f"cuda-cpp source: {type(exc).__name__}: {exc}"[:300])
    versions = [tools.tool_version(p) if p else "none" for p in (tools.find_tool("nvcc"), tools.find_tool("ptxas"))]
    cache_key = "cpprow-" + hashlib.sha256("|".join(
        (source, name, arch, str(block), *CPP_FLAGS, *versions, str(tools.sm70_ptxas()), kernels.package_digest())
    ).encode()).hexdigest()[:24]

    def compute():
        rows = kernels.profile_cuda_source(source, arch, block, CPP_FLAGS, kernel=name)
        return _single_row(rows, f"the entry function {name}")

    return _cached_row(cache_key, compute, fields, arch)


# ---- every kernel --------------------------------------------------------------------------------------

def fused_profiles(archs=ARCHS, keys=None, block: int | None = None, include_mpgos: bool = True,
                   progress=None, sources=(NUMBA_SOURCE, CPP_SOURCE)) -> list[dict]:
    """Profile rows of ``keys`` (default: every fused kernel) on every arch, plus the MPGOS variant;
    with "cuda-cpp" in ``sources``, also the hand-written C++ kernel of each key it supports.
    ``block`` None: each backend's own default block size."""
    keys = fused_keys() if keys is None else list(keys)
    jobs = [(k, "") for k in keys]
    if include_mpgos and NUMBA_SOURCE in sources:
        jobs.append((mpgos_key(), MPGOS_VARIANT))
    rows = []
    for i, (key, variant) in enumerate(jobs):
        if progress:
            progress(f"[{i + 1}/{len(jobs)}] {key.problem} {key.method} {key.mode} {key.dtype} {variant}".rstrip())
        with_cpp = CPP_SOURCE in sources and not variant and cpp_supports(key)
        for arch in archs:
            if NUMBA_SOURCE in sources:
                rows.append(profile_numba(key, arch, block or DEFAULT_BLOCK, variant))
            if with_cpp:
                rows.append(profile_cpp(key, arch, block))
    return rows


# ---- the MPGOS-style variant --------------------------------------------------------------------------

def mpgos_key():
    return KernelKey("lorenz", "tsit5", "fixed", "float32", target="cuda")


#: Lorenz's constant parameters as MPGOS's source wrote them (double literals).
_MPGOS_LITERALS = {"sigma": "10.0", "beta": "2.666"}


def mpgos_variant_source(key=None) -> str:
    """The generated Lorenz kernel module with sigma and beta replaced by double literals in
    every spliced right-hand side (the parameter reads stay; only the arithmetic changes)."""
    key = key or mpgos_key()
    if key.problem != "lorenz":
        raise ValueError("the MPGOS variant is defined for the Lorenz kernel only")
    src = generate_source(key)
    n_sub = 0
    for name, lit in _MPGOS_LITERALS.items():
        # uses of the unpacked parameter inside an expression (" * "), not its assignment
        src, k = re.subn(rf"\b(\w*_rhs\d*_){name}\b(?= \*)", lit, src)
        n_sub += k
    if n_sub == 0:
        raise ValueError("the MPGOS variant found no sigma/beta use to replace: the generator changed")
    return src.replace(key.module_name(), key.module_name() + "_mpgos")


def mpgos_variant_ptx(key=None) -> str:
    """PTX (compute_75) of the MPGOS-style variant, compiled from a private module file."""
    from numba import cuda  # numba.cuda is optional (numba-cuda) and slow to import

    key = key or mpgos_key()
    src = mpgos_variant_source(key)
    d = kernels.cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    name = f"{key.module_name()}_mpgos"
    path = d / f"{name}.py"
    if not path.exists() or path.read_text() != src:
        path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    ptx, _ = cuda.compile_ptx(mod.solve_kernel.py_func, signature(key), cc=PTX_CC)
    return ptx
