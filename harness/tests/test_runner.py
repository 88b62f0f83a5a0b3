"""The sweep: failures become rows and the sweep goes on; isolation; the CSV matches the schema."""
from __future__ import annotations

import json

import pytest

from harness.results.store import read_results, read_rows
from harness.run.sweep import run_sweep
from harness.results.schema import validate
from harness.measure.execute import Cell
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture
from solvers.base import SolveSpec


def cell(backend: str, n: int = 8, method: str = "tsit5", mode: str = "fixed", timeout_s: float = 30.0,
         repeats: int = 2) -> Cell:
    spec = SolveSpec(problem="lorenz", method=method, mode=mode, dtype="float32", n=n)
    return Cell(backend=backend, spec=spec, repeats=repeats, warmups=0, timeout_s=timeout_s)


def outcomes(run_dir) -> list[tuple[str, int, str, str]]:
    """(backend, n, method, status) per cell, in file order (one entry per cell)."""
    seen, out = set(), []
    for r in read_rows(run_dir / "results.csv"):
        key = (r["backend"], int(r["n"]), r["method"], r["mode"])
        if key not in seen:
            seen.add(key)
            out.append((r["backend"], int(r["n"]), r["method"], r["status"]))
    return out


@pytest.mark.parametrize("how", ["shared", "in-process"])
def test_failures_become_rows_and_the_sweep_goes_on(fake_backends, tmp_path, how):
    cells = [cell("fake-ok"), cell("fake-raise"), cell("fake-hang", timeout_s=1.0),
             cell("fake-unsupported", method="rk4"), cell("fake-oom"), cell("fake-ok", n=16)]
    summary = run_sweep(cells, tmp_path, run_id="r1", suite="test", how=how, progress=False)
    assert outcomes(tmp_path) == [("fake-ok", 8, "tsit5", "ok"), ("fake-raise", 8, "tsit5", "error"),
                                  ("fake-hang", 8, "tsit5", "timeout"),
                                  ("fake-unsupported", 8, "rk4", "unsupported"),
                                  ("fake-oom", 8, "tsit5", "oom"), ("fake-ok", 16, "tsit5", "ok")]
    assert summary.run == 6 and summary.statuses == {"ok": 2, "error": 1, "timeout": 1, "unsupported": 1, "oom": 1}
    rows = {r["backend"]: r for r in read_rows(tmp_path / "results.csv")}
    assert rows["fake-raise"]["reason"] == "RuntimeError: boom second line of the message"
    assert rows["fake-raise"]["repeat"] == "-1"
    assert "time limit of 1 s during first call" in rows["fake-hang"]["reason"]
    assert rows["fake-unsupported"]["reason"] == "fake-unsupported refuses rk4"
    assert "out of memory" in rows["fake-oom"]["reason"]
    df = validate(read_results(tmp_path))
    assert len(df) == 2 + 4 + 2 and set(df["run_id"]) == {"r1"} and set(df["suite"]) == {"test"}


def test_a_dead_worker_is_an_error_row_and_a_new_worker_takes_over(fake_backends, tmp_path):
    run_sweep([cell("fake-die"), cell("fake-ok")], tmp_path, run_id="r", suite="t", how="shared", progress=False)
    rows = read_rows(tmp_path / "results.csv")
    assert rows[0]["status"] == "error" and "exited with code 3" in rows[0]["reason"]
    assert [r["status"] for r in rows[1:]] == ["ok", "ok"]


def test_an_oom_killed_cell_stops_its_series(fake_backends, tmp_path):
    """A child killed by SIGKILL (the OOM killer) is an "oom" row, and like a time-out it keeps
    the larger N of its series from running (and being killed again)."""
    cells = [cell("fake-oomkill", n) for n in (8, 16, 32)] + [cell("fake-ok", 32)]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="isolate", progress=False)
    assert outcomes(tmp_path) == [("fake-oomkill", 8, "tsit5", "ok"), ("fake-oomkill", 16, "tsit5", "oom"),
                                  ("fake-oomkill", 32, "tsit5", "oom"), ("fake-ok", 32, "tsit5", "ok")]
    rows = {(r["backend"], r["n"]): r["reason"] for r in read_rows(tmp_path / "results.csv")}
    assert "killed by SIGKILL" in rows[("fake-oomkill", "16")]
    assert rows[("fake-oomkill", "32")] == "not run: N=16 of this series ran out of memory"


def test_after_a_timeout_larger_n_of_the_same_series_is_not_run(fake_backends, tmp_path):
    cells = [cell("fake-hang", n=8, timeout_s=0.5), cell("fake-hang", n=32, timeout_s=0.5),
             cell("fake-hang", n=8, mode="adaptive", timeout_s=0.5)]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    rows = read_rows(tmp_path / "results.csv")
    assert [(r["n"], r["mode"], r["status"]) for r in rows] == [
        ("8", "fixed", "timeout"), ("32", "fixed", "timeout"), ("8", "adaptive", "timeout")]
    assert rows[1]["reason"] == "not run: N=8 of this series exceeded its time limit"
    assert rows[2]["reason"].startswith("exceeded")  # another series: it did run


def _pids(run_dir) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for r in read_rows(run_dir / "results.csv"):
        out.setdefault(r["backend"], set()).add(json.loads(r["settings"])["notes"]["pid"])
    return out


def test_isolate_runs_each_backend_in_its_own_process(fake_backends, tmp_path):
    import os

    cells = [cell("fake-ok"), cell("fake-sync"), cell("fake-ok", n=16)]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="isolate", progress=False)
    pids = _pids(tmp_path)
    assert len(pids["fake-ok"]) == 1 and len(pids["fake-sync"]) == 1  # one process per backend
    assert pids["fake-ok"] != pids["fake-sync"]
    assert os.getpid() not in pids["fake-ok"] | pids["fake-sync"]


def test_shared_runs_all_backends_in_one_child(fake_backends, tmp_path):
    import os

    run_sweep([cell("fake-ok"), cell("fake-sync")], tmp_path, run_id="r", suite="t", how="shared", progress=False)
    pids = _pids(tmp_path)
    assert pids["fake-ok"] == pids["fake-sync"] and os.getpid() not in pids["fake-ok"]


def test_partly_failed_cells_stay_ok_and_wholly_failed_cells_fail(fake_backends, tmp_path):
    cells = [cell("fake-partial", method="tsit5"), cell("fake-partial", method="rk4")]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    rows = read_rows(tmp_path / "results.csv")
    partial = [r for r in rows if r["method"] == "tsit5"]
    assert [r["status"] for r in partial] == ["ok", "ok"]
    assert float(partial[0]["failed_trajectories"]) == 2
    assert partial[0]["reason"] == "2 of 8 trajectories failed: MAX_STEPS 2"
    failed = [r for r in rows if r["method"] == "rk4"]
    assert len(failed) == 1 and failed[0]["status"] == "failed" and failed[0]["repeat"] == "-1"
    assert failed[0]["reason"] == "8 of 8 trajectories failed: MAX_STEPS 8"
    assert float(failed[0]["time_s"]) > 0  # what was measured is kept
    validate(read_results(tmp_path))


def test_unknown_backend_module_is_an_unavailable_row(fake_backends, tmp_path, monkeypatch):
    from solvers import registry

    monkeypatch.setitem(registry.BACKENDS, "fake-missing", "harness.tests.no_such_module:Nothing")
    run_sweep([cell("fake-missing"), cell("fake-ok")], tmp_path, run_id="r", suite="t", how="in-process",
              progress=False)
    rows = read_rows(tmp_path / "results.csv")
    assert rows[0]["status"] == "unavailable" and "no_such_module" in rows[0]["reason"]
    assert rows[1]["status"] == "ok"


def test_computing_the_reference_does_not_count_against_the_cell_limit(fake_backends, tmp_path, monkeypatch):
    import time

    from harness.measure import execute

    real = execute.load_reference

    def slow_reference(c):
        time.sleep(1.5)  # longer than the cell's whole limit
        return real(c)

    monkeypatch.setattr(execute, "load_reference", slow_reference)
    cells = [cell("fake-ok", timeout_s=1.0), cell("fake-hang", timeout_s=1.0)]
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    rows = read_rows(tmp_path / "results.csv")
    assert [r["status"] for r in rows] == ["ok", "ok", "timeout"]  # the limit still holds elsewhere
    assert rows[2]["reason"].endswith("during first call")
