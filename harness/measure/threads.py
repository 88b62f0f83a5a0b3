"""Equal hardware: how many CPU threads a cell may use, and how a worker process is held to it.

A cell's ``spec.threads`` (None = every core, resolved by :func:`resolve`) is applied in three
layers, because each library reads its setting at a different moment:

1. environment variables, set in the parent just before a worker process is spawned (so they
   are in place before the child imports NumPy, Numba, torch or JAX, which read them once at
   import): ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS`` (also torch's intra-op default),
   ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``XLA_FLAGS`` with
   ``--xla_force_host_platform_device_count=<threads>`` appended, so a JAX backend can shard
   the ensemble over that many host devices;
2. CPU affinity of the worker (``os.sched_setaffinity``) to ``threads`` of the CPUs it was
   allowed, when that is fewer than all of them: whatever pool a library starts, the process
   cannot run on more cores than it was given;
3. at run time, before each cell, ``numba.set_num_threads`` and ``torch.set_num_threads`` /
   ``set_num_interop_threads`` for the libraries already imported (this is the only layer that
   works in the "in-process" mode, where the environment was fixed before the harness ran).

Cells with different ``threads`` therefore never share a worker: the runner starts a new one
when the setting changes.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from solvers import numeric_policy

#: Environment variables every worker gets, each set to the thread count.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS")
XLA_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def cpu_count() -> int:
    """The cores this process may use (its affinity set), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve(threads: int | None) -> int:
    """``threads``, or every core when it is None."""
    return int(threads) if threads is not None else (os.cpu_count() or 1)


def _xla_flags(existing: str, threads: int) -> str:
    """``existing`` XLA_FLAGS with the host device count set to ``threads`` (replacing an old one)."""
    kept = [f for f in existing.split() if not f.startswith(XLA_DEVICE_FLAG)]
    return " ".join(kept + [f"{XLA_DEVICE_FLAG}={threads}"])


def worker_environment(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a worker for ``threads`` threads gets on top of ``base`` (os.environ)."""
    base = os.environ if base is None else base
    env = {name: str(threads) for name in THREAD_VARIABLES}
    # the numeric policy's vector width for XLA and Numba (solvers.numeric_policy)
    env.update(numeric_policy.environment(base))
    env["XLA_FLAGS"] = _xla_flags(env["XLA_FLAGS"], threads)
    return env


@contextmanager
def environment_for(threads: int) -> Iterator[dict[str, str]]:
    """Set the worker variables in this process while a child is spawned, then restore them.

    A "spawn" child inherits ``os.environ`` as it is at start, so the variables are in place
    before the child imports anything.
    """
    env = worker_environment(threads)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def pin_process(threads: int) -> list[int] | None:
    """Restrict this process to ``threads`` of its allowed CPUs; returns them (None: unchanged)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    if threads >= len(allowed):
        return None
    chosen = allowed[:threads]
    os.sched_setaffinity(0, chosen)
    return chosen


_interop_set: list[int] = []


def apply_to_libraries(threads: int) -> dict[str, Any]:
    """Set the thread counts of the libraries already imported; returns what each now uses.

    Called before every cell (after its backend module is imported). Only modules already in
    ``sys.modules`` are touched: importing torch just to configure it would cost seconds.
    """
    used: dict[str, Any] = {"threads": threads}
    numba = sys.modules.get("numba")
    if numba is not None:
        try:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            used["numba"] = numba.get_num_threads()
        except Exception as exc:  # noqa: BLE001 - record, do not fail the cell
            used["numba"] = f"not set: {type(exc).__name__}: {exc}"
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(threads)
        if not _interop_set:
            try:  # allowed once, before any inter-op work; a second call raises
                torch.set_num_interop_threads(threads)
                _interop_set.append(threads)
            except RuntimeError:
                _interop_set.append(-1)
        used["torch"] = torch.get_num_threads()
        used["torch_interop"] = torch.get_num_interop_threads()
    try:
        used["affinity"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    used["env"] = {k: os.environ.get(k) for k in (*THREAD_VARIABLES, "XLA_FLAGS")}
    return used
