"""Static profiles of GPU kernels: registers, spills, occupancy and the per-step SASS mix.

Two entry points take any kernel: :func:`profile_ptx` (PTX text, e.g. from Numba) and
:func:`profile_cuda_source` (CUDA C++, compiled by nvcc to PTX for compute_75, then the same
path as Numba's PTX; for hand-written kernels such as the cuda-cpp backend). :func:`fused_profiles`
profiles every fused kernel the fused backend can generate (``source`` "numba") and, for the keys
the hand-written C++ solver also has, its kernel (``source`` "cuda-cpp", see ``cpp_kernels``),
caching each row on disk by content hash (the kernel's ``KernelKey.digest()`` or the C++ source,
the architecture, the toolchain versions and this package's own source), so a repeated run
costs a file read per row.

An ``sm_70`` row assembled by a CUDA 12 ptxas has its resources (registers, spills, occupancy)
from that real sm_70 code and its per-step SASS counts from the same PTX assembled for sm_75
(``sass_from``), since no installed nvdisasm reads sm_70 cubins; see ``tools``.

The MPGOS variant (:func:`mpgos_variant_ptx`) is the fused Lorenz kernel with the right-hand
side's constants written as Python float literals (``10.0``, ``2.666``), as MPGOS's Lorenz
source had them: float64 constants silently promote the float32 arithmetic. It exists only to
be profiled (a negative control of the float32 purity check), never timed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

from harness.gpu_profile import sass, tools
from problems.kinds import kind_of
from problems.registry import problem_names
from solvers.cache import cache_root

ARCHS = ("sm_70", "sm_75", "sm_90")
#: PTX is generated once per kernel for this compute capability and assembled for every arch
#: (ptxas assembles PTX for any architecture at or above its .target).
PTX_CC = (7, 5)
MPGOS_VARIANT = "mpgos-double-literals"


def _backend_block() -> int:
    """The fused backend's default CUDA block size (one source of truth: its constructor)."""
    import inspect

    from solvers.fused.backend import FusedBackend

    return int(inspect.signature(FusedBackend.__init__).parameters["threads_per_block"].default)


DEFAULT_BLOCK = _backend_block()

_PACKAGE_FILES = ("tools.py", "sass.py", "kernels.py", "cpu_asm.py", "cpp_kernels.py")
#: ``source`` of the rows of Numba's fused kernels.
NUMBA_SOURCE = "numba"


def cache_dir() -> Path:
    return cache_root("gpu_profile")


def _package_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _PACKAGE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _cached(key: str, compute):
    """JSON value for ``key`` from the disk cache, computed (and stored) when missing."""
    d = cache_dir()
    path = d / f"{key}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    value = compute()
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
    except OSError:
        pass  # read-only checkout: no cache
    return value


# ---- profiling any kernel ---------------------------------------------------------------------------

PROFILE_COLUMNS = (
    "kernel", "problem", "method", "mode", "dtype", "variant", "source", "arch", "assembled_for",
    "sass_from", "toolchain", "registers", "spill_store_bytes", "spill_load_bytes", "local_bytes", "stack_bytes",
    "block", "max_threads_per_block", "resident_warps", "occupancy", "loop_found", "loop_count", "loop_unroll",
    *(f"step_{c}" for c in sass.CLASSES), "step_total", "kernel_instructions", "ptx_f64_lines",
    "status", "reason",
)


def short_name(mangled: str) -> str:
    """A readable kernel name: a mangled ``_ZN<len><name><len><name>...`` becomes the dotted
    names (Numba's ``<module>.solve_kernel``); anything else is kept, cut to 120 characters."""
    parts, pos = [], 3 if mangled.startswith("_ZN") else -1
    while 0 <= pos < len(mangled) and mangled[pos].isdigit() and len(parts) < 2:
        m = re.match(r"\d+", mangled[pos:])
        k = int(m.group(0))
        start = pos + len(m.group(0))
        parts.append(mangled[start:start + k])
        pos = start + k
    return ".".join(parts) if parts else mangled[:120]


def _rows_from_cubin(asm: tools.Assembled, block: int, kernel: str | None = None,
                     sass_asm: tools.Assembled | None = None) -> list[dict]:
    """Rows of the entry functions of ``asm`` (only ``kernel`` when given, by its exact symbol):
    resources from ``asm``'s ptxas log, SASS counts from ``sass_asm`` when given (the sm_75
    assembly of the same PTX, for a real sm_70 cubin that nothing here disassembles)."""
    resources = sass.parse_ptxas(asm.ptxas_log)
    code = sass_asm or asm
    funcs = sass.split_functions(tools.disassemble(code.cubin))
    toolchain = asm.toolchain if sass_asm is None else (
        f"{asm.toolchain} ({asm.assembled_for}); SASS counts: {sass_asm.toolchain} ({sass_asm.assembled_for})")
    rows = []
    for name, lines in funcs.items():
        if kernel and name != kernel:
            continue
        res = resources.get(name)
        if res is None:  # a device subroutine, not an entry
            continue
        lp = sass.loop_profile(lines)
        # The limits of the card asked for (sm_70's, also when sm_75 code stands in for it).
        warps, occ = sass.occupancy(res.registers, block, asm.arch)
        row = dict(kernel=short_name(name), arch=asm.arch, assembled_for=asm.assembled_for,
                   sass_from=code.assembled_for, toolchain=toolchain,
                   registers=res.registers, spill_store_bytes=res.spill_store_bytes,
                   spill_load_bytes=res.spill_load_bytes, local_bytes=res.local_bytes,
                   stack_bytes=res.stack_bytes, block=block,
                   max_threads_per_block=sass.max_threads_per_block(res.registers, sass.limits(asm.arch)),
                   resident_warps=warps, occupancy=round(occ, 4), loop_found=lp.found,
                   loop_count=lp.loop_count, loop_unroll=lp.unroll, step_total=lp.total_in_loop,
                   kernel_instructions=lp.kernel_instructions, status="ok", reason="")
        row.update({f"step_{c}": lp.per_iteration.get(c, 0) for c in sass.CLASSES})
        rows.append(row)
    return rows


def profile_ptx(ptx: str, arch: str, block: int = DEFAULT_BLOCK, kernel: str | None = None) -> list[dict]:
    """Profile rows (one per entry function, or only ``kernel``) of PTX assembled for ``arch``."""
    from solvers.fused.purity import ptx_f64_lines

    asm = tools.assemble_ptx(ptx, arch)
    sass_asm = None
    if asm.assembled_for in tools.DROPPED_ARCHS:  # real sm_70 code: SASS counts from its proxy
        sass_asm = tools.assemble_ptx(ptx, tools.DROPPED_ARCHS[asm.assembled_for])
    rows = _rows_from_cubin(asm, block, kernel, sass_asm)
    n64 = len(ptx_f64_lines(ptx))
    for r in rows:
        r["ptx_f64_lines"] = n64
        r["source"] = "PTX"
    return rows


def cuda_source_ptx(source: str, flags: tuple[str, ...] = ("-O3",)) -> tuple[str, str]:
    """(PTX for compute_75, nvcc's version) of CUDA C++ ``source``, cached on disk by the
    source, the flags and nvcc's version (one nvcc run serves every architecture)."""
    nvcc = tools.find_tool("nvcc")
    version = tools.tool_version(nvcc) if nvcc else "none"
    digest = hashlib.sha256("\0".join((source, *flags, version)).encode()).hexdigest()[:24]
    ptx, front = _cached(f"cuptx-{digest}", lambda: list(tools.cuda_to_ptx(source, flags)))
    return ptx, front


def profile_cuda_source(source: str, arch: str, block: int = DEFAULT_BLOCK,
                        flags: tuple[str, ...] = ("-O3",), kernel: str | None = None) -> list[dict]:
    """Profile rows (one per ``__global__`` function, or only ``kernel``, an ``extern "C"``
    symbol) of CUDA C++ source: nvcc to PTX (compute_75), then ptxas for ``arch`` as in
    :func:`profile_ptx` (so sm_70 gets the CUDA 12 ptxas where installed)."""
    ptx, front = cuda_source_ptx(source, flags)
    rows = profile_ptx(ptx, arch, block, kernel)
    for r in rows:
        r["toolchain"] = f"{front} -ptx; {r['toolchain']}"
        r["source"] = "CUDA C++ (nvcc " + " ".join(flags) + ")"
    return rows


# ---- the fused kernels ------------------------------------------------------------------------------

def fused_keys(problems=None, methods=None, modes=None, dtypes=("float32", "float64")):
    """Every (problem, method, mode, dtype) KernelKey the fused backend supports (CUDA target,
    final state saved), filtered by the given names."""
    from solvers.fused import FusedBackend, KernelKey  # numba: only where fused kernels are profiled

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
    from solvers.fused.purity import cuda_ptx

    cc = f"{PTX_CC[0]}{PTX_CC[1]}"
    return _cached(f"ptx-{key.module_name()}-cc{cc}", lambda: cuda_ptx(key, PTX_CC))


def _key_fields(key, variant: str = "") -> dict:
    return dict(problem=key.problem, method=key.method, mode=key.mode, dtype=key.dtype, variant=variant)


def _failed_row(fields: dict, arch: str, reason: str) -> dict:
    row = {c: None for c in PROFILE_COLUMNS}
    row.update(fields, arch=arch, status="error", reason=reason)
    return row


def profile_key(key, arch: str, block: int = DEFAULT_BLOCK, variant: str = "") -> dict:
    """The profile row of one fused kernel on ``arch`` (a row with its reason on failure)."""
    asm_tool = tools.find_tool("ptxas")
    version = tools.tool_version(asm_tool) if asm_tool else "none"
    sm70 = tools.sm70_ptxas()
    cache_key = "row-" + hashlib.sha256(
        f"{key.module_name()}|{variant}|{arch}|{block}|{version}|{sm70}|{_package_digest()}".encode()
    ).hexdigest()[:24]

    def compute():
        ptx = mpgos_variant_ptx(key) if variant == MPGOS_VARIANT else fused_ptx(key)
        rows = profile_ptx(ptx, arch, block)
        if len(rows) != 1:
            raise tools.ToolError(f"expected one entry function, found {len(rows)}")
        return rows[0]

    try:
        row = _cached(cache_key, compute)
    except (tools.ToolError, ValueError, RuntimeError) as exc:
        return _failed_row(_key_fields(key, variant), arch, " ".join(str(exc).split())[:300])
    row = dict(row)
    row.update(_key_fields(key, variant), source=NUMBA_SOURCE)
    return {c: row.get(c) for c in PROFILE_COLUMNS}


def fused_profiles(archs=ARCHS, keys=None, block: int | None = None, include_mpgos: bool = True,
                   progress=None, sources=(NUMBA_SOURCE, "cuda-cpp")) -> list[dict]:
    """Profile rows of ``keys`` (default: every fused kernel) on every arch, plus the MPGOS variant;
    with "cuda-cpp" in ``sources``, also the hand-written C++ kernel of each key it supports.
    ``block`` None: each backend's own default block size."""
    from harness.gpu_profile import cpp_kernels

    keys = fused_keys() if keys is None else list(keys)
    jobs = [(k, "") for k in keys]
    if include_mpgos and NUMBA_SOURCE in sources:
        jobs.append((mpgos_key(), MPGOS_VARIANT))
    rows = []
    for i, (key, variant) in enumerate(jobs):
        if progress:
            progress(f"[{i + 1}/{len(jobs)}] {key.problem} {key.method} {key.mode} {key.dtype} {variant}".rstrip())
        with_cpp = cpp_kernels.SOURCE in sources and not variant and cpp_kernels.supports(key)
        for arch in archs:
            if NUMBA_SOURCE in sources:
                rows.append(profile_key(key, arch, block or DEFAULT_BLOCK, variant))
            if with_cpp:
                rows.append(cpp_kernels.profile_key(key, arch, block))
    return rows


# ---- the MPGOS-style variant --------------------------------------------------------------------------

def mpgos_key():
    from solvers.fused import KernelKey

    return KernelKey("lorenz", "tsit5", "fixed", "float32", target="cuda")


#: Lorenz's constant parameters as MPGOS's source wrote them (double literals).
_MPGOS_LITERALS = {"sigma": "10.0", "beta": "2.666"}


def mpgos_variant_source(key=None) -> str:
    """The generated Lorenz kernel module with sigma and beta replaced by double literals in
    every spliced right-hand side (the parameter reads stay; only the arithmetic changes)."""
    from solvers.fused import generate_source

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
    from numba import cuda

    from solvers.fused.purity import signature

    key = key or mpgos_key()
    src = mpgos_variant_source(key)
    d = cache_dir()
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
