"""Regression check for the pytest-benchmark suite, robust to machine noise.

Absolute times drift between machines and nights; ratios measured in the same run do not
(much). Every benchmark is therefore divided by the *reference cell* of its own run (a fixed
NumPy workload, ``benchmarks/test_bench.py::test_reference_workload``) and that ratio is
compared with the same ratio in the stored baseline. A cell regresses when

    (median_cell / median_ref)_current  >  (1 + threshold) * (median_cell / median_ref)_baseline

The check also fails when a benchmark is in only one of the files ("missing" from the current
run: it crashed or was deselected; "new": the baseline needs refreshing) or its median is not a
finite number ("nan"): a benchmark that did not measure must not pass CI.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

REFERENCE_NAME = "test_reference_workload"
DEFAULT_THRESHOLD = 0.25


class BenchmarkFileError(ValueError):
    """A benchmark JSON that is missing, malformed, empty or lacks the reference cell."""


@dataclass(frozen=True)
class Comparison:
    name: str
    baseline_ratio: float | None
    current_ratio: float | None
    change: float | None       # current_ratio / baseline_ratio - 1
    verdict: str               # "ok" | "regression" | "faster" | "new" | "missing" | "nan"


#: Verdicts that fail the check.
FAILING = ("regression", "missing", "new", "nan")


def load_medians(path: str | Path) -> dict[str, float]:
    """name -> median seconds from a ``--benchmark-json`` file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchmarkFileError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchmarkFileError(f"{path}: not a benchmark JSON ({exc})") from None
    rows = data.get("benchmarks") if isinstance(data, dict) else None
    if not rows:
        raise BenchmarkFileError(f"{path}: holds no benchmark results")
    medians = {}
    for row in rows:
        try:
            medians[row["name"]] = float(row["stats"]["median"])
        except (KeyError, TypeError, ValueError):
            raise BenchmarkFileError(f"{path}: a benchmark entry lacks name or stats.median") from None
    if REFERENCE_NAME not in medians:
        raise BenchmarkFileError(f"{path}: the reference cell {REFERENCE_NAME!r} is missing")
    if not medians[REFERENCE_NAME] > 0:
        raise BenchmarkFileError(f"{path}: the reference cell has no positive median")
    return medians


def compare(current: dict[str, float], baseline: dict[str, float],
            threshold: float = DEFAULT_THRESHOLD) -> list[Comparison]:
    """Compare every cell's ratio to its run's reference cell against the baseline's."""
    if not threshold > 0:
        raise ValueError(f"invalid threshold {threshold!r}: must be positive")
    ref_c, ref_b = current[REFERENCE_NAME], baseline[REFERENCE_NAME]
    out = []
    for name in sorted((set(current) | set(baseline)) - {REFERENCE_NAME}):
        rc = current[name] / ref_c if name in current else None
        rb = baseline[name] / ref_b if name in baseline else None
        if (rc is not None and not math.isfinite(rc)) or (rb is not None and not math.isfinite(rb)):
            out.append(Comparison(name, rb, rc, None, "nan"))
        elif rc is None:
            out.append(Comparison(name, rb, None, None, "missing"))
        elif rb is None:
            out.append(Comparison(name, None, rc, None, "new"))
        else:
            change = rc / rb - 1.0
            verdict = "regression" if change > threshold else ("faster" if change < -threshold else "ok")
            out.append(Comparison(name, rb, rc, change, verdict))
    return out


def format_table(rows: list[Comparison]) -> str:
    lines = [f"{'benchmark':60s} {'baseline':>10s} {'current':>10s} {'change':>8s}  verdict"]
    for r in rows:
        b = f"{r.baseline_ratio:10.3f}" if r.baseline_ratio is not None else f"{'-':>10s}"
        c = f"{r.current_ratio:10.3f}" if r.current_ratio is not None else f"{'-':>10s}"
        ch = f"{r.change:+8.1%}" if r.change is not None else f"{'-':>8s}"
        lines.append(f"{r.name[:60]:60s} {b} {c} {ch}  {r.verdict}")
    return "\n".join(lines)


def main(current_path: str, baseline_path: str, threshold: float = DEFAULT_THRESHOLD) -> int:
    """Print the comparison; 0 when nothing regressed, 1 when something did."""
    rows = compare(load_medians(current_path), load_medians(baseline_path), threshold)
    print("ratios are median time / median time of the run's reference cell")
    print(format_table(rows))
    bad = [r.name for r in rows if r.verdict == "regression"]
    if bad:
        print(f"REGRESSION (> {threshold:.0%} slower relative to the reference cell): {', '.join(bad)}")
    broken = [f"{r.name} ({r.verdict})" for r in rows if r.verdict in FAILING and r.verdict != "regression"]
    if broken:
        print(f"FAILED: benchmarks missing from the current run, absent from the baseline or "
              f"without a finite median: {', '.join(broken)}")
    if bad or broken:
        return 1
    print(f"no regression beyond {threshold:.0%}")
    return 0
