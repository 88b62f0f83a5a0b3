"""Figure 1: time per solve against the number of trajectories N, the paper's figure for this run.

Log-log axes, a fixed-step and an adaptive panel (Lorenz, float32, the headline's settings at the
run's largest thread count), one colour per library from a colour-blind-safe palette
(:data:`LIBRARY_PALETTE`, Okabe & Ito), and per library only its strongest variant (solid) plus
the configuration the paper ran (dashed) where that is another variant. The paper's published
Tesla V100 series sit beside them in grey, each labelled at its end: the GPU times are never
mixed into our rows. A pure function of the cell table and the published table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.report.figures import style
from harness.report.figures.canvas import FigureContext, FigureInfo, log_axes, new_figure, save
from harness.results.headline import (AS_PAPER_RAN, HEADLINE_PROBLEM, PAPER_GPU, PAPER_TOLERANCE, CONTROLS,
                                      headline_settings, in_setting, library_order)

NAME = "story0_time_vs_n"
TITLE = "Time per solve vs N"

#: Okabe & Ito's colour-blind-safe palette, one colour per library (the C++ control: olive).
LIBRARY_PALETTE = {
    "fused": "#000000", "array": "#E69F00", "diffrax": "#0072B2", "torchdiffeq": "#D55E00",
    "torchode": "#CC79A7", "jax-handwritten": "#56B4E9", "torch-handwritten": "#882255",
    "scipy": "#009E73", "cuda-cpp": "#999933", "pallas": "#F0E442",
}
#: Published series: shades of grey (the kernel darkest), labelled at their right end.
PAPER_GREYS = ("#303030", "#707070", "#9a9a9a", "#bdbdbd")


def library_colour(lib: str) -> str:
    return LIBRARY_PALETTE.get(lib, style.backend_colour(lib))


def strongest_variant(cells: pd.DataFrame) -> tuple[str, str]:
    """``(variant, method)`` of one library's cells that is fastest at the most N (ties: more N
    run, then the lower median at the largest N both ran)."""
    keys = cells[["variant", "method"]].drop_duplicates().itertuples(index=False, name=None)
    best_at = cells.loc[cells.groupby("n")["time_median_s"].idxmin()]
    wins = best_at.groupby(["variant", "method"]).size()
    n_run = cells.groupby(["variant", "method"])["n"].nunique()
    return max(keys, key=lambda k: (wins.get(k, 0), n_run.get(k, 0), k == ("", "tsit5")))


def strongest_only(frame: pd.DataFrame, by: list[str], time_col: str, variant_col: str = "variant",
                   method_col: str = "method") -> pd.DataFrame:
    """The rows of ``frame`` whose (variant, method) is, within each ``by`` group, the one fastest
    at the most N (figure1.strongest_variant): a figure shows each library at its best, once."""
    keep = []
    for _, g in frame.groupby(by, sort=False, dropna=False):
        as_cells = g.rename(columns={variant_col: "variant", method_col: "method", time_col: "time_median_s"})
        variant, method = strongest_variant(as_cells)
        keep.append(g[(g[variant_col] == variant) & (g[method_col] == method)])
    return pd.concat(keep) if keep else frame


def series_table(cells: pd.DataFrame) -> pd.DataFrame:
    """The plotted series: one row per (mode, library, role, N) with the median time.

    ``role`` is "strongest" or "as the paper ran it" (drawn only when it is another variant)."""
    settings = [s for s in headline_settings(cells) if s.device == "cpu" or s.device == "gpu"]
    if not settings:
        return pd.DataFrame()
    device = settings[0].device
    top = [s for s in settings if s.device == device and not (np.isfinite(s.threads) and s.threads == 1
                                                               and len({x.threads for x in settings}) > 1)]
    rows = []
    for mode in ("fixed", "adaptive"):
        pick = [s for s in top if s.mode == mode]
        pick = sorted(pick, key=lambda s: (not np.isclose(s.rtol, PAPER_TOLERANCE), s.rtol))[:1]
        for s in pick:
            ok = in_setting(cells, s)
            ok = ok[ok["success"] & (ok["dtype"] == "float32")]
            for lib in sorted(set(ok["backend"]), key=lambda b: (b != "fused", library_order(b))):
                lib_cells = ok[ok["backend"] == lib]
                fused_like = lib_cells[lib_cells["method"] == "tsit5"]
                variant, method = strongest_variant(fused_like if not fused_like.empty else lib_cells)
                chosen = [("strongest", variant, method)]
                paper_variant = AS_PAPER_RAN.get(lib)
                if paper_variant is not None and paper_variant != variant:
                    as_ran = lib_cells[lib_cells["variant"] == paper_variant]
                    if not as_ran.empty:
                        chosen.append(("as the paper ran it", paper_variant, strongest_variant(as_ran)[1]))
                for role, v, m in chosen:
                    g = lib_cells[(lib_cells["variant"] == v) & (lib_cells["method"] == m)].sort_values("n")
                    rows += [dict(problem=s.problem, mode=mode, rtol=s.rtol, threads=s.threads, library=lib, role=role, variant=v,
                                  method=m, n=int(r["n"]), time_s=r["time_median_s"], contended=bool(r.get("contended", False)),
                                  source="this run") for _, r in g.iterrows()]
    return pd.DataFrame(rows)


def published_series(published: pd.DataFrame | None, modes: list[str]) -> pd.DataFrame:
    if published is None or published.empty:
        return pd.DataFrame(columns=["gpu", "implementation", "mode", "problem", "method", "dtype", "n", "time_s"])
    p = published[(published["problem"] == HEADLINE_PROBLEM) & (published["gpu"] == PAPER_GPU)
                  & published["mode"].isin(modes)]
    return p.sort_values(["mode", "implementation", "n"], kind="mergesort")


def _label(lib: str, role: str) -> str:
    """Legend text: one entry per library (the variant is written at the end of its line)."""
    return style.backend_label(lib) + (" as the paper ran it (dashed)" if role != "strongest" else "")


def _variant_note(variant: str, method: str) -> str:
    """What is written at the end of a line: its variant and a method other than Tsit5."""
    parts = [variant] if variant else []
    if method != "tsit5":
        parts.append(style.method_label(method))
    return ", ".join(parts)


def make_figure1(ctx: FigureContext) -> FigureInfo:
    """Draw Figure 1 into ``ctx.out_dir`` (skipped, with the reason, when the run has no Lorenz sweep)."""
    info = FigureInfo(NAME, TITLE)
    table = series_table(ctx.cells)
    if table.empty:
        info.skipped = "no Lorenz float32 fused-kernel sweep in this run"
        return info
    modes = [m for m in ("fixed", "adaptive") if (table["mode"] == m).any()]
    problem = str(table["problem"].iloc[0])
    # the paper published Lorenz: beside another problem its series would be a false comparison
    paper = published_series(ctx.published if problem == HEADLINE_PROBLEM else None, modes)
    fig, axes = new_figure(ctx.dpi, ncols=len(modes), width=5.2, height=4.2)
    handles: dict[str, object] = {}
    for ax, mode in zip(axes, modes):
        t = table[table["mode"] == mode]
        for (lib, role), g in t.groupby(["library", "role"], sort=False):
            r0 = g.iloc[0]
            (line,) = ax.plot(g["n"], g["time_s"], color=library_colour(lib),
                              linestyle="-" if role == "strongest" else "--",
                              marker="o" if lib == "fused" else ("s" if role == "strongest" else "^"),
                              markersize=4 if lib == "fused" else 3.2, linewidth=2.2 if lib == "fused" else 1.3,
                              zorder=3 if lib == "fused" else 2)
            handles.setdefault(_label(lib, role), line)
            note = _variant_note(r0["variant"], r0["method"])
            if note:
                last = g.iloc[-1]
                ax.annotate(note, (last["n"], last["time_s"]), xytext=(3, 3), textcoords="offset points",
                            fontsize=6, color=library_colour(lib))
        for i, (impl, g) in enumerate(paper[paper["mode"] == mode].groupby("implementation", sort=True)):
            grey = PAPER_GREYS[i % len(PAPER_GREYS)]
            (line,) = ax.plot(g["n"], g["time_s"], color=grey, linestyle=":", marker="*", markersize=3,
                              linewidth=1.0, zorder=1)
            last = g.iloc[-1]
            ax.annotate(impl.split(" (")[0], (last["n"], last["time_s"]), xytext=(3, 0), textcoords="offset points",
                        fontsize=6.5, color=grey, va="center")
            handles.setdefault(f"paper, {PAPER_GPU} (published, grey; label at the end)", line)
        rtol = t["rtol"].iloc[0]
        what = "fixed step, dt = 1e-3" if mode == "fixed" else f"adaptive, tol = {rtol:g}"
        log_axes(ax, "trajectories N", "time per solve (s)",
                 f"{problem.capitalize()} float32, {what}")
        ax.set_xlim(right=ax.get_xlim()[1] * 8)  # room for the published labels
    threads = table["threads"].iloc[0]
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", ncol=2, fontsize=7,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    fig.suptitle("Time per solve vs N: this run (colours; each library's strongest variant solid, named at "
                 "its last point unless default)" + (f" and the paper's {PAPER_GPU} (grey)" if not paper.empty else ""),
                 fontsize=8.5)
    info.extra["finding"] = finding(table, threads)
    data = pd.concat([table, paper.assign(source="paper", library=paper["implementation"], role="published",
                                          variant="", contended=False)[
        ["mode", "library", "role", "variant", "method", "n", "time_s", "source", "gpu"]]], ignore_index=True) \
        if not paper.empty else table
    notes = [f"{'every core' if not np.isfinite(threads) else f'{int(threads)} threads'}; median of the repeats"]
    return save(ctx, info, fig, data, notes)


def finding(table: pd.DataFrame, threads: float) -> str:
    """One sentence from the plotted data: the fused kernel's time against the fastest other
    library's at the smallest and largest N both ran."""
    out = []
    for mode, t in table[table["role"] == "strongest"].groupby("mode", sort=False):
        fused = t[t["library"] == "fused"].set_index("n")["time_s"]
        others = t[(t["library"] != "fused") & ~t["library"].isin(CONTROLS)]
        common = sorted(set(fused.index) & set(others["n"]))
        if not common:
            continue
        parts = []
        for n in (common[0], common[-1]):
            at = others[others["n"] == n].sort_values("time_s").iloc[0]
            parts.append(f"N={n:,}: {style.format_seconds(fused[n])} vs {style.format_seconds(at['time_s'])} "
                         f"for the fastest other library ({style.backend_label(at['library'])})")
        out.append(f"{mode}: " + "; ".join(parts))
    return ("Time per solve against N (log-log), " + ". ".join(out) + "." if out
            else "Time per solve against N (log-log).")


__all__ = ["LIBRARY_PALETTE", "NAME", "TITLE", "finding", "make_figure1", "series_table", "strongest_only", "strongest_variant"]
