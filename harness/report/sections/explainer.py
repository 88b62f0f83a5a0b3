"""Why one launch wins, for a reader with no HPC background: the explainer section of a run's report.

Built from the run's own rows (Lorenz, the run's largest thread count): how many dispatches each
code makes per solve, a fitted time model *time ≈ dispatches × a + N × steps × b* per library with
the share of the time spent on dispatch (a two-panel figure), why lockstep stepping costs adaptive
ensembles more work, where the fused kernel stops winning (the Lorenz-96 companion run, measured,
and the GPU register table, modelled), and the fair point that the array style is the right design
for large dense linear algebra. Every paragraph states a number from the run.

Dispatch counts are measured where the run counted them. A suite counts them at the first
``launch_counts`` N of each series (harness.run.suites); where a series was counted at fewer than
three N, the counts at its other N are *estimated* from the count it has (fixed step: the same
program at every N; adaptive: scaled by the step count the ensemble shares) and labelled so.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.report.figures.canvas import log_axes, new_figure, write_files
from harness.report.figures.figure1 import library_colour
from harness.report.figures.model import LOCKSTEP_SCOPES, fit_time_model, trajectory_steps
from harness.report.figures.style import backend_label, dispatch_kind, format_seconds
from harness.report.sections import sizes
from harness.results.headline import (CONTROLS, HEADLINE_PROBLEM, PAPER_TOLERANCE, headline_settings, in_setting,
                                      library_order)

if TYPE_CHECKING:  # the registry imports this module; the context type is only annotated here
    from harness.report.sections import SectionContext

NAME = "explainer_dispatch_model"
#: Measured counts at fewer N than this: the fit uses estimated counts (and says so).
MIN_COUNTED_N = 3
ANCHOR = "why-one-launch-wins"
#: The large N the dispatch share is stated at (the headline's), or a library's largest below it.
LARGE_N = 32768


def applies(cells: pd.DataFrame) -> bool:
    """True when the run has Lorenz fused cells and at least one dispatch count to explain."""
    lor = cells[(cells["problem"] == HEADLINE_PROBLEM) & cells["success"]]
    return bool((lor["backend"] == "fused").any() and lor["launches"].notna().any())


def _steps(cells: pd.DataFrame) -> pd.Series:
    lock = cells["step_control"].isin(LOCKSTEP_SCOPES)
    return cells["steps_max"].where(lock, cells["steps_mean"])


def _best_counted_variant(c: pd.DataFrame) -> pd.DataFrame:
    """Per library, the rows of the one variant whose dispatches were counted at the most N (on a
    tie, the one that reaches the largest N, then the default variant): a model fitted to two
    points says nothing, and the dispatch share is stated at the headline's large N, so a library
    whose default stops early is explained by a longer series."""
    keep = []
    for _, g in c.groupby("backend", sort=False):
        def rank(item):
            variant, v = item
            return (-v.loc[v["launches"].notna(), "n"].nunique(), -v["n"].max(), variant != "")
        keep.append(min(g.groupby("variant", sort=False), key=rank)[1])
    return pd.concat(keep) if keep else c


def series_points(cells: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Per library (the variant counted at the most N), the Lorenz points of ``mode`` at the largest
    thread count: n, time, dispatches (measured or estimated), trajectory-steps and ``counted``."""
    settings = [st for st in headline_settings(cells) if st.mode == mode]
    if not settings:
        return pd.DataFrame()
    if mode == "adaptive":
        settings = sorted(settings, key=lambda st: not np.isclose(st.rtol, PAPER_TOLERANCE))
    c = in_setting(cells, settings[0])
    c = _best_counted_variant(c[c["success"] & (c["dtype"] == "float32")])
    tsit5 = c.groupby("backend")["method"].transform(lambda m: (m == "tsit5").any())
    c = c[~tsit5 | (c["method"] == "tsit5")]
    out = []
    for (lib, method), g in c.groupby(["backend", "method"], sort=False):
        g = g.sort_values("n")
        counted = g[g["launches"].notna()]
        if counted.empty:
            continue
        steps = _steps(g)
        ref = counted.iloc[0]
        ref_steps = _steps(counted).iloc[0]
        est = ref["launches"] * (steps / ref_steps if mode == "adaptive" and ref_steps > 0 else 1.0)
        out.append(pd.DataFrame({
            "library": lib, "variant": g["variant"].iloc[0], "method": method, "n": g["n"].astype(int), "time_s": g["time_median_s"],
            "dispatches": g["launches"].where(g["launches"].notna(), est.round()),
            "counted": g["launches"].notna(), "counter": dispatch_kind(str(ref.get("launch_counter", ""))),
            "trajectory_steps": trajectory_steps(g["n"], g["steps_mean"], g["steps_max"], g["step_control"])}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def fit_all(points: pd.DataFrame) -> pd.DataFrame:
    """One fitted model per library: a (s per dispatch), b (s per trajectory-step), the dispatch
    share of the modelled time at each N, and whether the counts were measured at >= 3 N."""
    rows = []
    for (lib, variant, method), g in points.groupby(["library", "variant", "method"], sort=False):
        g = g[g["trajectory_steps"].notna() & (g["time_s"] > 0)]
        if g["n"].nunique() < 2:
            continue
        fit, table = fit_time_model(g.rename(columns={"dispatches": "launches"}))
        share = table["launch_term_s"] / table["predicted_s"]
        counted = g.sort_values("n", kind="mergesort")["counted"].to_numpy()
        for (_, t), sh, c in zip(table.iterrows(), share, counted):
            rows.append(dict(library=lib, variant=variant, method=method, n=int(t["n"]), time_s=t["time_s"],
                             dispatches=t["launches"], predicted_s=t["predicted_s"], dispatch_share=sh,
                             a_s=fit["launch_cost_s"], b_s=fit["step_cost_s"], fit_err=fit["median_rel_err"],
                             measured_counts=int(g["counted"].sum()), measured=bool(c)))
    return pd.DataFrame(rows)


def _figure(ctx: "SectionContext", fits: pd.DataFrame) -> str | None:
    if fits.empty:
        return None
    fig, (ax1, ax2) = new_figure(120, ncols=2, width=5.0, height=3.8)
    for lib, g in sorted(fits.groupby("library"), key=lambda x: library_order(x[0]) if x[0] != "fused" else (-1,)):
        kw = dict(color=library_colour(lib), marker="o", markersize=3.5, linewidth=2 if lib == "fused" else 1.3)
        ax1.plot(g["n"], g["dispatches"], label=_label(fits, lib), **kw)
        est = g[g["measured"] == False]  # noqa: E712 - a boolean column
        ax1.plot(est["n"], est["dispatches"], linestyle="none", marker="o", markersize=3.5,
                 markerfacecolor="white", markeredgecolor=library_colour(lib))
        ax2.plot(g["n"], 100 * g["dispatch_share"], **kw)
    log_axes(ax1, "trajectories N", "dispatches per solve (count)",
             "Separate operations per solve (filled: counted; hollow: estimated)")
    ones = fits[fits["dispatches"] <= 1]
    if not ones.empty:
        ax1.annotate("one call per solve:\n" + ", ".join(backend_label(x).split(" (")[0] for x in dict.fromkeys(ones["library"])),
                     (ones["n"].min(), 1.0), xytext=(0, 8), textcoords="offset points", fontsize=6.5)
    ax2.set_xscale("log")
    ax2.set_ylim(-3, 103)
    ax2.grid(True, alpha=0.3)
    ax2.set_xlabel("trajectories N")
    ax2.set_ylabel("share of the time spent on dispatch (%)")
    ax2.set_title("time ≈ dispatches × a + N × steps × b (fitted)", fontsize=9)
    fig.legend(*ax1.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
               fontsize=7, frameon=False)
    write_files(fig, ctx.run_dir / "figures", NAME, fits)
    return f"figures/{NAME}.png"


def _label(frame: pd.DataFrame, lib: str) -> str:
    """The library's label, with the variant its series ran when that is not the default."""
    variant = str(frame.loc[frame["library"] == lib, "variant"].iloc[0]) if "variant" in frame else ""
    return backend_label(lib) + (f", {variant}" if variant else "")


def _share_at(fits: pd.DataFrame, lib: str, n: int) -> float:
    g = fits[(fits["library"] == lib) & (fits["n"] == n)]
    return float(g["dispatch_share"].iloc[0]) if len(g) else float("nan")


def _dispatch_paragraphs(points: pd.DataFrame, fits: pd.DataFrame) -> list[str]:
    small = int(points["n"].min())
    at = points[points["n"] == small].sort_values("dispatches")
    fused = at[at["library"] == "fused"]
    peers = at[(at["library"] != "fused") & ~at["library"].isin(CONTROLS)]
    lines = [f"**Dispatches per solve.** Every time a library hands one operation (add two arrays, evaluate one "
             "stage) to the processor, it pays a fixed cost to set it up, whatever the size of the arrays. The fused "
             "kernel runs the whole solve, every step of every trajectory, as one operation: "
             f"{fused['dispatches'].iloc[0]:,.0f} {fused['counter'].iloc[0]} per solve here (Lorenz, fixed step, "
             f"N = {small:,}), against " + ", ".join(f"{r['dispatches']:,.0f} {r['counter']} for {_label(points, r['library'])}"
                                                    for _, r in peers.iterrows())
             + ". A JAX solve compiled by XLA is one call from Python, but inside it XLA:CPU still steps through "
             "its operations one by one; its fitted fixed cost per call below carries that overhead."]
    if not fits.empty:
        big = LARGE_N if (fits["n"] == LARGE_N).any() else int(fits["n"].max())
        shares = []
        for lib in dict.fromkeys(fits.sort_values("library", key=lambda s: s.map(library_order))["library"]):
            own = int(fits[fits["library"] == lib]["n"].max())
            lo, hi = _share_at(fits, lib, small), _share_at(fits, lib, min(own, big))
            shares.append(f"{_label(fits, lib)} {100 * lo:.0f}% at N = {small:,} and {100 * hi:.0f}% at N = {min(own, big):,}")
        estimated = sorted(set(fits[fits["measured_counts"] < MIN_COUNTED_N]["library"]))
        note = ("" if not estimated else
                f" Counts of {', '.join(_label(fits, x) for x in estimated)} were measured at fewer than "
                f"{MIN_COUNTED_N} N in this run; at the other N they are *estimated* (fixed step runs the same "
                "program at every N); a suite with `launch_counts = 3` measures them.")
        lines.append("**Where the time goes.** Fitting *time ≈ dispatches × a + N × steps × b* to each library's "
                     "times (a: seconds per dispatch; b: seconds per trajectory-step) gives the share of the time "
                     "spent on dispatch: " + "; ".join(shares) + ". At small N almost all of an array-style "
                     "solve is fixed cost per dispatch, which is why one launch wins there; at large N the work "
                     "itself dominates and the gap narrows to how well each code uses memory and vector units." + note)
    return lines


def _lockstep_paragraph(cells: pd.DataFrame) -> str | None:
    c = cells[(cells["problem"] == HEADLINE_PROBLEM) & cells["success"] & (cells["mode"] == "adaptive")
              & (cells["backend"] == "fused") & (cells["variant"] == "") & cells["steps_max"].notna()]
    if c.empty:
        return None
    r = c.loc[(c["steps_max"] / c["steps_mean"]).idxmax()]
    extra = r["steps_max"] / r["steps_mean"]
    shared = cells[(cells["problem"] == HEADLINE_PROBLEM) & cells["success"] & (cells["mode"] == "adaptive")
                   & cells["step_control"].isin(LOCKSTEP_SCOPES) & (cells["n"] == r["n"])
                   & np.isclose(cells["rtol"].fillna(-1), r["rtol"] if np.isfinite(r["rtol"]) else -1)]
    seen = (f" The array-style codes that share one step size did {shared['steps_mean'].median():,.0f} steps per "
            "trajectory at the same setting." if not shared.empty else "")
    return ("**Why adaptive ensembles cost the array style more work.** An adaptive solver picks each step's size "
            "from the error it sees. In the fused kernel every trajectory picks its own: at N = "
            f"{int(r['n']):,} (tol {r['rtol']:g}) they took {r['steps_mean']:,.0f} steps on average and the slowest "
            f"{r['steps_max']:,.0f}. An array-style solve steps all trajectories together (in lockstep), so every "
            f"one of them takes as many steps as the hardest: {extra:.2f}× the work of the fused kernel before any "
            "dispatch cost." + seen)


def _limits_paragraphs(ctx: "SectionContext", fits: pd.DataFrame) -> list[str]:
    out = []
    size_run = next((r for r in (ctx.run, *ctx.companions) if sizes.applies(r.cells)), None)
    if size_run is not None:
        text = sizes.readme_paragraph(size_run.path, size_run.cells)
        if text:
            out.append("**Where the fused kernel stops winning** (*measured* on this CPU, Lorenz-96 with d "
                       "coupled equations per trajectory, from the companion run; *modelled* for the GPU): "
                       + text.split("**", 2)[-1].strip())
    first = sizes.first_spill_d()
    if first is not None:
        out.append(f"On a GPU each trajectory's state must fit in one thread's registers; the compiled kernel "
                   f"(*static machine code, no GPU time*) first spills to slower local memory at d = {first} "
                   "equations: above that size the one-thread-per-trajectory design loses its advantage.")
    arr = fits[fits["library"] == "array"] if not fits.empty else fits
    if not arr.empty:
        big = arr.loc[arr["n"].idxmax()]
        out.append("**The fair point.** The array style is the right design when each operation carries a lot of "
                   f"work: already at N = {int(big['n']):,} our array-style replica spends only "
                   f"{100 * big['dispatch_share']:.0f}% of its time on dispatch, and for large dense linear algebra "
                   "(one dispatch = a whole matrix product, tuned by the vendor's BLAS) that cost vanishes while a "
                   "one-thread-per-trajectory kernel cannot share work between threads. Fused kernels win for many "
                   "small independent systems; arrays win for few large ones.")
    return out


def report_section(ctx: "SectionContext") -> str | None:
    """The explainer (None when the run has nothing to explain)."""
    cells = ctx.cells
    if not applies(cells):
        return None
    points = series_points(cells, "fixed")
    if points.empty:
        return None
    fits = fit_all(points)
    png = _figure(ctx, fits)
    lines = ["## Why one launch wins", "",
             "A reader's guide, with this run's own numbers (Lorenz, float32, the run's largest thread count).", ""]
    lines += [p + "\n" for p in _dispatch_paragraphs(points, fits)]
    if png:
        lines += [f"![Dispatches per solve and the share of time spent on them]({png})", "",
                  "*Left:* dispatches per solve against N (counts; estimated where not measured, see above). "
                  "*Right:* the fitted share of each library's time spent on dispatch. Times: "
                  + ", ".join(f"{_label(fits, lib)} a = {format_seconds(g['a_s'].iloc[0])} per dispatch"
                              for lib, g in fits.groupby("library", sort=False) if g["a_s"].iloc[0] > 0) + ".", ""]
    lock = _lockstep_paragraph(cells)
    if lock:
        lines += [lock, ""]
    lines += [p + "\n" for p in _limits_paragraphs(ctx, fits)]
    return "\n".join(lines)


__all__ = ["ANCHOR", "NAME", "applies", "fit_all", "report_section", "series_points"]
