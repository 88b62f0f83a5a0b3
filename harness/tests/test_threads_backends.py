"""threads=1 holds each backend to one thread; threads=2 offers each two: checked by what every
library reports inside the worker process that ran the cell, never by measured speed or CPU use.

Measured utilisation depends on whatever else the machine is doing (a busy machine gives a
process less than the cores it may use), so it belongs in the rows and the report, not in
pass/fail. What the harness guarantees, and what is asserted here, is the configuration a
worker runs under (harness.measure.threads):

* the worker's environment: NUMBA_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS,
  OPENBLAS_NUM_THREADS = threads, XLA_FLAGS with the host device count = threads;
* its CPU affinity: ``threads`` cores (or every core, when the machine has fewer);
* each library's own answer: ``numba.get_num_threads()``, ``torch.get_num_threads()``, the
  number of CPU devices JAX exposes, the OpenMP runtime's ``omp_get_max_threads()`` (what the
  C++ arm's team gets by default; it passes the count explicitly as well);
* what the real backends record: the fused kernel's Numba pool (settings.harness.threads_used),
  torch-handwritten's intra-op pool, the JAX devices jax-handwritten splits the ensemble over.

The cells are small (N = 8): only their configuration is looked at.
"""
from __future__ import annotations

import json
import os

import pytest

from harness.measure.execute import Cell
from harness.measure.threads import THREAD_VARIABLES, XLA_DEVICE_FLAG
from harness.results.store import read_results
from harness.run.executors import order_cells
from harness.run.sweep import run_sweep
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture
from solvers.base import SolveSpec
from solvers.jax_sharding import split_min_n

pytestmark = pytest.mark.slow
BACKENDS = ("fake-threads", "fused", "torch-handwritten", "jax-handwritten")
THREADS = (1, 2)
CORES = len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    from solvers import registry
    from harness.tests.fakes import FAKES

    # the fake_backends fixture is function-scoped: register the probe by hand for this module
    saved = dict(registry.BACKENDS)
    registry.BACKENDS.update(FAKES)
    try:
        cells = [Cell(backend=b, spec=SolveSpec(problem="lorenz", method="tsit5", mode="fixed",
                                                dtype="float32", n=8, threads=t),
                      repeats=1, warmups=0, timeout_s=600)
                 for b in BACKENDS for t in THREADS]
        out = tmp_path_factory.mktemp("threads")
        run_sweep(order_cells(cells, "isolate"), out, run_id="r", suite="t", how="isolate", progress=False)
    finally:
        registry.BACKENDS.clear()
        registry.BACKENDS.update(saved)
    df = read_results(out)
    first = df.drop_duplicates(["backend", "threads"]).set_index(["backend", "threads"])
    return first


def _settings(rows, backend, threads) -> dict:
    if (backend, threads) not in rows.index:
        pytest.fail(f"no row for {backend} threads={threads}")
    r = rows.loc[(backend, threads)]
    if r["status"] == "unavailable":
        pytest.skip(f"{backend} is unavailable here: {r['reason']}")
    assert r["status"] == "ok", f"{backend} threads={threads}: {r['status']}: {r['reason']}"
    return json.loads(r["settings"])


def _library(probe: dict, name: str):
    got = probe[name]
    if isinstance(got, str) and got.startswith("absent"):
        pytest.skip(f"{name} {got}")
    return got


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_worker_environment_and_affinity_follow_threads(rows, backend, threads):
    used = _settings(rows, backend, threads)["harness"]["threads_used"]
    assert used["threads"] == threads
    assert all(used["env"][k] == str(threads) for k in THREAD_VARIABLES), used["env"]
    assert f"{XLA_DEVICE_FLAG}={threads}" in used["env"]["XLA_FLAGS"].split()
    assert used["affinity"] == min(threads, CORES)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("library", ["numba", "torch", "jax", "openmp"])
def test_each_library_in_the_worker_reports_the_thread_count(rows, library, threads):
    probe = _settings(rows, "fake-threads", threads)["notes"]["library_threads"]
    assert probe["affinity"] == min(threads, CORES)
    got = _library(probe, library)
    if library == "numba":
        assert got == {"get_num_threads": threads, "config": threads}
    elif library == "torch":
        assert got["get_num_threads"] == threads
        assert got["get_num_interop_threads"] == threads  # set once, before any inter-op work
    elif library == "jax":
        assert got["cpu_devices"] == threads  # XLA's host device count, read at JAX's import
    else:
        assert got == threads  # OMP_NUM_THREADS as the OpenMP runtime read it


@pytest.mark.parametrize("threads", THREADS)
def test_the_fused_kernel_runs_on_a_numba_pool_of_threads(rows, threads):
    assert _settings(rows, "fused", threads)["harness"]["threads_used"]["numba"] == threads


@pytest.mark.parametrize("threads", THREADS)
def test_torch_handwritten_runs_on_a_torch_pool_of_threads(rows, threads):
    assert _settings(rows, "torch-handwritten", threads)["harness"]["threads_used"]["torch"] == threads


@pytest.mark.parametrize("threads", THREADS)
def test_jax_handwritten_splits_the_ensemble_over_threads_host_devices(rows, threads):
    # XLA is given ``threads`` host devices; the backend shards the ensemble over them only from
    # SPLIT_MIN_N trajectories on (solvers/jax_sharding.py: below it, splitting costs more than it
    # saves), so these N = 8 cells run on one device
    s = _settings(rows, "jax-handwritten", threads)
    expected = threads if 8 >= split_min_n() else 1
    assert s["notes"]["jax_devices"] == expected, s.get("sharding")


def test_the_cpp_arm_passes_the_thread_count_to_openmp():
    # the C++ arm's host library is called with ``threads`` as its OpenMP team size (0: the
    # OpenMP default, every core); no compiler needed to check what it would pass
    from solvers.cpp.backend import CppBackend

    for threads, passed in ((1, 1), (2, 2), (None, 0)):
        spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8,
                         threads=threads)
        assert CppBackend().threads(spec) == passed


def test_utilisation_is_recorded_not_judged(rows):
    # cpu_util is in every timed row whose repeat lasted long enough for the process clock
    # (clock.MIN_CPU_UTIL_WALL_S; each cell here times one repeat), NaN in those far shorter
    # (the report reads it); no bound is asserted on it
    from harness.measure.clock import MIN_CPU_UTIL_WALL_S

    ok = rows[rows["status"] == "ok"]
    assert not ok.empty
    assert ok.loc[ok["time_s"] >= MIN_CPU_UTIL_WALL_S, "cpu_util"].notna().all()
    assert ok.loc[ok["time_s"] < MIN_CPU_UTIL_WALL_S / 2, "cpu_util"].isna().all()
