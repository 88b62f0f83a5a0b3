"""Interrupted sweeps keep every finished cell; --resume runs the rest, never duplicating one."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.results.store import cell_key, read_results, read_rows
from harness.run.sweep import run_sweep
from harness.results.schema import validate
from harness.measure.execute import Cell
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture
from solvers.base import SolveSpec

REPO = Path(__file__).resolve().parents[2]


def cell(backend: str, n: int = 8) -> Cell:
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=n)
    return Cell(backend=backend, spec=spec, repeats=2, warmups=0, timeout_s=30)


def rows_per_cell(run_dir: Path) -> Counter:
    return Counter((r["backend"], int(r["n"])) for r in read_rows(run_dir / "results.csv"))


def test_keyboard_interrupt_then_resume(fake_backends, tmp_path):
    cells = [cell("fake-ok"), cell("fake-interrupt"), cell("fake-ok", n=16)]
    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    assert rows_per_cell(tmp_path) == {("fake-ok", 8): 2}  # the interrupted cell left no row

    summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    assert summary.skipped == 1 and summary.run == 2
    assert rows_per_cell(tmp_path) == {("fake-ok", 8): 2, ("fake-interrupt", 8): 2, ("fake-ok", 16): 2}
    assert all(r["status"] == "ok" for r in read_rows(tmp_path / "results.csv"))

    # resuming a finished run runs nothing and adds nothing
    again = run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    assert again.run == 0 and again.skipped == 3
    assert sum(rows_per_cell(tmp_path).values()) == 6


def test_half_written_cells_are_dropped_and_run_again(fake_backends, tmp_path):
    cells = [cell("fake-ok"), cell("fake-ok", n=16)]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    csv_path = tmp_path / "results.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    # the writer was killed: the second cell lost its last row and a torn line remains
    csv_path.write_text("".join(lines[:-1]) + "0,r,t,lorenz,fake-o")
    summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    assert summary.skipped == 1 and summary.run == 1
    assert rows_per_cell(tmp_path) == {("fake-ok", 8): 2, ("fake-ok", 16): 2}
    validate(read_results(tmp_path))


SUITE = """
description = "resume test"
device = "cpu"
repeats = 2
warmups = 0
cell_timeout_s = 60

[[entries]]
problem = "lorenz"
backends = ["fake-ok"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8, 16]

[[entries]]
problem = "lorenz"
backends = ["fake-killparent"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8]

[[entries]]
problem = "lorenz"
backends = ["fake-sync"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8]
"""

# The guard matters: worker processes are spawned, and spawn re-imports the main module.
DRIVER = """
import sys
from solvers import registry
from harness.tests.fakes import FAKE_MANIFEST, FAKES
from harness.cli import main

if __name__ == "__main__":
    registry.BACKENDS.update(FAKES)
    registry.MANIFEST.update({name: FAKE_MANIFEST for name in FAKES})
    sys.exit(main(sys.argv[1:]))
"""


def test_killed_runner_then_cli_resume(tmp_path):
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "driver.py").write_text(DRIVER)
    env = dict(os.environ, HARNESS_FAKE_MARKER=str(tmp_path / "marker"),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run_dir = tmp_path / "run"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(tmp_path / "driver.py"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    first = cli("run", "--suite", str(tmp_path / "suite.toml"), "--out", str(run_dir), "--no-isolate", "--quiet")
    assert first.returncode == -9, first.stderr  # SIGKILLed mid-sweep by the fake
    assert rows_per_cell(run_dir) == {("fake-ok", 8): 2, ("fake-ok", 16): 2}

    second = cli("run", "--resume", str(run_dir), "--quiet")
    assert second.returncode == 0, second.stderr
    assert rows_per_cell(run_dir) == {("fake-ok", 8): 2, ("fake-ok", 16): 2, ("fake-killparent", 8): 2,
                                      ("fake-sync", 8): 2}
    rows = read_rows(run_dir / "results.csv")
    assert len({cell_key(r) for r in rows}) == 4
    assert len({r["run_id"] for r in rows}) == 1  # a resumed run keeps its run id
    df = validate(read_results(run_dir))
    assert (df["status"] == "ok").all()
    assert (run_dir / "results.parquet").exists()
