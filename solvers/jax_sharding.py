"""Occupy every CPU core the run grants a JAX solve: the ensemble split across host devices.

XLA:CPU runs one jitted computation of this kind (a ``while_loop`` of small element-wise
kernels) on one core. What an XLA user does to use ``k`` cores is to expose ``k`` host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=k``, set before JAX is imported: the harness
does this for a run with ``threads = k``) and split the batch over them with ``jax.shard_map``:
each device runs the same program on its slice of the trajectories, on its own thread.

Trajectories are independent, so a per-trajectory solve (vmap) gives the same per-trajectory
results on any split. A solve with ONE step size for the whole batch (diffrax "batched",
adaptive) must reduce its error norm across the devices (``lax.psum`` over ``AXIS``) to stay
one shared step; its backend does so.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

#: The mesh axis the ensemble is split along.
AXIS = "ensemble"
#: The smallest N split over several host devices: below it a split costs more (per-device
#: dispatch and the devices' rendezvous every call) than the second core gives. Chosen by
#: measurement (``python -m benchmarks.variants.sharding``; docs/fairness.md). The environment
#: variable ODEBENCH_JAX_SPLIT_MIN_N overrides it (tests, that benchmark); rows record it.
SPLIT_MIN_N = 2048


def split_min_n() -> int:
    """:data:`SPLIT_MIN_N`, or ``$ODEBENCH_JAX_SPLIT_MIN_N`` where set."""
    return int(os.environ.get("ODEBENCH_JAX_SPLIT_MIN_N", SPLIT_MIN_N))


@dataclass(frozen=True)
class ShardPlan:
    """How many host devices a solve uses, and why.

    Attributes:
        devices: the JAX devices the ensemble is split over (one device: no split).
        note: a sentence for ``settings()`` saying what was asked for and what was used.
    """

    devices: tuple
    note: str

    @property
    def count(self) -> int:
        return len(self.devices)

    def settings(self) -> dict[str, Any]:
        return {"jax_devices": self.count, "sharding": self.note, "split_min_n": split_min_n()}


def plan(device: str, threads: int | None, n: int) -> ShardPlan:
    """The devices a solve of ``n`` trajectories on ``device`` with ``threads`` cores uses.

    On the CPU with ``threads`` > 1 and ``n`` >= :func:`split_min_n` (one device below it):
    the first ``threads`` CPU devices JAX exposes, reduced to
    the largest count that divides ``n`` (equal slices); fewer devices than threads (the flag
    was not set before JAX was imported) falls back to what exists, saying so. ``threads`` None
    means every core: every CPU device JAX exposes. On a GPU: one device.
    """
    import jax  # jax is optional: only JAX backends call this module

    if device != "cpu":
        return ShardPlan((jax.devices("gpu")[0],), "one GPU device (no split)")
    cpus = jax.devices("cpu")
    want = len(cpus) if threads is None else int(threads)
    have = min(want, len(cpus))
    k = max(d for d in range(1, have + 1) if n % d == 0)
    if want > 1 and n < split_min_n():
        return ShardPlan((cpus[0],), f"threads={want}: N={n} < {split_min_n()} (split_min_n, where a "
                                     f"split over host devices starts to pay): one CPU device, no split")
    if want <= 1:
        note = (f"threads={threads}: one CPU device, no split" if threads is not None else
                "threads unset and JAX exposes one CPU device: no split")
    elif have < want:
        note = (f"threads={want} but JAX exposes {len(cpus)} CPU device(s) (XLA_FLAGS "
                f"--xla_force_host_platform_device_count was not set before JAX was imported): "
                f"ensemble split over {k} device(s)")
    elif k < have:
        note = (f"threads={want}: N={n} is not divisible by {have}, ensemble split over {k} "
                f"CPU device(s) with jax.shard_map")
    else:
        note = f"ensemble split over {k} CPU devices with jax.shard_map (one slice per core)"
    return ShardPlan(tuple(cpus[:k]), note)


def shard(fn: Callable, shard_plan: ShardPlan, in_axes: tuple[int, ...]) -> Callable:
    """``fn`` split over ``shard_plan``'s devices along the trajectory axis (unjitted).

    Args:
        fn: a solve over a slice of the ensemble; every output must have the trajectory axis
            first.
        shard_plan: from :func:`plan`; with one device ``fn`` is returned unchanged.
        in_axes: for each positional input, the axis that indexes trajectories.
    """
    if shard_plan.count == 1:
        return fn
    # jax is optional: only JAX backends call this module
    import jax
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(shard_plan.devices), (AXIS,))

    def spec(axis: int) -> PartitionSpec:
        return PartitionSpec(*([None] * axis), AXIS)

    return jax.shard_map(fn, mesh=mesh, in_specs=tuple(spec(a) for a in in_axes),
                         out_specs=PartitionSpec(AXIS), check_vma=False)


def place(arrays: tuple, shard_plan: ShardPlan, in_axes: tuple[int, ...]) -> tuple:
    """``arrays`` on the plan's devices, each split along its trajectory axis (untimed)."""
    # jax is optional: only JAX backends call this module
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if shard_plan.count == 1:
        return tuple(jax.device_put(a, shard_plan.devices[0]) for a in arrays)

    mesh = Mesh(np.array(shard_plan.devices), (AXIS,))
    return tuple(jax.device_put(a, NamedSharding(mesh, PartitionSpec(*([None] * ax), AXIS)))
                 for a, ax in zip(arrays, in_axes))


def psum_if_sharded(x: Any, shard_plan: ShardPlan) -> Any:
    """``x`` summed over every device's slice inside :func:`shard`; ``x`` itself unsplit."""
    if shard_plan.count == 1:
        return x
    from jax import lax  # jax is optional: only JAX backends call this module

    return lax.psum(x, AXIS)
