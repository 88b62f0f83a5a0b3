"""Sweeps on a Dask LocalCluster (harness.run.cluster, harness.run.shards): the same cells and statuses
as without a cluster, --resume after an interrupted clustered run, a worker killed mid-cell, a
sharded fused cell equal to the unsharded one, and the one-line errors of --cluster/--shards.

These start LocalClusters (a few seconds each): few, small (N = 8), time-limited."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.results.store import read_results, read_rows
from harness.run.cluster import MAX_WORKER_DEATHS, Cluster, DaskExecutor
from harness.run.sweep import run_sweep
from harness.results.schema import validate
from harness.measure.execute import Cell
from harness.tests.fakes import fake_backends, kill_log  # noqa: F401 - fixture
from solvers.base import SolveSpec

#: The tests that start a cluster need Dask; the last one (the one-line errors, also without
#: Dask) runs everywhere (the GPU box has no Dask).
needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason="dask[distributed] is not installed (the extras install it)")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def cell(backend: str, n: int = 8, mode: str = "fixed", shards: int | None = None) -> Cell:
    spec = SolveSpec(problem="lorenz", method="tsit5", mode=mode, dtype="float32", n=n, threads=1)
    return Cell(backend=backend, spec=spec, repeats=2, warmups=0, timeout_s=60, shards=shards)


def outcome(run_dir: Path) -> dict:
    """cell -> (status, rows) from results.csv."""
    rows = read_rows(run_dir / "results.csv")
    status = {(r["backend"], r["n"], r["mode"], r["shards"]): r["status"] for r in rows}
    count = Counter((r["backend"], r["n"], r["mode"], r["shards"]) for r in rows)
    return {k: (status[k], count[k]) for k in status}


def local(workers: int = 2):
    return Cluster(f"local:{workers}")


def sweep_on_cluster(cells: list[Cell], run_dir: Path, workers: int = 2) -> list[dict]:
    """``cells`` swept on a fresh local cluster into ``run_dir``; the rows written."""
    with local(workers) as cluster:
        run_sweep(cells, run_dir, run_id="r", suite="t", how=DaskExecutor(cluster, run_dir), progress=False)
    return read_rows(run_dir / "results.csv")


@needs_dask
def test_clustered_sweep_gives_the_cells_and_statuses_of_a_local_one(fake_backends, tmp_path):
    cells = [cell("fake-ok"), cell("fake-ok", 16), cell("fake-raise"), cell("fake-unsupported"),
             cell("fake-ok", mode="adaptive")]
    (tmp_path / "plain").mkdir()
    (tmp_path / "dask").mkdir()
    run_sweep(cells, tmp_path / "plain", run_id="r", suite="t", how="isolate", progress=False)
    with local() as cluster:
        run_sweep(cells, tmp_path / "dask", run_id="r", suite="t", how=DaskExecutor(cluster, tmp_path / "dask"),
                  progress=False)
    assert outcome(tmp_path / "dask") == outcome(tmp_path / "plain")
    df = validate(read_results(tmp_path / "dask"))
    workers = json.loads((tmp_path / "dask" / "workers.json").read_text())
    for s in df["settings"]:
        who = json.loads(s)["harness"]["worker"]
        assert who["address"].startswith("tcp://") and who["fingerprint_id"] in workers


class InterruptAfter:
    """A gate that interrupts the sweep (as Ctrl-C would) when the k-th cell finishes."""

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, 0

    def admit(self, cell):
        return cell, None

    def after(self, cell, rows):
        self.seen += 1
        if self.seen == self.k:
            raise KeyboardInterrupt("test")
        return rows


@needs_dask
def test_interrupted_clustered_run_resumes_without_loss_or_duplicates(fake_backends, tmp_path):
    cells = [cell("fake-ok", n) for n in (8, 16, 32, 64)] + [cell("fake-raise")]
    with local() as cluster:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(cells, tmp_path, run_id="r", suite="t", how=DaskExecutor(cluster, tmp_path), progress=False,
                      gates=[InterruptAfter(3)])
    first = outcome(tmp_path)
    assert len(first) == 2 and all(n == 2 or s != "ok" for s, n in first.values())
    with local() as cluster:
        summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how=DaskExecutor(cluster, tmp_path),
                            progress=False)
    assert summary.skipped == 2 and summary.run == 3
    final = outcome(tmp_path)
    assert len(final) == 5
    assert all(n == (2 if s == "ok" else 1) for s, n in final.values())
    assert {k: v for k, v in final.items() if k in first} == first


def kills() -> Counter:
    """The kills the fakes logged (harness.tests.fakes.kill_log): events, not timing."""
    path = kill_log()
    return Counter(path.read_text().split()) if path.is_file() else Counter()


@needs_dask
def test_a_worker_killed_mid_cell_is_retried_elsewhere_then_given_up(fake_backends, tmp_path):
    # One cell in the cluster at a time: a worker's death then counts against that cell alone
    # (Dask counts it against every task the worker held, queued ones included; see below).
    cells = [cell("fake-killworker"), cell("fake-killworker-always"), cell("fake-ok")]
    with local() as cluster:
        cluster.max_in_flight = 1
        summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how=DaskExecutor(cluster, tmp_path),
                            progress=False)
    assert summary.run == 3
    # each kill is logged by the fake before it kills: the always-killer is tried until Dask
    # gives up (allowed-failures + 1 deaths), the other killer kills once and then succeeds
    assert kills() == {"fake-killworker": 1, "fake-killworker-always": MAX_WORKER_DEATHS + 1}
    rows = read_rows(tmp_path / "results.csv")
    by = Counter(r["backend"] for r in rows)
    assert by == {"fake-killworker": 2, "fake-killworker-always": 1, "fake-ok": 2}  # no half rows
    status = {r["backend"]: (r["status"], r["reason"]) for r in rows}
    assert status["fake-killworker"][0] == "ok"  # killed once, run again on another worker
    assert status["fake-ok"][0] == "ok"
    assert status["fake-killworker-always"][0] == "oom"  # KilledWorker: the OOM killer's doing
    assert f"died {MAX_WORKER_DEATHS + 1} times" in status["fake-killworker-always"][1]
    validate(read_results(tmp_path))


@needs_dask
def test_killed_workers_with_cells_in_flight_end_every_cell_whole(fake_backends, tmp_path):
    # Two cells in flight: which cells a death also counts against depends on where Dask had
    # queued them, so only what holds whatever the order is asserted.
    cells = [cell("fake-killworker"), cell("fake-killworker-always"), cell("fake-ok")]
    with local() as cluster:
        cluster.max_in_flight = 2
        summary = run_sweep(cells, tmp_path, run_id="r", suite="t", how=DaskExecutor(cluster, tmp_path),
                            progress=False)
    assert summary.run == 3
    rows = read_rows(tmp_path / "results.csv")
    by = Counter(r["backend"] for r in rows)
    status = {r["backend"]: (r["status"], r["reason"]) for r in rows}
    for backend, n in by.items():  # a whole cell: its 2 timed rows, or one row saying why not
        assert (n, status[backend][0]) in ((2, "ok"), (1, "oom")), (backend, n, status[backend])
        if status[backend][0] == "oom":
            assert f"died {MAX_WORKER_DEATHS + 1} times" in status[backend][1]
    assert set(by) == {"fake-killworker", "fake-killworker-always", "fake-ok"}
    assert status["fake-killworker-always"][0] == "oom"
    assert kills()["fake-killworker"] <= 1  # 0: given up while queued behind the always-killer
    assert 1 <= kills()["fake-killworker-always"] <= MAX_WORKER_DEATHS + 1
    validate(read_results(tmp_path))


@needs_dask
def test_a_shard_whose_worker_is_killed_runs_again_on_another_worker(fake_backends, tmp_path):
    rows = sweep_on_cluster([cell("fake-killself", 8, shards=2)], tmp_path)
    assert [(r["status"], r["shards"], r["repeat"]) for r in rows] == [("ok", "2", "0"), ("ok", "2", "1")]
    # The moved shard shares the other's worker: each still solves its own slice (the fakes
    # return the reference's final states, so the gathered ensemble is exact to float32 rounding)
    assert all(float(r["max_rel_err"]) < 1e-6 for r in rows)
    shards = json.loads(rows[0]["settings"])["harness"]["shards"]
    assert [(s["start"], s["stop"]) for s in shards] == [(0, 4), (4, 8)]


@needs_dask
def test_shards_whose_workers_all_die_at_once_run_again_on_the_restarted_workers(fake_backends, tmp_path):
    # Each shard kills its worker once: with as many workers as shards, the cluster has no
    # worker left, and Dask leaves the shards waiting for one (harness.run.shards.STRANDED_POLL_S)
    rows = sweep_on_cluster([cell("fake-killself-each", 8, shards=2)], tmp_path)
    assert [(r["status"], r["repeat"]) for r in rows] == [("ok", "0"), ("ok", "1")], rows[0]["reason"]
    assert all(float(r["max_rel_err"]) < 1e-6 for r in rows)
    assert kills() == {"fake-killself-each": 2}
    harness = json.loads(rows[0]["settings"])["harness"]
    assert harness["shards_reprepared"] == [] and harness["repeats_done"] == 2  # died in the first call
    assert float(rows[0]["first_call_s"]) < 60  # moved, not waited out until the time limit


@needs_dask
def test_shards_whose_workers_always_die_end_as_one_oom_row(fake_backends, tmp_path):
    rows = sweep_on_cluster([cell("fake-killself-always", 8, shards=2)], tmp_path)
    assert [(r["status"], r["repeat"]) for r in rows] == [("oom", "-1")]
    # Deaths come in batches when every worker dies at once: past the allowed ones, however many
    died = re.search(r"^shard \d \(\d:\d\): its worker died (\d+) times", rows[0]["reason"])
    assert died and int(died.group(1)) > MAX_WORKER_DEATHS, rows[0]["reason"]


@needs_dask
def test_a_sharded_cell_past_its_time_limit_is_a_timeout_row(fake_backends, tmp_path):
    hang = dataclasses.replace(cell("fake-hang", 8, shards=2), timeout_s=10)  # the fake sleeps 60 s
    rows = sweep_on_cluster([hang, cell("fake-ok", 8, shards=2)], tmp_path)
    assert [(r["backend"], r["status"]) for r in rows] == [("fake-hang", "timeout"), ("fake-ok", "ok"), ("fake-ok", "ok")]
    # where the limit struck: the first call, unless a busy machine made the shards' prepare that slow
    assert rows[0]["reason"] in ("exceeded the cell time limit of 10 s during first call (round 1)",
                                 "exceeded the cell time limit of 10 s during the shards' prepare")


@needs_dask
def test_sharded_fused_cell_equals_the_unsharded_one(tmp_path):
    cells = [cell("fused", 24), cell("fused", 24, shards=3)]
    with local(3) as cluster:
        run_sweep(cells, tmp_path, run_id="r", suite="t", how=DaskExecutor(cluster, tmp_path), progress=False)
    df = validate(read_results(tmp_path))
    assert set(df["status"]) == {"ok"}
    whole, sharded = df[df["shards"].isna()].iloc[0], df[df["shards"] == 3].iloc[0]
    for col in ("max_rel_err", "max_scaled_err", "steps_mean", "rhs_evals_mean"):
        assert whole[col] == sharded[col]  # bitwise-equal final states give equal errors
    harness = json.loads(sharded["settings"])["harness"]
    assert [(s["start"], s["stop"]) for s in harness["shards"]] == [(0, 8), (8, 16), (16, 24)]
    assert len({s["worker"]["address"] for s in harness["shards"]}) == 3
    assert all(len(s["solve_s"]) == 2 for s in harness["shards"])
    assert all(o >= 0 for o in harness["overhead_s"])


@needs_dask
def test_an_invalid_cluster_address_fails_in_one_line(tmp_path, capsys):
    from harness.cli import main

    assert main(["run", "--suite", "smoke", "--cluster", "nowhere", "--out", str(tmp_path / "a")]) == 2
    assert "invalid --cluster 'nowhere'" in capsys.readouterr().err


def test_cluster_options_without_dask_fail_in_one_line(tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask were not installed
    for opt in (["--cluster", "local"], ["--shards", "2"]):
        assert main(["run", "--suite", "smoke", *opt, "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --") and "pip install 'dask[distributed]'" in err and "\n" not in err
    assert not (tmp_path / "b").exists()
