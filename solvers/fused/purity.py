"""Float32 purity: the generated code of a kernel, and any float64 arithmetic in it.

A Python float literal or a float64 argument silently promotes a float32 Numba kernel to
float64 arithmetic (the MPGOS trap in the paper). These functions return the code the
compilers produce and list its float64 instructions:

* CPU: the LLVM IR of the kernel's compute functions (``_block``, the lane kernel's body,
  and ``_solve_one``, the serial kernel's), from ``dispatcher.inspect_llvm``;
* CUDA: the PTX of the kernel from ``numba.cuda.compile_ptx`` (no GPU needed; the kernel
  calls no device function, see ``solvers.fused.emit.Inliner``).
"""
from __future__ import annotations

import re

import numba

from problems.registry import get_problem
from solvers.fused.build import kernel_args, load_module, make_inputs, make_outputs
from solvers.fused.codegen import KernelKey

# LLVM: any double anywhere in a compute function: arithmetic, compares, conversions (fpext,
# fptrunc, sitofp ... to double), and moves of doubles that compute nothing themselves but
# show a double value exists (select, phi, load, store, alloca, call arguments, vector
# doubles), plus f64 intrinsics.
_LLVM_F64 = re.compile(r"\bdouble\b|\bfpext\b|@llvm\.[\w.]*\bf64\b|@llvm\.[\w.]*\.v\d+f64\b")
# PTX: any f64 instruction (add.f64, fma.rn.f64, cvt.f64.f32, setp.lt.f64, predicated
# ``@%p1 add.f64``), any f64 register declaration or use (``.reg .f64 %fd<4>``, ``mov.b64 %fd1``,
# ``ld.param.f64``): a ``.f64`` type or a ``%fd`` register anywhere in a non-comment line.
_PTX_F64 = re.compile(r"\.f64\b|%fd\d*\b|%fd<")


def sample_args(key: KernelKey, n: int = 4) -> tuple:
    """Arguments of the right types for ``key``'s kernels (a tiny ensemble)."""
    prob = get_problem(key.problem)
    u0, p = prob.ensemble(n, key.dtype)
    saveat = None
    if key.save != "final":
        saveat = (prob.tspan[0], prob.tspan[1])
    dt = (prob.tspan[1] - prob.tspan[0]) / 10
    inputs = make_inputs(u0, p, prob.tspan, key.dtype, mode=key.mode, dt=dt, n_steps=10, saveat=saveat)
    return kernel_args(inputs, make_outputs(inputs))


def signature(key: KernelKey) -> tuple:
    """The Numba argument types the backend launches ``key``'s kernels with."""
    return tuple(numba.typeof(a) for a in sample_args(key))


def _functions(ir: str) -> dict[str, str]:
    """Function name -> body, for the functions defined in an LLVM module."""
    out = {}
    for m in re.finditer(r"^define [^@]*@(\"[^\"]+\"|[^\s(]+)\(.*?^}", ir, re.M | re.S):
        out[m.group(1)] = m.group(0)
    return out


def cpu_llvm(key: KernelKey) -> str:
    """LLVM IR of the compute functions of ``key``'s CPU kernels (compiled here if needed).

    Only the functions compiled from the generated code are kept (``compute_functions``).
    """
    if key.target != "cpu":
        raise ValueError("cpu_llvm needs a cpu key")
    mod = load_module(key)
    args = sample_args(key)
    parts = []
    for disp, a in ((mod._block, (0,) + args), (mod._solve_one, (0,) + args)):
        sig = tuple(numba.typeof(x) for x in a)
        disp.compile(sig)
        parts.append(compute_functions(disp.inspect_llvm(sig)))
    return "\n".join(parts)


def compute_functions(ir: str) -> str:
    """The functions of an LLVM module that Numba compiled from Python code, without its
    CPython wrappers (``cpython.*``, ``cfunc.*``: they box and unbox Python floats as
    doubles) and runtime helpers (``NRT_*``)."""
    keep = [body for name, body in _functions(ir).items()
            if not name.strip('"').startswith(("_ZN7cpython", "cfunc.", "NRT_"))]
    return "\n".join(keep)


def cuda_ptx(key: KernelKey, cc: tuple[int, int] = (9, 0)) -> str:
    """PTX of ``key``'s CUDA kernel for compute capability ``cc``."""
    if key.target != "cuda":
        raise ValueError("cuda_ptx needs a cuda key")
    from numba import cuda  # optional (numba-cuda); importing it sets up the CUDA target

    mod = load_module(key)
    ptx, _ = cuda.compile_ptx(mod.solve_kernel.py_func, signature(key), cc=cc)
    return ptx


def llvm_f64_lines(ir: str) -> list[str]:
    """The lines of LLVM IR doing float64 arithmetic, conversions or calls."""
    return [line.strip() for line in ir.splitlines()
            if not line.lstrip().startswith(";") and _LLVM_F64.search(line)]


def ptx_f64_lines(ptx: str) -> list[str]:
    """The PTX instructions on float64 values."""
    return [line.strip() for line in ptx.splitlines()
            if not line.lstrip().startswith("//") and _PTX_F64.search(line)]
