"""The load a cell ran under: recorded on every row, and `contended` when the machine was busy."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from harness.measure import load
from harness.measure.execute import Cell, execute_cell
from harness.measure.load import STEAL_LIMIT, CpuTicks, Load, cpu_ticks, is_contended, steal_fraction
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


def test_host_steal_is_read_from_proc_stat(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 20 800 10 0 3 12 0 0\ncpu0 50 2 10 400 5 0 1 6 0 0\nintr 1\n")
    assert cpu_ticks(stat) == CpuTicks(total=100 + 5 + 20 + 800 + 10 + 0 + 3 + 12, steal=12)
    for bad in ("", "cpu0 1 2 3 4 5 6 7 8\n", "cpu  1 2 3\n", "cpu  a b c d e f g h\n"):
        stat.write_text(bad)
        assert cpu_ticks(stat) is None
    assert cpu_ticks(tmp_path / "missing") is None


def test_steal_marks_a_cell_that_no_process_count_shows():
    """Other guests on the host's cores: nothing runnable here, but the vCPUs waited."""
    t0, quiet_after, stolen_after = CpuTicks(1000, 0), CpuTicks(1200, 0), CpuTicks(1200, 10)
    assert steal_fraction(t0, stolen_after) == pytest.approx(0.05) and steal_fraction(t0, quiet_after) == 0.0
    assert math.isnan(steal_fraction(t0, t0)) and math.isnan(steal_fraction(None, quiet_after))
    before = Load(0.1, 0.0, t0)
    assert not is_contended(before, Load(0.1, 0.0, quiet_after), threads=2, cores=2)
    assert is_contended(before, Load(0.1, 0.0, stolen_after), threads=2, cores=2)
    just_under = CpuTicks(1200, STEAL_LIMIT * 200 * 0.99)
    assert not is_contended(before, Load(0.1, 0.0, just_under), threads=2, cores=2)
    cols = load.columns(before, Load(0.1, 0.0, stolen_after), threads=2)
    assert cols["steal"] == pytest.approx(0.05) and cols["contended"] is True
    assert math.isnan(load.columns(Load(0.1, 0.0), Load(0.1, 0.0), threads=2)["steal"])  # off Linux


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
    assert all("steal" in r for r in rows)  # NaN where the timed repeats were shorter than a tick
