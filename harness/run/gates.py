"""What a sweep runs when time is short: headline-first order, a shared time budget, and gates
that turn cells into rows without running them.

A lent GPU box gives one session of minutes. So that it brings back every backend's headline
cells rather than all of the first backend's:

* ``headline_first`` orders cells in tiers (``tier``): the Lorenz fixed and adaptive cells at the
  headline N (8, 32768, 524288, 2^23) of every backend, then the rest of the Lorenz sweep, then
  everything else (Robertson, SIR); within a tier each backend's cells stay together (one child
  process per backend and tier under "isolate") in first-appearance order.
* ``Budget`` shares the time left among the backends still to come in the current tier: a
  backend's turn ends when its share is spent, and its remaining cells of that tier become
  "skipped" rows ("not run: budget ..."), which ``--resume`` runs on a later box (a "skipped" row
  does not complete a cell: harness.results.store). A cell never runs past the budget's deadline: its
  time limit is cut to what is left, and a cell cut that way is recorded as skipped too.
* ``BrokenBackend``: after 2 cells of one backend fail with the same status and reason
  ("error" or "unavailable": a missing library, a broken driver), its remaining cells become
  rows with that reason at once, instead of starting a worker for each.
* ``Preflight``: backends that failed ``python -m harness preflight`` get rows with the
  pre-flight's reason; the others run.

Gates are objects with ``admit(cell) -> (cell, rows | None)`` (rows: the cell is not run) and
``after(cell, rows) -> rows`` (may replace the rows of a cell that ran); the sweep applies them
in order (``admit_cell``, ``after_cell``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import UsageError
from harness.measure.execute import failure_row, now_iso
from harness.results.schema import series_of

#: The headline N of the paper's Lorenz figure (8 * 4^k at k = 0, 6, 8 and 2^23).
HEADLINE_N = (8, 32768, 524288, 8388608)
HEADLINE_PROBLEM = "lorenz"
#: A cell is not started with less than this left of the budget (a new backend's child
#: process alone takes seconds to import JAX or torch, outside the cell's own limit).
MIN_CELL_S = 10.0
#: Failures with the same status and reason after which a backend is given up.
GIVE_UP_AFTER = 2
#: Statuses that say the backend, not the cell, is broken.
BROKEN_STATUSES = ("error", "unavailable")
SKIPPED = "skipped"


def tier(cell) -> int:
    """0: Lorenz fixed/adaptive at a headline N; 1: the rest of Lorenz; 2: everything else."""
    s = cell.spec
    if s.problem != HEADLINE_PROBLEM:
        return 2
    return 0 if s.n in HEADLINE_N and s.mode in ("fixed", "adaptive") else 1


def headline_first(cells: Sequence) -> list:
    """``cells`` by tier, each tier grouped by backend (first appearance), otherwise stable."""
    out = []
    for t in (0, 1, 2):
        in_tier = [c for c in cells if tier(c) == t]
        for b in dict.fromkeys(c.backend for c in in_tier):
            out.extend(c for c in in_tier if c.backend == b)
    return out


def admit_cell(gates: Sequence, cell) -> tuple[Any, list[dict] | None]:
    for g in gates:
        cell, rows = g.admit(cell)
        if rows is not None:
            return cell, rows
    return cell, None


def after_cell(gates: Sequence, cell, rows: list[dict]) -> list[dict]:
    for g in gates:
        rows = g.after(cell, rows)
    return rows


class Budget:
    """Share ``budget_s`` seconds among the backends of each tier of ``cells`` (already in run
    order, e.g. from ``headline_first``)."""

    def __init__(self, cells: Sequence, budget_s: float, context: dict[str, Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock, self.context, self.budget_s = clock, context, budget_s
        self.deadline = clock() + budget_s
        self._segments = [(tier(c), c.backend) for c in cells]
        self._left: dict[tuple, int] = {}
        for seg in self._segments:
            self._left[seg] = self._left.get(seg, 0) + 1
        self._current: tuple | None = None
        self._turn_ends = math.inf
        self._clamped: dict[tuple, float] = {}

    def _skip(self, cell, why: str) -> list[dict]:
        return [dict(failure_row(cell, self.context, now_iso(), SKIPPED, f"not run: budget ({why})"))]

    def admit(self, cell):
        seg = (tier(cell), cell.backend)
        now = self.clock()
        if seg != self._current:
            # a new backend's turn: an equal share of what is left among the backends still to
            # come in this tier (a backend that finishes early leaves its time to the next)
            self._current = seg
            to_come = {s for s, k in self._left.items() if s[0] == seg[0] and k > 0}
            self._turn_ends = now + (self.deadline - now) / max(len(to_come), 1)
        self._left[seg] = self._left.get(seg, 1) - 1
        left = self.deadline - now
        if left < MIN_CELL_S:
            return cell, self._skip(cell, f"the run's {self.budget_s:g} s were spent")
        if now >= self._turn_ends:
            return cell, self._skip(cell, f"{cell.backend}'s share of the run's {self.budget_s:g} s "
                                          f"for tier {seg[0]} was spent")
        if cell.timeout_s > left:
            self._clamped[cell.key] = left
            cell = dataclasses.replace(cell, timeout_s=left)
        return cell, None

    def after(self, cell, rows: list[dict]) -> list[dict]:
        if cell.key in self._clamped and rows and rows[0]["status"] == "timeout":
            return self._skip(cell, f"cut at the run's deadline after {self._clamped[cell.key]:.0f} s")
        return rows


class BrokenBackend:
    """Give up a backend after ``GIVE_UP_AFTER`` failures with the same status and reason."""

    def __init__(self, context: dict[str, Any]) -> None:
        self.context = context
        self._seen: dict[tuple, int] = {}
        self.broken: dict[str, tuple[str, str]] = {}

    def admit(self, cell):
        hit = self.broken.get(cell.backend)
        if hit is None:
            return cell, None
        status, reason = hit
        return cell, [failure_row(cell, self.context, now_iso(), status,
                                  f"not run: {cell.backend} failed {GIVE_UP_AFTER} cells with: {reason}")]

    def after(self, cell, rows: list[dict]) -> list[dict]:
        status, reason = rows[0]["status"], str(rows[0]["reason"])
        if status in BROKEN_STATUSES and not reason.startswith("not run:"):
            k = (cell.backend, status, reason)
            self._seen[k] = self._seen.get(k, 0) + 1
            if self._seen[k] >= GIVE_UP_AFTER:
                self.broken[cell.backend] = (status, reason)
        return rows


class LaunchesOncePerSeries:
    """Count launches only in the first cell run of each series (same key except N): the count
    is a property of the implementation, and counting under a profiler costs more than a solve.

    ``per_series``: how many cells of each series count (default 1; None: every cell), so that a
    suite's ``launch_counts`` key can ask for the >= 3 N per series the report's dispatch model
    needs (the count of an adaptive array-style solve grows with its shared step count).
    """

    def __init__(self, per_series: int | None = 1) -> None:
        self.per_series = per_series
        self._counted: dict[tuple, int] = {}

    def admit(self, cell):
        series = series_of(cell.key)
        done = self._counted.get(series, 0)
        if self.per_series is not None and done >= self.per_series:
            return dataclasses.replace(cell, count_launches=False), None
        self._counted[series] = done + 1
        return cell, None

    def after(self, cell, rows: list[dict]) -> list[dict]:
        return rows


class Preflight:
    """Rows with the pre-flight's reason for the backends it failed (``preflight.json``)."""

    def __init__(self, verdicts: dict[str, dict], context: dict[str, Any]) -> None:
        self.verdicts, self.context = verdicts, context

    @classmethod
    def from_file(cls, path: Path, context: dict[str, Any]) -> "Preflight":
        """The gate of ``preflight.json``; UsageError (one line) unless the file is one."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError(f"pre-flight file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"pre-flight file {path} is not JSON: {' '.join(str(exc).split())}") from None
        backends = data.get("backends") if isinstance(data, dict) else None
        if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
            raise UsageError(f"pre-flight file {path} is not a preflight.json (no \"backends\" object "
                             f"of verdicts); write one with `python -m harness preflight`")
        return cls(backends, context)

    def admit(self, cell):
        v = self.verdicts.get(cell.backend)
        if v is None or v.get("ok", True):
            return cell, None
        return cell, [failure_row(cell, self.context, now_iso(), "unavailable",
                                  f"pre-flight failed: {v.get('reason', '')}")]

    def after(self, cell, rows: list[dict]) -> list[dict]:
        return rows
