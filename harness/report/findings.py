"""What the report says its figures and its headline show: one sentence per figure, the verdict.

report.md, report.html and the README read these (report.html imports this module, never the
Markdown renderer). Every sentence is computed from a figure's plotted data or the headline rows.
"""
from __future__ import annotations

import pandas as pd

from harness.report.figures import style
from harness.report.figures.canvas import FigureInfo
from harness.results.headline import threads_label

#: Figures the short report shows (in order); the others go to the appendix.
REPORT_FIGURES = ("story0_time_vs_n", "story1_headline_speedup", "story2_fused_vs_replica", "story3_throughput",
                  "story4_equal_accuracy", "fig4_launches_model", "fig8_lockstep", "story5_first_solve")


def finding(info: FigureInfo) -> str:
    """The one-sentence finding of a figure, computed from its data."""
    if "finding" in info.extra:
        return info.extra["finding"]
    data = info.data
    if info.name == "fig4_launches_model" and data is not None and not data.empty:
        kinds = info.extra.get("kinds", {})
        per = data.groupby("backend")["launches"].max().sort_values(ascending=False)
        return ("Dispatches per solve, by kind: " + ", ".join(
            f"{style.backend_label(b)} {v:,.0f} {kinds.get(b, 'dispatches')}" for b, v in per.items())
            + "; a fixed cost per dispatch dominates small N.")
    if info.name == "fig8_lockstep" and data is not None and not data.empty:
        worst = data.loc[data["max_over_mean"].idxmax()]
        return (f"The slowest trajectory takes {worst['max_over_mean']:.3g}× the mean number of steps "
                f"({worst['series']}, N={worst['n']}); lockstep or shared stepping makes every lane pay it.")
    return info.title + "."



def verdict(table: pd.DataFrame) -> str:
    """A paragraph stating, from the headline rows, whether the fused design wins and where not."""
    if table.empty:
        return ("This run has no cell where the fused kernel and a peer library ran the same "
                "Lorenz settings, so it cannot test the claim.")
    fmt = style.format_ratio
    out = []
    for (device, threads), t in table.groupby([table["device"], table["threads"].fillna(-1)], sort=False):
        label = f"{threads_label(float('nan') if threads == -1 else threads)} on the {device}"
        peers = t[t["group"] == "peer"] if "group" in t.columns else t[~t["library"].isin(["cuda-cpp"])]
        if peers.empty:
            continue
        lo = peers.loc[peers["speedup"].idxmin()]
        hi = peers.loc[peers["speedup"].idxmax()]
        wins = peers[peers["speedup_lo"] > 1]
        losses = peers[peers["speedup_hi"] < 1]
        unclear = peers[(peers["speedup_lo"] <= 1) & (peers["speedup_hi"] >= 1)]
        mark = (lambda r: " ⚑" if bool(r.get("contended", False)) else "")
        text = (f"At {label}, the fused kernel beat the strongest variant of each library in "
                f"{len(wins)} of {len(peers)} comparisons beyond the spread of the repeats; its "
                f"smallest lead was {fmt(lo['speedup'])}{mark(lo)} over {style.backend_label(lo['library'])} "
                f"[{lo['variant'] or 'default'}] ({lo['mode']}, N={lo['n']}) and its largest "
                f"{fmt(hi['speedup'])}{mark(hi)} over {style.backend_label(hi['library'])} ({hi['mode']}, N={hi['n']}).")
        if len(losses):
            text += " It was slower in " + ", ".join(
                f"{r['library']} {r['mode']} N={r['n']} ({fmt(r['speedup'])})" for _, r in losses.iterrows()) + "."
        if len(unclear):
            text += (f" In {len(unclear)} comparison(s) the min/max bracket spans 1, so the repeats "
                     "do not separate the two.")
        if "contended" in peers.columns and peers["contended"].fillna(False).astype(bool).any():
            text += (f" ⚑ {int(peers['contended'].fillna(False).astype(bool).sum())} comparison(s) include a cell "
                     "measured while the machine was busy (contended); their ratios may be off.")
        differs = peers[peers["notes"].str.contains("work differs")]
        if len(differs):
            text += f" {len(differs)} row(s) did different amounts of work (marked)."
        out.append(text)
    devices = set(table["device"])
    if devices == {"cpu"}:
        out.append("Every cell here ran on a CPU: this tests the architectural argument (dispatches "
                   "per solve, lockstep stepping) on this machine, not the paper's 20–100× GPU figure.")
    return " ".join(out)
