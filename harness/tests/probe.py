"""A fake backend that reports, from inside the worker process that runs its cell, the thread
settings each library says it has (harness/tests/test_threads_backends.py).

Its module imports Numba, torch and JAX at the top, as real backends' modules do, so that the
harness configures them as it configures a real backend (harness.measure.threads: environment
before the worker starts, affinity, then ``apply_to_libraries`` after the backend module is
imported). A library that is not installed is reported as ``"absent: ..."``, never an error.

The "solve" is fakes.FakePrepared's (the exact reference); ``notes`` carries what was read in
``fetch``, i.e. after the harness has set everything up and the cell has run.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

from harness.measure.threads import THREAD_VARIABLES
from harness.tests.fakes import FakeBackend, FakePrepared

try:  # optional: the probe reports what it finds
    import numba
except ImportError as exc:
    numba = None
    NUMBA_ABSENT = f"absent: {exc}"
try:
    import torch
except ImportError as exc:
    torch = None
    TORCH_ABSENT = f"absent: {exc}"
try:
    import jax
except ImportError as exc:
    jax = None
    JAX_ABSENT = f"absent: {exc}"


def openmp_max_threads() -> int | str:
    """``omp_get_max_threads()`` of the system OpenMP runtime (libgomp, which the C++ arm's
    ``g++ -fopenmp`` library links): the team size the C++ arm gets when it passes no count."""
    name = ctypes.util.find_library("gomp") or "libgomp.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        return f"absent: {exc}"
    return int(lib.omp_get_max_threads())


def library_threads() -> dict[str, Any]:
    """What each library in this process reports about its threads."""
    out: dict[str, Any] = {"pid": os.getpid(), "affinity": len(os.sched_getaffinity(0)),
                           "env": {k: os.environ.get(k) for k in (*THREAD_VARIABLES, "XLA_FLAGS")},
                           "openmp": openmp_max_threads()}
    if numba is None:
        out["numba"] = NUMBA_ABSENT
    else:
        out["numba"] = {"get_num_threads": numba.get_num_threads(),
                        "config": numba.config.NUMBA_NUM_THREADS}
    if torch is None:
        out["torch"] = TORCH_ABSENT
    else:
        out["torch"] = {"get_num_threads": torch.get_num_threads(),
                        "get_num_interop_threads": torch.get_num_interop_threads()}
    if jax is None:
        out["jax"] = JAX_ABSENT
    else:
        out["jax"] = {"cpu_devices": len(jax.devices("cpu"))}
    return out


class ProbePrepared(FakePrepared):
    def fetch(self, out):
        result = super().fetch(out)
        result.notes["library_threads"] = library_threads()
        return result


class ThreadProbeBackend(FakeBackend):
    name = "fake-threads"

    def prepare(self, spec):
        return ProbePrepared(spec, self)
