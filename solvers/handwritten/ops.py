"""The few array functions ``solvers.handwritten.rk`` needs, for JAX and for torch.

Each class adapts one library to the same small vocabulary (``where``, ``abs``, ``sqrt``,
comparisons with scalars, filled arrays shaped like a lane), so the step arithmetic is written
once. The library is imported when an adapter is built, never at module import.
"""
from __future__ import annotations

from typing import Any


class JaxOps:
    """``jax.numpy`` spelling; works on traced scalars (vmap), (N,) arrays and Pallas blocks."""

    name = "jax"

    def __init__(self) -> None:
        import jax.numpy as jnp  # jax is optional: imported when this adapter is built, never at module import

        self.np = jnp

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.np.where(cond, a, b)

    def abs(self, x: Any) -> Any:
        return self.np.abs(x)

    def sqrt(self, x: Any) -> Any:
        return self.np.sqrt(x)

    def log(self, x: Any) -> Any:
        return self.np.log(x)

    def exp(self, x: Any) -> Any:
        return self.np.exp(x)

    def maximum(self, x: Any, y: Any) -> Any:
        return self.np.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return self.np.minimum(x, y)

    def max_scalar(self, x: Any, s: float) -> Any:
        return self.np.maximum(x, s)

    def min_scalar(self, x: Any, s: float) -> Any:
        return self.np.minimum(x, s)

    def isfinite(self, x: Any) -> Any:
        return self.np.isfinite(x)

    def isnan(self, x: Any) -> Any:
        return self.np.isnan(x)

    def full_like(self, like: Any, value: float) -> Any:
        return self.np.full_like(like, value)

    def int_full_like(self, like: Any, value: int) -> Any:
        return self.np.full_like(like, value, dtype=self.np.int32)

    def bool_full_like(self, like: Any, value: bool) -> Any:
        return self.np.full_like(like, value, dtype=bool)


class TorchOps:
    """torch spelling, on tensors of one device and dtype."""

    name = "torch"

    def __init__(self) -> None:
        import torch  # torch is optional: imported when this adapter is built, never at module import

        self.torch = torch

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return self.torch.where(cond, a, b)

    def abs(self, x: Any) -> Any:
        return self.torch.abs(x)

    def sqrt(self, x: Any) -> Any:
        return self.torch.sqrt(x)

    def log(self, x: Any) -> Any:
        return self.torch.log(x)

    def exp(self, x: Any) -> Any:
        return self.torch.exp(x)

    def maximum(self, x: Any, y: Any) -> Any:
        return self.torch.maximum(x, y)

    def minimum(self, x: Any, y: Any) -> Any:
        return self.torch.minimum(x, y)

    def max_scalar(self, x: Any, s: float) -> Any:
        return self.torch.clamp_min(x, s)

    def min_scalar(self, x: Any, s: float) -> Any:
        return self.torch.clamp_max(x, s)

    def isfinite(self, x: Any) -> Any:
        return self.torch.isfinite(x)

    def isnan(self, x: Any) -> Any:
        return self.torch.isnan(x)

    def full_like(self, like: Any, value: float) -> Any:
        return self.torch.full_like(like, value)

    def int_full_like(self, like: Any, value: int) -> Any:
        return self.torch.full_like(like, value, dtype=self.torch.int32)

    def bool_full_like(self, like: Any, value: bool) -> Any:
        return self.torch.full_like(like, value, dtype=self.torch.bool)
