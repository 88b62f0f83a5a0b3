"""Fused-kernel ensemble ODE solvers (Numba): the Python counterpart of DiffEqGPU.jl's
``EnsembleGPUKernel``.

One generated kernel per (problem, method, mode, dtype, save mode): a CUDA kernel with one
thread per trajectory and the whole time loop inside it, and CPU kernels built from the
same code (lane blocks vectorised by LLVM, or one trajectory per loop iteration).

* ``FusedBackend``: the backend registered as "fused" (``solvers.fused.backend``);
* ``KernelKey``, ``generate_source``: the generator (``solvers.fused.codegen``);
* ``load_module``, ``make_inputs``, ``run_cpu``: compiling and running kernels directly
  (``solvers.fused.build``);
* ``cpu_llvm``, ``cuda_ptx``, ``llvm_f64_lines``, ``ptx_f64_lines``: the generated code and
  its float64 instructions (``solvers.fused.purity``).
"""
from solvers.fused.backend import FusedBackend
from solvers.fused.build import load_module, make_inputs, run_cpu
from solvers.fused.codegen import KernelKey, generate_source
from solvers.fused.purity import cpu_llvm, cuda_ptx, llvm_f64_lines, ptx_f64_lines

__all__ = [
    "FusedBackend", "KernelKey", "generate_source", "load_module", "make_inputs", "run_cpu",
    "cpu_llvm", "cuda_ptx", "llvm_f64_lines", "ptx_f64_lines",
]
