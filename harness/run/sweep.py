"""The sweep: runs cells one after another, each under a time limit, and appends their rows.

Where cells run (``how``):

* "isolate": each backend's cells in a child process of their own (JAX and torch each hold
  GPU memory for the life of their process; on a CPU, one library's thread pools and JIT
  caches do not disturb another's timings); the default;
* "shared": all cells in one child process (cheaper, for quick runs);
* "in-process": in the caller's process, for tests, profiling and debugging. The time limit is
  then a SIGALRM (main thread only) and cannot interrupt native code that ignores signals.

The time limit covers the whole cell (prepare, first call, warm-ups, repeats, fetch, launch
count) except the computation of the float64 reference, which is done once per problem, N and
dtype, cached for every backend, and has a limit of its own (an hour in a child process, none
in-process).

In the two child-process modes a cell that runs past its limit gets its child killed (a
"timeout" row) and the next cell starts a fresh child; a child that dies mid-cell gives an
"error" row (a killed child's signal is named). On a GPU a child is also restarted after an
"error" or "oom" cell, since a CUDA error can poison the process's context.

Once a cell of a series (same key except N) times out or runs out of memory, the larger N of
that series are not run: each gets a row with the same status and a reason starting "not run:".
This is what keeps a sweep to 8 million trajectories within its budget.

Cells with different ``threads`` never share a child: a child is configured for one thread count
before it imports any library (see harness.measure.threads), so the runner starts a new one when the
setting changes.

Cells are appended to ``results.csv`` as they finish; cells whose key is already complete in
the file are skipped (resume), so nothing is duplicated.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.measure.execute import REFERENCE_PHASE, execute_cell, failure_row, now_iso
from harness.run.progress import Progress, summarize
from harness.results.store import CSV_NAME, ResultsWriter, cell_key, finished_keys, read_rows
from harness.results.schema import KEY_COLUMNS
from harness.run.gates import admit_cell, after_cell
from harness.run.suites import Cell
from harness.measure.threads import resolve as resolve_threads
from harness.run.worker import Worker, WorkerDied, WorkerTimeout

HOW = ("isolate", "shared", "in-process")
#: Statuses after which the larger N of a series are not run.
BLOCKING = ("timeout", "oom")
_N_INDEX = KEY_COLUMNS.index("n")


def series_of(key: tuple) -> tuple:
    """A cell key without its N."""
    return key[:_N_INDEX] + key[_N_INDEX + 1:]


@dataclass
class SweepSummary:
    """What a sweep did: cells run, cells skipped as already done, outcomes by status."""

    run: int = 0
    skipped: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def line(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items())) or "none"
        return (f"{self.run} cells run ({counts}), {self.skipped} already done, "
                f"{self.elapsed_s:.1f} s")


class CellTimeout(BaseException):
    """Raised by SIGALRM in in-process mode. A BaseException so that a backend's or
    execute_cell's ``except Exception`` cannot swallow it."""


def _run_in_process(cell: Cell, context: dict[str, Any]) -> list[dict[str, Any]]:
    """Run ``cell`` here, its time limit a SIGALRM that is paused while the reference is computed."""
    phase = ["start"]
    on_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    paused = [0.0]  # the cell's remaining time while the alarm is paused for the reference

    def on_alarm(signum, frame):
        raise CellTimeout(phase[0])  # the phase now: cleanup on the way out renames it

    def on_phase(name: str) -> None:
        if on_main and name == REFERENCE_PHASE:
            paused[0] = signal.setitimer(signal.ITIMER_REAL, 0)[0]
        elif on_main and phase[0] == REFERENCE_PHASE:
            signal.setitimer(signal.ITIMER_REAL, max(paused[0], 1e-3))
        phase[0] = name

    if on_main:
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, cell.timeout_s)
    started_at = now_iso()
    try:
        return execute_cell(cell, context, on_phase=on_phase)
    except CellTimeout as exc:
        return [failure_row(cell, context, started_at, "timeout",
                            f"exceeded the cell time limit of {cell.timeout_s:g} s during {exc.args[0]}")]
    finally:
        if on_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class _Executor:
    """Runs cells according to ``how``, keeping at most one child process alive."""

    def __init__(self, how: str, context: dict[str, Any]) -> None:
        if how not in HOW:
            raise ValueError(f"invalid how {how!r}: choose one of {', '.join(HOW)}")
        self.how, self.context = how, context
        self.worker: Worker | None = None
        self.worker_backend: str | None = None
        self.worker_threads: int | None = None

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.worker, self.worker_backend = None, None

    def run(self, cell: Cell) -> list[dict[str, Any]]:
        if self.how == "in-process":
            return _run_in_process(cell, self.context)
        if self.worker is not None and self.how == "isolate" and self.worker_backend != cell.backend:
            self._drop_worker()
        threads = resolve_threads(cell.spec.threads)
        if self.worker is not None and self.worker_threads != threads:
            self._drop_worker()  # a child's thread settings are fixed when it starts
        started_at = now_iso()
        try:
            if self.worker is None:
                self.worker, self.worker_backend = Worker(self.context, threads), cell.backend
                self.worker_threads = threads
            rows = self.worker.run(cell, cell.timeout_s)
        except WorkerTimeout as exc:
            self.worker, self.worker_backend = None, None  # already killed
            return [failure_row(cell, self.context, started_at, "timeout",
                                f"exceeded the cell time limit of {cell.timeout_s:g} s during {exc.phase}")]
        except WorkerDied as exc:
            phase = self.worker.phase if self.worker is not None else "start"
            self._drop_worker()
            return [failure_row(cell, self.context, started_at, "error", f"{exc} during {phase}")]
        if cell.spec.device == "gpu" and rows[0]["status"] in ("error", "oom"):
            self._drop_worker()
        return rows

    def close(self) -> None:
        """Let the idle child finish cleanly."""
        self._drop_worker()

    def kill(self) -> None:
        """Kill the child now (it may be mid-cell: after an interrupt)."""
        if self.worker is not None:
            self.worker.kill()
        self.worker, self.worker_backend = None, None


def order_cells(cells: Sequence[Cell], how: str) -> list[Cell]:
    """Cells in run order: as given, except that "isolate" groups each backend's cells together
    (in order of first appearance, stable within a backend) so each backend starts one child,
    and both child modes group cells of one ``threads`` setting together (a child serves one)."""
    if how == "in-process":
        return list(cells)
    groups = list(dict.fromkeys(_group(c, how) for c in cells))
    return [c for g in groups for c in cells if _group(c, how) == g]


def _group(cell: Cell, how: str) -> tuple:
    threads = resolve_threads(cell.spec.threads)
    return (cell.backend, threads) if how == "isolate" else (threads,)


def run_sweep(cells: Sequence[Cell], out_dir: Path, *, run_id: str, suite: str, how: str = "shared",
              progress: bool = True, gates: Sequence = (), keep_order: bool = False,
              cluster: Any = None) -> SweepSummary:
    """Run ``cells`` and append their rows to ``out_dir/results.csv`` (created if missing).

    Cells already complete in that file are skipped. On KeyboardInterrupt the child is killed,
    every finished cell is already on disk, and the interrupt propagates.

    Args:
        cells: the cells, in the order they should run (see ``order_cells`` for "isolate").
        out_dir: the run folder (must exist).
        run_id, suite: written into every row.
        how: "isolate", "shared" or "in-process" (see module docstring).
        progress: report progress on stderr.
        gates: harness.run.gates gates (budget, broken backend, pre-flight), applied in order;
            each is built with the same context (run_id, suite) as the rows.
        keep_order: run ``cells`` exactly in the order given (the caller ordered them, e.g.
            headline-first for a budget); else ``order_cells`` groups them for "isolate".
        cluster: a started harness.run.cluster.Cluster: cells run on its Dask workers (each in an
            isolated child there) and sharded cells over several workers (harness.run.shards);
            None: here, as ``how`` says (sharded cells then need a cluster).
    """
    started = time.monotonic()
    path = Path(out_dir) / CSV_NAME
    done = finished_keys(path) if path.exists() else set()
    blocked: dict[tuple, tuple[str, int]] = {}
    for row in read_rows(path):
        _note_blocking(blocked, cell_key(row), row["status"])
    todo = [c for c in (cells if keep_order else order_cells(cells, how)) if c.key not in done]
    summary = SweepSummary(skipped=len(cells) - len(todo))
    context = {"run_id": run_id, "suite": suite}
    writer = ResultsWriter(path)
    executor = _Executor(how, context)
    bar = Progress(len(todo), enabled=progress)
    if summary.skipped:
        bar.message(f"resuming: {summary.skipped} cells already done, {len(todo)} to run")
    def prepare(cell: Cell):
        """(cell, rows): rows when the cell is not run (blocked series, a gate said so)."""
        rows = _blocked_rows(cell, blocked, context)
        return (cell, rows) if rows is not None else admit_cell(gates, cell)

    def record(cell: Cell, rows: list[dict[str, Any]]) -> None:
        writer.append(rows)
        _note_blocking(blocked, cell.key, rows[0]["status"])
        summary.run += 1
        summary.statuses[rows[0]["status"]] = summary.statuses.get(rows[0]["status"], 0) + 1
        bar.finish(cell.label, summarize(rows))

    try:
        if cluster is not None:
            from harness.run.cluster import run_on_cluster

            run_on_cluster(cluster, todo, context=context, run_dir=Path(out_dir), record=record,
                           prepare=prepare, begin=lambda c: bar.begin(c.label),
                           finish_gates=lambda c, rows: after_cell(gates, c, rows))
        for cell in (todo if cluster is None else []):
            bar.begin(cell.label)
            cell, rows = prepare(cell)
            if rows is None and cell.shards:
                rows = [failure_row(cell, context, now_iso(), "unsupported",
                                    "shards: a sharded cell needs a Dask cluster (run --cluster)")]
            if rows is None:
                rows = after_cell(gates, cell, executor.run(cell))
            record(cell, rows)
    except BaseException:
        executor.kill()
        raise
    finally:
        executor.close()
        writer.close()
        bar.close()
        summary.elapsed_s = time.monotonic() - started
    return summary


def _note_blocking(blocked: dict[tuple, tuple[str, int]], key: tuple, status: str) -> None:
    if status in BLOCKING:
        series, n = series_of(key), key[_N_INDEX]
        if series not in blocked or n < blocked[series][1]:
            blocked[series] = (status, n)


def _blocked_rows(cell: Cell, blocked: dict[tuple, tuple[str, int]], context: dict[str, Any]):
    hit = blocked.get(series_of(cell.key))
    if hit is None or cell.spec.n <= hit[1]:
        return None
    status, n = hit
    what = "exceeded its time limit" if status == "timeout" else "ran out of memory"
    return [failure_row(cell, context, now_iso(), status, f"not run: N={n} of this series {what}")]

