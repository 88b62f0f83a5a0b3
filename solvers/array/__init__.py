"""The array-style replica of the fused solver: the paper's control experiment.

The same tableaus, controller and error norm as ``solvers.fused``, computed as whole-ensemble
array operations (NumPy on a CPU, CuPy on a GPU), one operation / kernel launch at a time, the
way ``EnsembleGPUArray``, batched torchdiffeq and ``jax.vmap`` work. See ``backend.ArrayBackend``.
"""
from solvers.array.backend import ArrayBackend, ArrayPrepared

__all__ = ["ArrayBackend", "ArrayPrepared"]
