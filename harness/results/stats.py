"""Per-cell timing statistics that show the noise: min, median, interquartile range, spread.

Every raw sample stays in ``results.csv`` (one row per timed repeat); these functions derive
from them, so a report, a figure or a README table quotes the same numbers:

* :func:`sample_stats` for one list of samples;
* :func:`cell_stats` for a whole results table (one row per ok cell, joined on the key columns);
* :func:`speedup` for a ratio of two cells, quoted with its range.

A cell is flagged ``noisy`` when its slowest repeat is more than ``NOISY_SPREAD`` (1.5x) its
fastest: its median and its minimum can then give speedups far apart.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

#: max/min of a cell's repeats above which it is flagged noisy.
NOISY_SPREAD = 1.5


def sample_stats(samples: Sequence[float]) -> dict[str, Any]:
    """Statistics of one cell's timed repeats (NaN samples are ignored).

    Returns count, min, q1, median, q3, iqr (q3 - q1), max, spread (max / min) and noisy
    (spread > NOISY_SPREAD). Quartiles are NumPy's default (linear interpolation); with no
    finite sample every value is NaN, count 0 and noisy False.
    """
    x = np.asarray([s for s in samples if s is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        nan = math.nan
        return {"count": 0, "min": nan, "q1": nan, "median": nan, "q3": nan, "iqr": nan,
                "max": nan, "spread": nan, "noisy": False}
    q1, med, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
    lo, hi = float(x.min()), float(x.max())
    spread = hi / lo if lo > 0 else math.inf
    return {"count": int(x.size), "min": lo, "q1": q1, "median": med, "q3": q3, "iqr": q3 - q1,
            "max": hi, "spread": spread, "noisy": bool(spread > NOISY_SPREAD)}


def cell_stats(df, time_column: str = "time_s"):
    """One row per ok cell of a results table: its key columns, ``cpu_util`` (mean over its
    rows, NaN in runs that predate it) and :func:`sample_stats` of ``time_column`` as
    ``time_<stat>`` columns (``time_count``, ``time_min``, ..., ``time_noisy``).

    Keys may hold NaN (rtol of a fixed-step cell, threads in older runs): they group as values.
    """
    import pandas as pd

    from harness.results.schema import KEY_COLUMNS

    keys = [k for k in KEY_COLUMNS if k in df.columns]
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    out = []
    for key, group in ok.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        st = sample_stats(group[time_column].tolist())
        row.update({f"time_{k}": v for k, v in st.items()})
        row["cpu_util"] = float(group["cpu_util"].mean()) if "cpu_util" in group else math.nan
        out.append(row)
    columns = keys + [f"time_{k}" for k in sample_stats([1.0])] + ["cpu_util"]
    return pd.DataFrame(out, columns=columns)


def speedup(baseline: Sequence[float], other: Sequence[float]) -> dict[str, float]:
    """How much faster ``other`` is than ``baseline`` (> 1: ``other`` is faster), with its range.

    median: ratio of medians (the headline); min: ratio of minima (the paper's convention);
    lo, hi: the bracket from the least to the most favourable pairing of repeats
    (min(baseline) / max(other), max(baseline) / min(other)).
    """
    a, b = sample_stats(baseline), sample_stats(other)
    if a["count"] == 0 or b["count"] == 0:
        nan = math.nan
        return {"median": nan, "min": nan, "lo": nan, "hi": nan}
    return {"median": a["median"] / b["median"], "min": a["min"] / b["min"],
            "lo": a["min"] / b["max"], "hi": a["max"] / b["min"]}


def format_speedup(s: dict[str, float]) -> str:
    """``"12.3x (10.1-14.0)"``: ratio of medians, then the lo-hi bracket."""
    if not all(math.isfinite(s[k]) for k in ("median", "lo", "hi")):
        return "n/a"
    return f"{s['median']:.3g}x ({s['lo']:.3g}-{s['hi']:.3g})"


def report_section(run_dir, df) -> str | None:
    """Report hook: a Markdown section on timing noise (cells flagged noisy, cpu_util range)."""
    import pandas as pd

    if df is None or len(df) == 0 or "status" not in df.columns or not (df["status"] == "ok").any():
        return None
    st = cell_stats(df)
    noisy = st[st["time_noisy"]]
    lines = ["## Timing noise", "",
             f"{len(st)} timed cells; median {int(st['time_count'].median())} repeats per cell; "
             f"{len(noisy)} cells ({100 * len(noisy) / len(st):.0f}%) vary more than "
             f"{NOISY_SPREAD:g}x between their fastest and slowest repeat."]
    if st["cpu_util"].notna().any():
        lines.append(f"CPU time / wall time over the repeats ranges {st['cpu_util'].min():.2f}-"
                     f"{st['cpu_util'].max():.2f} (1.0 = one core busy).")
    if len(noisy):
        lines += ["", "| problem | backend | variant | method | mode | N | threads | repeats | min s | median s | max/min |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in noisy.sort_values("time_spread", ascending=False).head(20).iterrows():
            threads = r["threads"] if "threads" in r and not pd.isna(r["threads"]) else ""
            lines.append(f"| {r['problem']} | {r['backend']} | {r['variant'] or ''} | {r['method']} | "
                         f"{r['mode']} | {r['n']} | {threads} | {r['time_count']} | {r['time_min']:.3g} | "
                         f"{r['time_median']:.3g} | {r['time_spread']:.2f} |")
    return "\n".join(lines) + "\n"
