"""A short session: headline-first order, the shared budget, skipped rows that --resume runs,
giving up a broken backend, the pre-flight gate, launches counted once per series."""
from __future__ import annotations

import json

from harness.results.store import finished_keys, read_rows
from harness.run.sweep import run_sweep
from harness.run.gates import (Budget, BrokenBackend, LaunchesOncePerSeries, Preflight,
                              headline_first, tier)
from harness.measure.execute import Cell
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture
from solvers.base import SolveSpec

CTX = {"run_id": "r", "suite": "t"}


def cell(backend: str, n: int = 8, problem: str = "lorenz", mode: str = "fixed",
         timeout_s: float = 30.0) -> Cell:
    method = "tsit5" if problem == "lorenz" else "rosenbrock23"
    mode = mode if problem == "lorenz" else "adaptive"
    spec = SolveSpec(problem=problem, method=method, mode=mode,
                     dtype="float32" if problem == "lorenz" else "float64", n=n)
    return Cell(backend=backend, spec=spec, repeats=1, warmups=0, timeout_s=timeout_s)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_headline_cells_of_every_backend_come_first():
    cells = [cell(b, n) for b in ("a", "b") for n in (8, 128, 32768)] + [cell("a", 8, problem="robertson")]
    order = [(c.backend, c.spec.n, c.spec.problem) for c in headline_first(cells)]
    assert order == [("a", 8, "lorenz"), ("a", 32768, "lorenz"), ("b", 8, "lorenz"), ("b", 32768, "lorenz"),
                     ("a", 128, "lorenz"), ("b", 128, "lorenz"), ("a", 8, "robertson")]
    assert [tier(c) for c in headline_first(cells)] == [0, 0, 0, 0, 1, 1, 2]


def test_budget_is_shared_among_the_backends_of_a_tier():
    cells = headline_first([cell(b, n) for b in ("a", "b") for n in (8, 32768)])
    clock = FakeClock()
    budget = Budget(cells, 100.0, CTX, clock=clock)
    c, rows = budget.admit(cells[0])  # a's turn: 100 s / 2 backends
    assert rows is None
    clock.t = 60.0  # a's first cell took all of a's share and more
    c, rows = budget.admit(cells[1])
    assert rows[0]["status"] == "skipped" and rows[0]["reason"].startswith("not run: budget")
    c, rows = budget.admit(cells[2])  # b still gets its turn, with what is left
    assert rows is None and c.timeout_s == 30.0
    clock.t = 90.0  # 10 s left: the cell's limit is cut to it
    c, rows = budget.admit(cells[3])
    assert rows is None and c.timeout_s == 10.0
    cut = budget.after(c, [{"status": "timeout", "reason": "x"}])
    assert cut[0]["status"] == "skipped" and "deadline" in cut[0]["reason"]
    clock.t = 0.0
    late = Budget(cells, 100.0, CTX, clock=clock)
    clock.t = 99.0
    _, rows = late.admit(cells[0])  # too little left to start a cell
    assert rows[0]["status"] == "skipped" and "were spent" in rows[0]["reason"]


def test_skipped_cells_are_left_for_resume(fake_backends, tmp_path):
    cells = [cell("fake-ok", 8), cell("fake-ok", 32)]
    clock = FakeClock()
    budget = Budget(cells, 100.0, CTX, clock=clock)
    clock.t = 99.5  # nothing fits: both cells become skipped rows
    run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False, gates=[budget])
    assert [r["status"] for r in read_rows(tmp_path / "results.csv")] == ["skipped", "skipped"]
    assert finished_keys(tmp_path / "results.csv") == set()
    summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False)
    assert summary.run == 2 and summary.skipped == 0
    assert {r["status"] for r in read_rows(tmp_path / "results.csv")} == {"ok"}


def test_a_backend_failing_twice_for_the_same_reason_is_given_up(fake_backends, tmp_path):
    cells = [cell("fake-raise", n) for n in (8, 32, 128, 512)] + [cell("fake-ok")]
    summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how="in-process", progress=False,
                        gates=[BrokenBackend(CTX)])
    rows = read_rows(tmp_path / "results.csv")
    assert [r["status"] for r in rows[:4]] == ["error"] * 4
    assert rows[1]["reason"] == "RuntimeError: boom second line of the message"
    assert rows[2]["reason"].startswith("not run: fake-raise failed 2 cells with: RuntimeError: boom")
    assert rows[4]["status"] == "ok" and summary.run == 5


def test_backends_that_failed_preflight_are_not_run(fake_backends, tmp_path):
    pf = tmp_path / "preflight.json"
    pf.write_text(json.dumps({"backends": {"fake-ok": {"ok": False, "reason": "cupy: no device"},
                                           "fake-sync": {"ok": True, "reason": ""}}}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_sweep([cell("fake-ok"), cell("fake-sync")], run_dir, run_id="r", suite="t", how="in-process",
              progress=False, gates=[Preflight.from_file(pf, CTX)])
    rows = read_rows(run_dir / "results.csv")
    assert rows[0]["status"] == "unavailable" and rows[0]["reason"] == "pre-flight failed: cupy: no device"
    assert rows[1]["status"] == "ok"


def test_launches_are_counted_once_per_series():
    gate = LaunchesOncePerSeries()
    got = [gate.admit(c)[0].count_launches for c in
           (cell("a", 8), cell("a", 32), cell("a", 8, mode="adaptive"), cell("b", 32))]
    assert got == [True, False, True, True]
