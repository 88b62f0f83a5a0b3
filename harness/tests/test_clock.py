"""The clock: the timed region includes the device sync, the first call is timed on its own.

Timings are exact here: the solves "take" their time on a VirtualClock (harness.tests.fakes)
that replaces the clock's perf_counter, so no assertion depends on how busy the machine is."""
from __future__ import annotations

import json
import time

import pytest

from harness.measure.clock import time_solve
from harness.measure.execute import execute_cell
from harness.measure.execute import Cell
from harness.tests.fakes import VirtualClock, fake_backends, virtual_clock  # noqa: F401 - fixtures
from solvers.base import SolveSpec


class Recorder:
    """A prepared solve that records which calls happen, with run/sync durations to choose,
    taken on ``clock`` (a VirtualClock: exact)."""

    def __init__(self, clock: VirtualClock | None = None, run_s=0.0, sync_s=0.0, first_run_s=None):
        self.clock = clock or VirtualClock()
        self.run_s, self.sync_s, self.first_run_s = run_s, sync_s, first_run_s
        self.events: list[str] = []

    def run(self):
        first = not self.events
        self.events.append("run")
        self.clock.sleep(self.first_run_s if (first and self.first_run_s is not None) else self.run_s)
        return self.events.count("run")

    def sync(self, out):
        self.events.append("sync")
        self.clock.sleep(self.sync_s)


def test_time_includes_the_device_sync(virtual_clock):
    # run() returns at once, the 50 ms happen in sync(): a clock without the sync would read 0.
    t = time_solve(Recorder(virtual_clock, sync_s=0.05), repeats=3, warmups=1)
    assert t.samples == pytest.approx([0.05] * 3)
    assert t.first_call_s == pytest.approx(0.05)


def test_first_call_is_timed_apart_as_compile_time(virtual_clock):
    t = time_solve(Recorder(virtual_clock, run_s=0.01, first_run_s=0.3), repeats=3, warmups=1)
    assert t.first_call_s == pytest.approx(0.3)
    assert t.samples == pytest.approx([0.01] * 3)  # the repeats exclude the compile
    assert t.compile_s == pytest.approx(0.3 - 0.01)


def test_calls_are_first_then_warmups_then_repeats_each_synced():
    rec = Recorder()
    t = time_solve(rec, repeats=4, warmups=2, min_warmup_s=0.0)
    assert rec.events == ["run", "sync"] * (1 + 2 + 4)
    assert len(t.samples) == 4 and len(t.device_samples) == 4
    assert t.output == 7  # the handle of the last timed run is kept for fetch


def test_compile_time_is_floored_at_zero(virtual_clock):
    # A first call faster than the repeats (noise) must not give a negative compile time.
    rec = Recorder(virtual_clock, run_s=0.02, first_run_s=0.0)
    assert time_solve(rec, repeats=2, warmups=0).compile_s == 0.0


def test_warm_up_lasts_at_least_the_minimum_time(virtual_clock):
    # 10 ms calls and a 0.1 s minimum: 10 warm-up calls although only 1 was asked for (11 when
    # the ten 0.01 s steps add up to a hair under 0.1 in floating point).
    # (max_warmup_s = the minimum: no calls added for stability, tested in test_threads.py)
    rec = Recorder(virtual_clock, run_s=0.01)
    time_solve(rec, repeats=1, warmups=1, min_warmup_s=0.1, max_warmup_s=0.1)
    warm = rec.events.count("run") - 2
    assert warm in (10, 11), warm
    # slow calls: the requested count is honoured, and more only while the last two warm
    # calls disagree by more than 10% (equal calls agree at once)
    rec = Recorder(virtual_clock, run_s=0.06)
    time_solve(rec, repeats=1, warmups=2, min_warmup_s=0.1)
    assert rec.events.count("run") == 1 + 2 + 1


def test_bad_repeat_counts_are_refused():
    with pytest.raises(ValueError, match="repeats"):
        time_solve(Recorder(), repeats=0, warmups=0)


def _cell(backend: str, repeats: int = 3, warmups: int = 1, **spec) -> Cell:
    s = SolveSpec(**{"problem": "lorenz", "method": "tsit5", "mode": "fixed", "dtype": "float32", "n": 8, **spec})
    return Cell(backend=backend, spec=s, repeats=repeats, warmups=warmups, timeout_s=30)


def test_cell_rows_carry_the_sync_time(fake_backends, virtual_clock):
    rows = execute_cell(_cell("fake-sync"), {"run_id": "r", "suite": "s"})
    assert [r["repeat"] for r in rows] == [0, 1, 2]
    assert all(r["status"] == "ok" for r in rows)
    assert [r["time_s"] for r in rows] == pytest.approx([0.05] * 3)
    settings = json.loads(rows[0]["settings"])
    assert settings["harness"]["repeats"] == 3 and settings["n"] == 8


def test_cell_rows_separate_compile_from_repeats(fake_backends, virtual_clock):
    rows = execute_cell(_cell("fake-compile"), {})
    assert [r["time_s"] for r in rows] == pytest.approx([0.01] * 3)
    assert rows[0]["first_call_s"] == pytest.approx(0.3)
    assert rows[0]["compile_s"] == pytest.approx(0.29)
    # the untimed checks are filled: the reference answer rounded to float32, counts from the result
    assert rows[0]["max_rel_err"] < 1e-6
    assert rows[0]["steps_mean"] == 100 and rows[0]["rhs_evals_max"] == 601
    assert rows[0]["failed_trajectories"] == 0


def test_time_repeats_times_a_callable_under_the_clocks_rules():
    import gc

    from harness.measure.clock import time_repeats

    calls, gc_on = [], []

    def fn():
        calls.append(1)
        gc_on.append(gc.isenabled())
        time.sleep(0.01)

    samples = time_repeats(fn, 3, warmups=1)
    assert len(samples) == 3 and all(s >= 0.01 for s in samples)
    assert len(calls) >= 1 + 1 + 3  # the first call and at least one warm-up are untimed
    assert gc_on[-3:] == [False] * 3 and gc_on[0]  # GC paused during the timed calls only
    assert gc.isenabled()


def test_cpu_util_needs_repeats_long_enough_for_the_process_clock():
    """Over less than MIN_CPU_UTIL_WALL_S the process clock's tick granularity makes CPU time /
    wall time noise (10 on 2 threads was recorded): NaN then; a real ratio above it."""
    import math

    from harness.measure.clock import MIN_CPU_UTIL_WALL_S, _Call

    def spin(seconds):
        def fn():
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                pass
        return _Call(fn)

    short = time_solve(spin(1e-5), repeats=3, warmups=0, min_warmup_s=0.0)
    assert math.isnan(short.cpu_util)
    long = time_solve(spin(MIN_CPU_UTIL_WALL_S), repeats=3, warmups=0, min_warmup_s=0.0)
    # one thread spinning: at most one core busy (less when a busy machine deschedules it,
    # since the spin runs on the wall clock)
    assert 0 < long.cpu_util < 1.5
