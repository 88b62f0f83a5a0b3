"""The load a cell ran under: recorded on every row, and `contended` when the machine was busy."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from harness.measure import load
from harness.measure.execute import Cell, execute_cell
from harness.measure.load import Load, is_contended
from harness.measure.threads import cpu_count
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture
from solvers.base import SolveSpec


def test_the_rule_counts_other_runnable_threads_against_the_free_cores():
    quiet, one, nan = Load(0.1, 0.0), Load(1.0, 1.0), Load(math.nan, math.nan)
    assert not is_contended(quiet, quiet, threads=2, cores=2)
    assert is_contended(quiet, one, threads=2, cores=2)      # after counts too
    assert not is_contended(one, one, threads=1, cores=2)    # one free core holds one other thread
    assert is_contended(Load(2.0, 2.0), quiet, threads=1, cores=2)
    assert not is_contended(nan, nan, threads=2, cores=2)    # off Linux: nothing is marked


@pytest.fixture
def spinning():
    """Busy loops on every core, started and ended by the test itself."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpu_count())]
    time.sleep(0.5)  # let them be scheduled
    yield procs
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.skipif(not load.Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_busy_machine_is_seen_and_marked(spinning):
    seen = load.measure()
    assert seen.others_runnable >= len(spinning)
    assert is_contended(seen, seen, threads=1)
    assert load.busy_warning() is not None


@pytest.mark.skipif(not load.Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_cell_run_while_the_machine_is_busy_carries_the_mark(fake_backends, spinning):
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8, threads=1)
    rows = execute_cell(Cell(backend="fake-ok", spec=spec, repeats=2, warmups=0, timeout_s=30.0))
    assert rows and all(r["status"] == "ok" for r in rows)
    assert all(r["contended"] is True and r["others_runnable"] >= 1 for r in rows)
    assert all(not math.isnan(r["load_before"]) for r in rows)
