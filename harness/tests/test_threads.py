"""The threads setting: suites expand it, workers are configured for it, rows record it with
the measured cpu_util, resumed runs key on it; and the repeats' time box and warm-up (timed on
a VirtualClock: exact, whatever the machine's load)."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from harness.measure.clock import time_solve
from harness.results.store import cell_key, finished_keys, read_results, read_rows
from harness.run.executors import order_cells
from harness.run.sweep import run_sweep
from harness.results.schema import validate
from harness.measure.execute import Cell
from harness.run.suites import load_suite
from harness.tests.fakes import fake_backends, virtual_clock  # noqa: F401 - fixtures
from harness.measure.threads import resolve, worker_environment
from solvers.numeric_policy import vector_bits
from solvers.base import SolveSpec


def cell(backend: str, threads: int | None, n: int = 8, **timing) -> Cell:
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=n, threads=threads)
    return Cell(backend=backend, spec=spec, **{"repeats": 3, "warmups": 0, "timeout_s": 60, **timing})


def test_worker_environment_sets_every_pool_and_keeps_other_xla_flags():
    env = worker_environment(3, {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false "
                                              "--xla_force_host_platform_device_count=8"})
    assert env["NUMBA_NUM_THREADS"] == env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert env["OPENBLAS_NUM_THREADS"] == "3"
    width = f"--xla_cpu_prefer_vector_width={vector_bits()}"  # the numeric policy's vector width
    assert env["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {width} --xla_force_host_platform_device_count=3"
    assert worker_environment(1, {})["XLA_FLAGS"] == f"{width} --xla_force_host_platform_device_count=1"


def test_spec_refuses_bad_threads():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8, threads=bad)


SUITE = """
description = "threads"
device = "cpu"
threads = [2, 1]
repeats = 7
min_repeats = 3
repeat_budget_s = 2.5

[[entries]]
problem = "lorenz"
backends = ["fused"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8, 32]

[[entries]]
problem = "lorenz"
backends = ["array"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8]
threads = 1
repeats = 3
"""


def test_suite_sweeps_threads_and_resolves_the_default(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(SUITE)
    cells = load_suite(str(path)).cells
    got = [(c.backend, c.spec.threads, c.spec.n) for c in cells]
    assert got == [("fused", 2, 8), ("fused", 2, 32), ("fused", 1, 8), ("fused", 1, 32), ("array", 1, 8)]
    assert cells[0].key != cells[2].key  # threads is part of a cell's identity
    assert (cells[0].repeats, cells[0].min_repeats, cells[0].repeat_budget_s) == (7, 3, 2.5)
    assert cells[-1].repeats == 3

    path.write_text(SUITE.replace("threads = [2, 1]\n", "").replace("threads = 1\n", ""))
    cells = load_suite(str(path)).cells
    assert {c.spec.threads for c in cells} == {os.cpu_count()} == {resolve(None)}

    path.write_text(SUITE.replace("threads = 1\n", "threads = 0\n"))
    with pytest.raises(Exception, match=r"entries\[1\]\.threads: must be an integer >= 1"):
        load_suite(str(path))


def test_cells_of_one_thread_count_share_a_worker_and_rows_record_it(fake_backends, tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/nonexistent")
    cells = [cell("fake-ok", 1), cell("fake-ok", 2), cell("fake-ok", 1, n=16)]
    ordered = order_cells(cells, "shared")
    assert [(c.spec.threads, c.spec.n) for c in ordered] == [(1, 8), (1, 16), (2, 8)]
    run_sweep(ordered, tmp_path, run_id="r", suite="t", how="shared", progress=False)
    df = validate(read_results(tmp_path))
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/nonexistent"  # the parent is left as it was
    notes = {}
    for _, r in df.iterrows():
        s = json.loads(r["settings"])
        notes[(int(r["threads"]), int(r["n"]))] = s["notes"]
        assert s["harness"]["threads_used"]["threads"] == r["threads"]
    assert notes[(1, 8)]["pid"] == notes[(1, 16)]["pid"] != notes[(2, 8)]["pid"]
    for (threads, _), note in notes.items():
        assert note["NUMBA_NUM_THREADS"] == str(threads)
        assert note["XLA_FLAGS"] == (f"--xla_dump_to=/nonexistent --xla_cpu_prefer_vector_width={vector_bits()} "
                                     f"--xla_force_host_platform_device_count={threads}")
        assert note["affinity"] == min(threads, len(os.sched_getaffinity(0)))


def test_cpu_util_is_cpu_time_over_wall_time(fake_backends, virtual_clock, tmp_path):
    # on the virtual clock a spinning solve costs exactly its wall time in CPU time and a
    # sleeping one none: the ratio is exact whatever else the machine is doing
    cells = [cell("fake-busy", 1), cell("fake-sync", 1)]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    df = read_results(tmp_path).groupby("backend")["cpu_util"].agg(["min", "max"])
    assert df.loc["fake-busy"].tolist() == pytest.approx([1.0, 1.0])  # one core busy
    assert df.loc["fake-sync"].tolist() == pytest.approx([0.0, 0.0])  # waiting costs no CPU


def test_resume_keys_on_threads_and_reads_older_runs_without_it(fake_backends, tmp_path):
    cells = [cell("fake-ok", 1), cell("fake-ok", 2)]
    run_sweep(cells[:1], tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    assert (summary.skipped, summary.run) == (1, 1)
    assert sorted(int(r["threads"]) for r in read_rows(tmp_path / "results.csv")) == [1, 1, 1, 2, 2, 2]

    # a run written before the column existed: threads reads as missing, and keys as ""
    old = read_results(tmp_path).drop(columns=["threads", "cpu_util"])
    old.to_csv(tmp_path / "old.csv", index=False)
    df = read_results(tmp_path / "old.csv")
    assert df["threads"].isna().all() and df["cpu_util"].isna().all()
    assert cell_key(df.iloc[0].to_dict())[-1] == ""
    assert cell_key({**df.iloc[0].to_dict(), "threads": pd.NA})[-1] == ""


class _Timed:
    """A prepared solve whose calls take the given times (the last repeats forever), on a
    VirtualClock: exact on any machine."""

    def __init__(self, clock, times):
        self.clock, self.times, self.calls = clock, list(times), 0

    def run(self):
        t = self.times[min(self.calls, len(self.times) - 1)]
        self.calls += 1
        self.clock.sleep(t)

    def sync(self, out):
        pass


def test_repeats_stop_at_the_time_box_but_not_before_the_minimum(fake_backends, virtual_clock, tmp_path):
    t = time_solve(_Timed(virtual_clock, [0.05]), repeats=7, warmups=0, min_warmup_s=0, min_repeats=3,
                   repeat_budget_s=0.12)
    assert len(t.samples) == 3  # 0.05 + 0.05 + 0.05 >= 0.12 after the third
    t = time_solve(_Timed(virtual_clock, [0.01]), repeats=7, warmups=0, min_warmup_s=0, min_repeats=3,
                   repeat_budget_s=10)
    assert len(t.samples) == 7
    # a time-boxed cell is complete with the repeats it made, so resume does not rerun it
    c = cell("fake-sync", 1, repeats=7, min_repeats=3, repeat_budget_s=0.1)
    run_sweep([c], tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    rows = read_rows(tmp_path / "results.csv")
    assert len(rows) == 3 and json.loads(rows[0]["settings"])["harness"]["repeats_done"] == 3
    assert finished_keys(tmp_path / "results.csv") == {c.key}


def test_warm_up_goes_on_until_two_calls_agree(virtual_clock):
    # first call 0.2 s (compile), then 0.12, 0.06, 0.03, 0.03, ...: stable at the fourth warm call
    p = _Timed(virtual_clock, [0.2, 0.12, 0.06, 0.03, 0.03])
    t = time_solve(p, repeats=2, warmups=1, min_warmup_s=0)
    assert t.warmup_calls == 4 and t.warmup_stable
    # ... but not past max_warmup_s: a cell that never settles stops warming up
    # (0.01 + 0.05 + 0.01 + 0.05 = 0.12 >= 0.1 after the fourth warm call)
    p = _Timed(virtual_clock, [0.2, 0.01, 0.05, 0.01, 0.05, 0.01, 0.05, 0.01, 0.05, 0.01, 0.05])
    t = time_solve(p, repeats=1, warmups=1, min_warmup_s=0, max_warmup_s=0.1)
    assert not t.warmup_stable and t.warmup_calls == 4
