"""The sweep: hands cells to an executor (harness.run.executors: here, in child processes, or on
a Dask cluster), each under a time limit, and appends their rows.

The time limit covers the whole cell (prepare, first call, warm-ups, repeats, fetch, launch
count) except the computation of the float64 reference, which is done once per problem, N and
dtype, cached for every backend, and has a limit of its own (an hour in a child process, none
in-process).

Once a cell of a series (same key except N) times out or runs out of memory, the larger N of
that series are not run: each gets a row with the same status and a reason starting "not run:".
This is what keeps a sweep to 8 million trajectories within its budget.

Cells are appended to ``results.csv`` as they finish; cells whose key is already complete in
the file are skipped (resume), so nothing is duplicated.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from harness.measure.execute import Cell, failure_row, now_iso
from harness.results.schema import KEY_COLUMNS, series_of
from harness.results.store import CSV_NAME, ResultsWriter, cell_key, finished_keys, read_rows
from harness.run.executors import Executor, local_executor
from harness.run.gates import admit_cell, after_cell
from harness.run.progress import Progress, summarize

#: Statuses after which the larger N of a series are not run.
BLOCKING = ("timeout", "oom")
_N_INDEX = KEY_COLUMNS.index("n")


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


def run_sweep(cells: Sequence[Cell], out_dir: Path, *, run_id: str, suite: str,
              how: str | Executor = "shared", progress: bool = True, gates: Sequence = (),
              keep_order: bool = False) -> SweepSummary:
    """Run ``cells`` and append their rows to ``out_dir/results.csv`` (created if missing).

    Cells already complete in that file are skipped. On KeyboardInterrupt the executor is killed,
    every finished cell is already on disk, and the interrupt propagates.

    Args:
        cells: the cells, in the order they should run (see ``keep_order``).
        out_dir: the run folder (must exist).
        run_id, suite: written into every row.
        how: where cells run: "isolate", "shared" or "in-process" (harness.run.executors.
            local_executor), or an Executor (harness.run.cluster.DaskExecutor). The sweep closes it.
        progress: report progress on stderr.
        gates: harness.run.gates gates (budget, broken backend, pre-flight), applied in order;
            each is built with the same context (run_id, suite) as the rows.
        keep_order: run ``cells`` exactly in the order given (the caller ordered them, e.g.
            headline-first for a budget); else the executor's ``order`` groups them.
    """
    started = time.monotonic()
    executor = local_executor(how) if isinstance(how, str) else how
    path = Path(out_dir) / CSV_NAME
    done = finished_keys(path) if path.exists() else set()
    blocked: dict[tuple, tuple[str, int]] = {}
    for row in read_rows(path):
        _note_blocking(blocked, cell_key(row), row["status"])
    todo = [c for c in (cells if keep_order else executor.order(cells)) if c.key not in done]
    summary = SweepSummary(skipped=len(cells) - len(todo))
    context = {"run_id": run_id, "suite": suite}
    writer = ResultsWriter(path)
    bar = Progress(len(todo), enabled=progress)
    if summary.skipped:
        bar.message(f"resuming: {summary.skipped} cells already done, {len(todo)} to run")

    def record(cell: Cell, rows: list[dict[str, Any]]) -> None:
        writer.append(rows)
        _note_blocking(blocked, cell.key, rows[0]["status"])
        summary.run += 1
        summary.statuses[rows[0]["status"]] = summary.statuses.get(rows[0]["status"], 0) + 1
        bar.finish(cell.label, summarize(rows))

    def admit(cell: Cell) -> Cell | None:
        """The cell to run, or None after recording the rows of a cell that is not run (a
        blocked series, a gate said so)."""
        rows = _blocked_rows(cell, blocked, context)
        if rows is None:
            cell, rows = admit_cell(gates, cell)
        if rows is not None:
            record(cell, rows)
            return None
        bar.begin(cell.label)
        return cell

    try:
        executor.run_cells(todo, context, admit, lambda cell, rows: record(cell, after_cell(gates, cell, rows)))
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
