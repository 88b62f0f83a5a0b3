"""The timing-noise section: how far each cell's repeats spread, read from the cell table.

Every raw sample stays in ``results.csv``; the statistics (min, median, spread, noisy flag) are
:func:`harness.results.cells.cell_table`'s, so this section, the figures and the README quote the
same numbers.
"""
from __future__ import annotations

import pandas as pd

from harness.results.cells import NOISY_SPREAD


def report_section(cells: pd.DataFrame) -> str | None:
    """Markdown: the cells flagged noisy and the CPU-utilisation range (None without a timed cell)."""
    st = cells[cells["repeats"] > 0]
    if st.empty:
        return None
    noisy = st[st["noisy"]]
    lines = ["## Timing noise", "",
             f"{len(st)} timed cells; median {int(st['repeats'].median())} repeats per cell; "
             f"{len(noisy)} cells ({100 * len(noisy) / len(st):.0f}%) vary more than "
             f"{NOISY_SPREAD:g}x between their fastest and slowest repeat."]
    if st["cpu_util"].notna().any():
        lines.append(f"CPU time / wall time over the repeats ranges {st['cpu_util'].min():.2f}-"
                     f"{st['cpu_util'].max():.2f} (1.0 = one core busy).")
    if len(noisy):
        lines += ["", "| problem | backend | variant | method | mode | N | threads | repeats | min s | median s | max/min |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in noisy.sort_values("time_spread", ascending=False, kind="mergesort").head(20).iterrows():
            threads = "" if pd.isna(r["threads"]) else f"{r['threads']:g}"
            lines.append(f"| {r['problem']} | {r['backend']} | {r['variant']} | {r['method']} | "
                         f"{r['mode']} | {r['n']} | {threads} | {r['repeats']} | {r['time_min_s']:.3g} | "
                         f"{r['time_median_s']:.3g} | {r['time_spread']:.2f} |")
    return "\n".join(lines) + "\n"
