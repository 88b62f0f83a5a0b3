"""Static profiles of GPU kernels: registers, spills, occupancy and the per-step SASS mix.

Two entry points take any kernel: :func:`profile_ptx` (PTX text, e.g. from Numba) and
:func:`profile_cuda_source` (CUDA C++, compiled by nvcc to PTX for compute_75, then the same
path as Numba's PTX; for hand-written kernels such as the cuda-cpp backend). Which kernels the
report profiles is ``sources``'s business; this module knows no backend.

:func:`cached` is the package's disk cache of JSON values by content hash: the callers key each
value by what it is computed from (kernel source or key, architecture, toolchain versions and
:func:`package_digest`, this package's own source), so a repeated run costs a file read per row.

An ``sm_70`` row assembled by a CUDA 12 ptxas has its resources (registers, spills, occupancy)
from that real sm_70 code and its per-step SASS counts from the same PTX assembled for sm_75
(``sass_from``), since no installed nvdisasm reads sm_70 cubins; see ``tools``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from harness.gpu_profile import sass, tools
from solvers.cache import cache_root
from solvers.fused.purity import ptx_f64_lines

#: The files whose source goes into the cache keys of profile rows (``package_digest``): a change
#: in how a row is computed invalidates the rows computed before it.
PACKAGE_FILES = ("tools.py", "sass.py", "kernels.py", "sources.py", "cpu_asm.py")


def cache_dir() -> Path:
    return cache_root("gpu_profile")


def package_digest() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in PACKAGE_FILES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def cached(key: str, compute):
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


def profile_ptx(ptx: str, arch: str, block: int, kernel: str | None = None) -> list[dict]:
    """Profile rows (one per entry function, or only ``kernel``) of PTX assembled for ``arch``,
    the occupancy for blocks of ``block`` threads."""
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
    ptx, front = cached(f"cuptx-{digest}", lambda: list(tools.cuda_to_ptx(source, flags)))
    return ptx, front


def profile_cuda_source(source: str, arch: str, block: int,
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


def failed_row(fields: dict, arch: str, reason: str) -> dict:
    """A profile row of ``fields`` on ``arch`` that failed: status "error" and its reason."""
    row = {c: None for c in PROFILE_COLUMNS}
    row.update(fields, arch=arch, status="error", reason=reason)
    return row
