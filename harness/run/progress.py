"""Progress over a sweep's cells, on stderr: a rich bar on a terminal, plain lines otherwise.

The estimate of time left is the mean time of the cells finished so far times the cells left
(cells differ a lot in cost, so it is rough; it sharpens as the sweep goes).
"""
from __future__ import annotations

import sys
import time
from typing import Any


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def summarize(rows: list[dict[str, Any]]) -> str:
    """One-line outcome of a cell from its rows: status and median time, or the reason."""
    status = rows[0]["status"]
    if status == "ok":
        times = sorted(r["time_s"] for r in rows)
        median = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
        extra = f", {rows[0]['reason']}" if rows[0].get("reason") else ""
        return f"ok, median {median * 1e3:.3f} ms{extra}"
    return f"{status}: {rows[0]['reason']}"


class Progress:
    """Reports cells as they start and finish. ``enabled=False`` is silent."""

    def __init__(self, total: int, enabled: bool = True, stream=None) -> None:
        self.total, self.done = total, 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._rich = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                # rich is optional: without it (or off a terminal) progress is plain lines
                from rich.console import Console
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

                self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                          MofNCompleteColumn(), TimeElapsedColumn(),
                                          TextColumn("left"), TimeRemainingColumn(),
                                          console=Console(file=self.stream), transient=False)
                self._task = self._rich.add_task("starting", total=total)
                self._rich.start()
            except ImportError:
                self._rich = None

    def _eta(self) -> str:
        if self.done == 0:
            return "unknown"
        per_cell = (time.monotonic() - self.started) / self.done
        return _clock(per_cell * (self.total - self.done))

    def begin(self, label: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.update(self._task, description=label)

    def finish(self, label: str, outcome: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        line = f"[{self.done}/{self.total}] {label}: {outcome}"
        if self._rich is not None:
            self._rich.console.print(line, markup=False, highlight=False)
            self._rich.update(self._task, advance=1)
        else:
            elapsed = _clock(time.monotonic() - self.started)
            print(f"{line} (elapsed {elapsed}, about {self._eta()} left)", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
