"""The hand-written C++ fused solver (backend "cuda-cpp"): see solvers/cpp/backend.py.

``cuda_source(problem, method, mode, dtype)`` gives GPU tooling the CUDA source and kernel name;
``solvers.cpp.build`` compiles it (``build_cubin``, ``ptxas_usage``, ``sass``, ``nvrtc_cubin``).
"""
from solvers.cpp.source import cuda_source

__all__ = ["cuda_source"]
