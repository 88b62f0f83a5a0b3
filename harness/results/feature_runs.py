"""Find the committed run of a feature suite (sde, sizes, scaling, nonlinear, ...).

The README's results block is generated from the cpu reference run; a feature's paragraph in that
block reads its own suite's newest committed run folder, found here by the run id's suite part
(``<UTC stamp>-<suite>-<device tag>``, written by ``harness run``).
"""
from __future__ import annotations

from pathlib import Path

#: Where ``harness run`` writes run folders (relative to the repository root).
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"


def latest_run(suite: str, results_dir: Path = RESULTS_DIR) -> Path | None:
    """The newest run folder of ``suite`` under ``results_dir`` that has a results.csv, or None."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return None
    runs = [d for d in results_dir.iterdir()
            if d.is_dir() and (d / "results.csv").is_file() and _suite_of(d.name) == suite]
    return max(runs, key=lambda d: d.name) if runs else None


def _suite_of(run_id: str) -> str | None:
    """``20261201T184159Z-sde-vm`` -> ``sde``; suite names may contain dashes (``gpu-quick``)."""
    stamp, sep, rest = run_id.partition("-")
    if not sep or len(stamp) != 16 or not stamp.endswith("Z"):
        return None
    suite, sep, _device = rest.rpartition("-")
    return suite if sep else None


__all__ = ["RESULTS_DIR", "latest_run"]
