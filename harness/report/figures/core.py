"""The eight figures of the reproduction, each a pure function of the results table.

Every figure joins on key columns (never row order), takes its colours from
:mod:`harness.report.figures.style`, and is written by :func:`harness.report.figures.canvas.save`
(``<name>.png``, ``<name>.svg``, the plotted data as ``<name>.csv``, the environment in a footnote). Our timings are
the median of a cell's timed repeats (the CSV also keeps the min, which is what the paper
reported). Published series are dashed and labelled with their GPU. A figure whose data the
run lacks is skipped with a reason instead of drawn.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from harness.results import paper as pd_
from harness.report.figures import style
from harness.report.figures.canvas import FigureContext, FigureInfo, log_axes, new_figure, save, tag
from harness.report.figures.figure1 import strongest_only
from harness.results.cells import (MATCH_KEYS, REFERENCE_BACKEND, cell_table,
                                 paper_speedups, series_id, speedup_table, sweep_cells)
from harness.report.figures.model import fit_time_model, trajectory_steps

#: The figures, in order: name -> title.
FIGURES: dict[str, str] = {
    "fig1_lorenz_fixed_time": "Lorenz, fixed step: time vs trajectories",
    "fig2_lorenz_adaptive_time": "Lorenz, adaptive: time vs trajectories",
    "fig3_speedup": "Speedup of the fused kernel over each peer",
    "fig4_launches_model": "Dispatches per solve (by kind) and a fixed vs per-step cost fit",
    "fig5_work_precision": "Work-precision: error vs time",
    "fig6_robertson": "Robertson (stiff): time vs trajectories",
    "fig7_sir": "SIR: time vs trajectories",
    "fig8_lockstep": "Lockstep cost: mean vs max accepted steps",
}

#: GPUs whose published series go into the Lorenz and Robertson figures.
PAPER_GPUS = ("Tesla V100", "Quadro RTX 5000")

def make_figures(df: pd.DataFrame, env: dict | None, out_dir: Path | str,
                 published: pd.DataFrame | None = None, *, dpi: int = 150) -> list[FigureInfo]:
    """Draw every figure from a results table.

    Args:
        df: the results table (one row per cell and timed repeat; see :mod:`harness.results.schema`).
        env: the run's environment fingerprint (any keys may be missing), or None.
        out_dir: folder for the figures (created if needed).
        published: the paper's timings from :func:`harness.results.paper.load_paper_data`; None
            or an empty table omits the published series and says so in each footnote.
        dpi: resolution of the PNG files.

    Returns:
        One :class:`FigureInfo` per entry of :data:`FIGURES`, in order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = cell_table(df)
    if published is None:
        published_note = "published series omitted: no published data supplied"
        published = pd_.empty_published()
    elif published.empty:
        where = published.attrs.get("source", "")
        published_note = "published series omitted: paper data folder " + (where or "not found")
    else:
        published_note = "dashed: published paper timings (min over repeats), labelled with their GPU"
    ctx = FigureContext(cells=cells, published=published, published_note=published_note, env=env or {},
                   devices=sorted(set(cells["device"]) - {""}), out_dir=out_dir, dpi=dpi)
    makers = (_fig1, _fig2, _fig3, _fig4, _fig5, _fig6, _fig7, _fig8)
    return [maker(ctx) for maker in makers]


# ---- drawing helpers ---------------------------------------------------------------------------

def _legend(ax, extra_handles: list | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    for h in extra_handles or []:
        handles.append(h)
        labels.append(h.get_label())
    if handles:
        ax.legend(handles, labels, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)


def key_legend(ax, frame: pd.DataFrame, published_labels: dict | None = None,
               backend_col: str = "backend", variant_col: str = "variant") -> None:
    """Two short legends instead of one entry per series: what colour, line, marker and fill
    mean (at most one entry per backend, tolerance, variant and dtype), then the paper's series."""
    handles = []
    for b in sorted(set(frame[backend_col]), key=lambda b: (b != REFERENCE_BACKEND, b)):
        handles.append(Line2D([], [], color=style.backend_colour(b), linewidth=2.5, label=style.backend_label(b)))
    if "mode" in frame:
        rtols = frame["rtol"] if "rtol" in frame else pd.Series(np.nan, index=frame.index)
        # keyed by text: NaN (fixed step) never equals itself, so a set of floats would not dedupe
        unique = {style.mode_text(m, r): (m, r) for m, r in zip(frame["mode"], rtols)}
        styles = sorted(unique.values(), key=lambda mr: (mr[0] == "adaptive", -(mr[1] if mr[1] == mr[1] else 0)))
        if len(styles) > 1:
            handles += [Line2D([], [], color="#555555", linestyle=style.mode_linestyle(m, r),
                               label=style.mode_text(m, r)) for m, r in styles]
    if "method" in frame and variant_col == "variant":
        combos = style.figure_combos(frame)
        if len(combos) > 1:
            handles += [Line2D([], [], color="#555555", linestyle="none",
                               marker=style.VARIANT_MARKERS[i % len(style.VARIANT_MARKERS)], label=c)
                        for i, c in enumerate(combos)]
    elif set(frame[variant_col]) - {""}:
        everything = sorted(set(frame[variant_col]))
        handles += [Line2D([], [], color="#555555", linestyle="none", marker=style.variant_marker(v, everything),
                           label=f"variant: {v or 'default'}") for v in everything]
    if "dtype" in frame and frame["dtype"].nunique() > 1:
        handles += [Line2D([], [], color="#555555", linestyle="none", marker="o",
                           markerfacecolor=style.dtype_fill(d, "#555555"), label=d)
                    for d in sorted(set(frame["dtype"]))]
    first = ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False) if handles else None
    if published_labels:
        if first is not None:
            ax.add_artist(first)
        extra = [Line2D([], [], **kw, label=label) for label, kw in sorted(published_labels.items())]
        ax.legend(handles=extra, fontsize=6.5, loc="lower left", bbox_to_anchor=(1.01, 0.0),
                  frameon=False, title="published (paper, GPU named)", title_fontsize=6.5)


def _series_labels(frame: pd.DataFrame) -> dict[str, str]:
    """Legend text per series: the backend, plus whatever differs between the series shown."""
    ids = series_id(frame)
    first = frame.assign(_id=ids).drop_duplicates("_id").set_index("_id")
    varying = {k for k in ("problem", "mode", "dtype", "device", "dt", "rtol", "atol")
               if first[k].astype(str).nunique() > 1}
    labels = {}
    for sid, row in first.iterrows():
        text = style.backend_label(row["backend"])
        if row["variant"]:
            text += f" [{row['variant']}]"
        text += f", {style.method_label(row['method'])}"
        for key in ("problem", "mode", "dtype", "device"):
            if key in varying:
                text += f", {row[key]}"
        if "dt" in varying and style.format_number(row["dt"]):
            text += f", dt={style.format_number(row['dt'])}"
        if ("rtol" in varying or "atol" in varying) and style.format_number(row["rtol"]):
            text += f", tol={style.format_number(row['rtol'])}"
            if row["atol"] != row["rtol"]:
                text += f"/{style.format_number(row['atol'])}"
        labels[sid] = text
    return labels


def _variants_by_backend(frame: pd.DataFrame) -> dict[str, list[str]]:
    return {b: sorted(set(g["variant"])) for b, g in frame.groupby("backend")}


def _skip(info: FigureInfo, reason: str) -> FigureInfo:
    info.skipped = reason
    return info


# ---- time vs trajectories (figures 1, 2, 6, 7) -------------------------------------------------

def _time_vs_n(ctx: FigureContext, name: str, problem: str, modes: tuple[str, ...],
               published: pd.DataFrame, what: str) -> FigureInfo:
    info = FigureInfo(name, FIGURES[name])
    cells = ctx.cells[(ctx.cells["problem"] == problem) & ctx.cells["mode"].isin(modes)]
    if cells.empty:
        return _skip(info, f"no {what} cells in this run")
    if not cells["success"].any():
        return _skip(info, f"every {what} cell failed or has failed trajectories (see omissions)")
    cells = sweep_cells(cells)
    ran = cells[cells["status"] == "ok"]
    if ran["threads"].nunique() > 1:   # one thread count (the run's largest), or lines mix two
        ran = ran[ran["threads"] == ran["threads"].max()]
    # each library at its strongest (variant, method) per setting; the variant is written at the
    # series' last point, so the legend needs one entry per library only
    ran = strongest_only(ran, ["backend", "mode", "rtol", "atol", "dtype", "device"], "time_median_s")
    labels = _series_labels(ran)
    combos = ["one marker"]
    fig, (ax,) = new_figure(ctx.dpi)
    rows = []
    marked_failure = False
    ids = series_id(ran)
    for sid in sorted(set(ids)):
        s = ran[ids == sid].sort_values("n")
        b, v, method = s["backend"].iloc[0], s["variant"].iloc[0], s["method"].iloc[0]
        kw = style.series_kw(b, v, method, combos + [style.combo_label(v, method)], s["mode"].iloc[0], s["rtol"].iloc[0],
                       s["dtype"].iloc[0])
        good = s[s["success"]]
        if b != REFERENCE_BACKEND and (v or method != "tsit5") and not good.empty:
            last = good.iloc[-1]
            # left of the last point, above it: inside the axes, clear of the legend
            ax.annotate(style.combo_label(v, method), (last["n"], last["time_median_s"]), xytext=(-3, 4),
                        textcoords="offset points", fontsize=5.5, color=kw["color"], ha="right")
        if not good.empty:
            # error bars: the spread (min..max) of the timed repeats
            yerr = [good["time_median_s"] - good["time_min_s"], good["time_max_s"] - good["time_median_s"]]
            tag(ax.errorbar(good["n"], good["time_median_s"], yerr=yerr, elinewidth=0.7, capsize=1.5, **kw), b)
        bad = s[~s["success"]]
        if not bad.empty and bad["time_median_s"].notna().any():
            ax.plot(bad["n"], bad["time_median_s"], linestyle="none", marker="x", markersize=6,
                    color=kw["color"], **({} if not good.empty else {"label": labels[sid]}))
            marked_failure = True
        for _, r in s.iterrows():
            rows.append(dict(source="this run", series=labels[sid], backend=b, variant=v,
                             method=method, mode=r["mode"], dtype=r["dtype"], device=r["device"],
                             dt=r["dt"], rtol=r["rtol"], atol=r["atol"], gpu="", implementation="",
                             n=int(r["n"]), time_median_s=r["time_median_s"],
                             time_min_s=r["time_min_s"], plotted_s=r["time_median_s"],
                             success=bool(r["success"]), status=r["status"],
                             failed_trajectories=r["failed_trajectories"], source_file="", note=""))
    paper_rows = _draw_published(ax, published)
    rows += paper_rows
    log_axes(ax, "trajectories N", "time per solve [s]\n(ours: median, bars min–max; paper: min)",
              f"{info.title} (each library's strongest variant)")
    published_labels = {}
    for r in paper_rows:
        published_labels.setdefault(r["series"], dict(color=style.published_colour(r["implementation"]),
                                                      linestyle="--", marker=style.gpu_marker(r["gpu"]),
                                                      markersize=3.5))
    key_legend(ax, ran.assign(variant="").drop(columns="method"), published_labels)
    if marked_failure:
        notes_x = "× marks a cell with failed trajectories (not drawn as a success)"
    else:
        notes_x = ""
    notes = _common_notes(ctx, published_used=not published.empty)
    if notes_x:
        notes.append(notes_x)
    failed = cells[cells["status"] != "ok"]
    if not failed.empty:
        notes.append(f"{len(failed)} cell(s) could not run and are not drawn (see the report's omissions)")
    return save(ctx, info, fig, _tidy(pd.DataFrame(rows)), notes)


def _draw_published(ax, published: pd.DataFrame) -> list[dict]:
    rows = []
    keys = ["gpu", "implementation", "method", "mode", "branch", "source_file"]
    methods = {k: sorted(set(g["method"])) for k, g in published.groupby(["gpu", "implementation"])}
    for key, g in published.groupby(keys, sort=True):
        gpu, impl, method, mode, branch, source_file = key
        g = g.sort_values("n")
        label = style.published_label(gpu, impl, method, branch)
        tag(ax.plot(g["n"], g["time_s"], linestyle=style.published_linestyle(method, methods[(gpu, impl)]),
                linewidth=1.0,
                color=style.published_colour(impl), marker=style.gpu_marker(gpu), markersize=3.5,
                alpha=0.8, label=label), "paper")
        for _, r in g.iterrows():
            rows.append(dict(source="paper", series=label, backend="", variant="", method=method,
                             mode=mode, dtype=r["dtype"], device="gpu" if gpu else "cpu",
                             dt=np.nan, rtol=np.nan, atol=np.nan, gpu=gpu, implementation=impl,
                             n=int(r["n"]), time_median_s=np.nan, time_min_s=r["time_s"],
                             plotted_s=r["time_s"], success=True, status="published",
                             failed_trajectories=np.nan, source_file=source_file, note=r["note"]))
    return rows


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Plotted data in a fixed order, so the CSV does not depend on the input's row order."""
    if frame.empty:
        return frame
    keys = [c for c in ("source", "series", "backend", "variant", "method", "mode", "dtype",
                        "device", "dt", "rtol", "atol", "gpu", "implementation", "n") if c in frame]
    return frame.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


def _common_notes(ctx: FigureContext, published_used: bool) -> list[str]:
    notes = []
    if published_used:
        notes.append(ctx.published_note + "; the paper's Python timings did not synchronise the device")
    elif ctx.published.empty:
        notes.append(ctx.published_note)
    return notes


def _published_lorenz(ctx: FigureContext, mode: str) -> pd.DataFrame:
    p = ctx.published
    if p.empty:
        return p
    impls = [pd_.KERNEL, pd_.JAX, pd_.TORCH, pd_.MPGOS, pd_.GPU_ARRAY]
    if "cpu" in ctx.devices:
        impls.append(pd_.CPU_THREADS)   # the paper's CPU run is the fair comparator on a CPU
    # One GPU (the V100) keeps the legend short; the RTX 5000 series are in the published files.
    gpu_ok = (p["gpu"] == PAPER_GPUS[0]) | p["implementation"].isin([pd_.GPU_ARRAY, pd_.CPU_THREADS])
    return p[(p["problem"] == "lorenz") & (p["mode"] == mode) & p["implementation"].isin(impls) & gpu_ok]


def _fig1(ctx: FigureContext) -> FigureInfo:
    return _time_vs_n(ctx, "fig1_lorenz_fixed_time", "lorenz", ("fixed",),
                      _published_lorenz(ctx, "fixed"), "Lorenz fixed-step")


def _fig2(ctx: FigureContext) -> FigureInfo:
    return _time_vs_n(ctx, "fig2_lorenz_adaptive_time", "lorenz", ("adaptive",),
                      _published_lorenz(ctx, "adaptive"), "Lorenz adaptive")


def _fig6(ctx: FigureContext) -> FigureInfo:
    p = ctx.published
    if not p.empty:
        p = p[(p["problem"] == "robertson") & p["gpu"].isin(PAPER_GPUS)]
    return _time_vs_n(ctx, "fig6_robertson", "robertson", ("fixed", "adaptive"), p, "Robertson")


def _fig7(ctx: FigureContext) -> FigureInfo:
    return _time_vs_n(ctx, "fig7_sir", "sir", ("fixed", "adaptive"), pd_.empty_published(), "SIR")


# ---- figure 3: speedup ---------------------------------------------------------------------------

def _fig3(ctx: FigureContext) -> FigureInfo:
    name = "fig3_speedup"
    info = FigureInfo(name, FIGURES[name])
    lorenz = ctx.cells[ctx.cells["problem"] == "lorenz"]
    if not (lorenz["success"] & (lorenz["backend"] == REFERENCE_BACKEND)).any():
        return _skip(info, "no successful fused-kernel Lorenz cell in this run")
    table = speedup_table(sweep_cells(lorenz))
    if not table.empty and table["threads"].nunique() > 1:
        # one thread count per figure (the run's largest, the headline's), or lines mix two
        table = table[table["threads"] == table["threads"].max()]
    if table.empty:
        return _skip(info, "no peer Lorenz cell shares its settings (mode, dtype, device, N, dt, "
                           "tolerances) with a successful fused-kernel cell")
    paper = paper_speedups(ctx.published)
    if not paper.empty:
        paper = paper[(paper["problem"] == "lorenz") & paper["gpu"].isin(PAPER_GPUS)
                      & paper["implementation"].isin([pd_.JAX, pd_.TORCH])]
    modes = [m for m in ("fixed", "adaptive") if (table["mode"] == m).any()]
    fig, axes = new_figure(ctx.dpi, nrows=len(modes))
    series_keys = ("mode", "dtype", "device", "dt", "rtol", "atol", "peer", "peer_variant",
                   "peer_method", "fused_method")
    rows = []
    for ax, mode in zip(axes, modes):
        # Each peer's strongest variant only (per dtype, device and tolerance): colour names the
        # peer, line style the tolerance; the variant drawn is in the CSV and the caption.
        t = strongest_only(table[table["mode"] == mode], ["peer", "dtype", "device", "rtol", "atol"],
                           "peer_s", "peer_variant", "peer_method")
        multi_dtype = t["dtype"].nunique() > 1 or t["device"].nunique() > 1
        ids = series_id(t, series_keys)
        for sid in sorted(set(ids)):
            s = t[ids == sid].sort_values("n")
            r0 = s.iloc[0]
            label = f"vs {style.backend_label(r0['peer'])}"
            if r0["peer_variant"]:
                label += f" [{r0['peer_variant']}]"
            label += f" ({style.method_label(r0['peer_method'])})"
            if multi_dtype:
                label += f", {r0['dtype']} {r0['device']}"
            if style.format_number(r0["rtol"]):
                label += f", tol={style.format_number(r0['rtol'])}"
            ax.plot(s["n"], s["speedup"], color=style.backend_colour(r0["peer"]),
                    linestyle=style.mode_linestyle(mode, r0["rtol"]),
                    marker=style.method_marker(r0["peer_method"]), markersize=3.5, linewidth=1.2)
            for _, r in s.iterrows():
                rows.append(dict(source="this run", series=label, **{k: r[k] for k in MATCH_KEYS},
                                 peer=r["peer"], peer_variant=r["peer_variant"],
                                 peer_method=r["peer_method"], fused_method=r["fused_method"],
                                 gpu="", fused_s=r["fused_s"], peer_s=r["peer_s"],
                                 speedup=r["speedup"], speedup_min=r["speedup_min"], note=r["note"]))
        legend_frame = t.assign(backend=t["peer"], variant="", dtype="float32")
        published_labels = {}
        pm = paper[paper["mode"] == mode] if not paper.empty else paper
        for key, g in (pm.groupby(["gpu", "implementation"], sort=True) if not pm.empty else []):
            gpu, impl = key
            g = g.sort_values("n")
            label = f"paper, {gpu}: {impl} / {pd_.KERNEL}"
            paper_kw = dict(linestyle=style.PUBLISHED_LINESTYLE, linewidth=1.0, color=style.published_colour(impl),
                            marker=style.gpu_marker(gpu), markersize=3.5, alpha=0.8)
            ax.plot(g["n"], g["speedup"], **paper_kw)
            published_labels[label] = paper_kw
            for _, r in g.iterrows():
                rows.append(dict(source="paper", series=label, problem="lorenz", mode=mode,
                                 dtype="float32", device="gpu", n=int(r["n"]), dt=np.nan, rtol=np.nan,
                                 atol=np.nan, peer=impl, peer_variant="", peer_method=r["method"],
                                 fused_method=r["kernel_method"], gpu=gpu, fused_s=r["kernel_s"],
                                 peer_s=r["peer_s"], speedup=r["speedup"], speedup_min=r["speedup"],
                                 note="ratio of the published minima"))
        ax.axhline(1.0, color="#999999", linewidth=0.8)
        log_axes(ax, "trajectories N", "peer time / fused-kernel time (medians)",
                  f"Lorenz, {mode}: fused-kernel speedup over each peer's strongest variant")
        key_legend(ax, legend_frame, published_labels)
    notes = _common_notes(ctx, published_used=not paper.empty)
    notes.append("ratio of median times at matching N, same device, problem, mode, dtype, dt and "
                 "tolerances; a different method, accuracy or step count is noted in the CSV and report")
    return save(ctx, info, fig, _tidy(pd.DataFrame(rows)), notes)


# ---- figure 4: launches and a fitted time model -------------------------------------------------

def _fig4(ctx: FigureContext) -> FigureInfo:
    name = "fig4_launches_model"
    info = FigureInfo(name, FIGURES[name])
    counted = ctx.cells["success"] & ctx.cells["launches"].notna() & (ctx.cells["launches"] > 0)
    cells = ctx.cells[counted]
    if cells.empty:
        return _skip(info, "no successful cell has a measured launch count")
    present = sorted(set(zip(cells["problem"], cells["mode"])))
    preferred = [("lorenz", "fixed"), ("lorenz", "adaptive")]
    problem, mode = next((pm for pm in preferred if pm in present), present[0])
    same = ctx.cells["success"] & (ctx.cells["problem"] == problem) & (ctx.cells["mode"] == mode)
    uncounted = sorted(set(ctx.cells[same & ~counted]["backend"]) - set(ctx.cells[same & counted]["backend"]))
    cells = sweep_cells(cells[(cells["problem"] == problem) & (cells["mode"] == mode)])
    if cells.empty or cells.groupby(series_id(cells))["n"].nunique().max() < 2:
        return _skip(info, "dispatches were counted at one N per series (a suite key launch_counts = 3 counts "
                           "them at three); the explainer section draws them with the other N estimated")
    cells = cells.assign(trajectory_steps=trajectory_steps(cells["n"], cells["steps_mean"],
                                                           cells["steps_max"], cells["step_control"]))
    labels = _series_labels(cells)
    variants = _variants_by_backend(cells)
    fig, (ax_l, ax_m) = new_figure(ctx.dpi, nrows=2)
    rows, fits = [], []
    unfitted = [f"{style.backend_label(b)}: no launch count recorded" for b in uncounted]
    ids = series_id(cells)
    for sid in sorted(set(ids)):
        s = cells[ids == sid].sort_values("n")
        b, v, method = s["backend"].iloc[0], s["variant"].iloc[0], s["method"].iloc[0]
        kw = dict(color=style.backend_colour(b), linestyle=style.variant_linestyle(v, variants[b]),
                  marker=style.method_marker(method), markersize=3.5, linewidth=1.2)
        kind = style.dispatch_kind(s["launch_counter"].iloc[0])
        first = not any(lab.startswith(style.backend_label(b) + " (") for lab in ax_l.get_legend_handles_labels()[1])
        tag(ax_l.plot(s["n"], s["launches"], label=f"{style.backend_label(b)} ({kind})" if first else "_nolegend_",
                      **kw), b)
        usable = s[s["trajectory_steps"].notna() & (s["trajectory_steps"] > 0)]
        if usable["n"].nunique() < 2:
            unfitted.append(f"{labels[sid]}: fewer than two points with step counts")
            fit_rows = usable.assign(predicted_s=np.nan, launch_term_s=np.nan, step_term_s=np.nan)
            fit = None
        else:
            fit, table = fit_time_model(usable.rename(columns={"time_median_s": "time_s"}))
            fit_rows = usable.merge(table[["n", "predicted_s", "launch_term_s", "step_term_s"]], on="n")
            # the decomposition: which share of the (fitted) time is the fixed per-dispatch cost
            total = table["launch_term_s"] + table["step_term_s"]
            tag(ax_m.plot(table["n"], 100 * table["launch_term_s"] / total, color=kw["color"],
                          marker=kw["marker"], markersize=3.5, linewidth=1.2,
                          linestyle=kw["linestyle"]), b)
            fits.append(dict(series=labels[sid], backend=b, variant=v, method=method, **fit))
        for _, r in fit_rows.iterrows():
            rows.append(dict(series=labels[sid], backend=b, variant=v, method=method,
                             problem=problem, mode=mode, dtype=r["dtype"], device=r["device"],
                             dt=r["dt"], rtol=r["rtol"], atol=r["atol"], n=int(r["n"]),
                             launches=r["launches"], steps_mean=r["steps_mean"],
                             steps_max=r["steps_max"], step_control=r["step_control"],
                             trajectory_steps=r["trajectory_steps"], time_median_s=r["time_median_s"],
                             predicted_s=r["predicted_s"], launch_term_s=r["launch_term_s"],
                             step_term_s=r["step_term_s"],
                             launch_cost_s=fit["launch_cost_s"] if fit else np.nan,
                             step_cost_s=fit["step_cost_s"] if fit else np.nan))
    log_axes(ax_l)
    ax_m.set_xscale("log")
    ax_m.set_ylim(-3, 103)
    ax_m.grid(True, alpha=0.3)
    ax_l.set_xlabel("trajectories N")
    ax_l.set_ylabel("dispatches per solve")
    ax_l.set_title(f"{problem}, {mode}: dispatches per solve, named by kind", fontsize=8)
    ax_m.set_xlabel("trajectories N")
    ax_m.set_ylabel("fixed per-dispatch share\nof the time [%] (fitted)")
    ax_m.set_title("fixed vs per-step cost: time ≈ dispatches·a + N·steps·b; "
                   "share of dispatches·a (colours as above)", fontsize=8)
    _legend(ax_l)
    notes = ["A FITTED MODEL, not a measurement: time ≈ launches × a + N × steps × b, a, b ≥ 0 by "
             "non-negative least squares on relative residuals per series; bytes/bandwidth and "
             "work/peak both scale with N × steps here, so b is their sum; steps = max per "
             "trajectory where lanes run in lockstep or share a step, else the mean"]
    notes += [f"not fitted: {u}" for u in unfitted]
    info.extra = {"problem": problem, "mode": mode, "fits": pd.DataFrame(fits), "unfitted": unfitted,
                  "kinds": {b: style.dispatch_kind(g["launch_counter"].iloc[0]) for b, g in cells.groupby("backend")}}
    return save(ctx, info, fig, _tidy(pd.DataFrame(rows)), notes)


# ---- figure 5: work-precision -------------------------------------------------------------------

def _fig5(ctx: FigureContext) -> FigureInfo:
    name = "fig5_work_precision"
    info = FigureInfo(name, FIGURES[name])
    c = ctx.cells
    c = c[c["success"] & c["max_rel_err"].notna() & (c["max_rel_err"] > 0)]
    if c.empty:
        return _skip(info, "no successful cell with a measured error")
    group = ["backend", "variant", "method", "mode", "dtype", "device"]
    c = c.assign(_setting=series_id(c, ("dt", "rtol", "atol")))
    # Choose the problem (Lorenz first) and the N where most settings were run.
    counts = (c.groupby(["problem", "n", *group])["_setting"].nunique().reset_index()
              .groupby(["problem", "n"])["_setting"].agg(["max", "sum"]).reset_index())
    counts = counts[counts["max"] >= 2]
    if counts.empty:
        return _skip(info, "no backend ran two or more step sizes or tolerances at one N")
    counts["_lorenz"] = counts["problem"] != "lorenz"
    best = counts.sort_values(["_lorenz", "sum", "n"], ascending=[True, False, False]).iloc[0]
    problem, n = best["problem"], int(best["n"])
    c = c[(c["problem"] == problem) & (c["n"] == n)]
    # each library's strongest variant per mode and dtype (the fastest at the most settings)
    c = strongest_only(c.assign(_n=c["n"], n=c["_setting"]), ["backend", "mode", "dtype", "device"],
                       "time_median_s").assign(n=lambda f: f["_n"]).drop(columns="_n")
    fig, (ax,) = new_figure(ctx.dpi)
    variants = _variants_by_backend(c)
    rows = []
    for key, s in c.groupby(group, sort=True):
        b, v, method, mode, dtype, device = key
        s = s.sort_values("time_median_s")
        label = f"{style.backend_label(b)}{f' [{v}]' if v else ''}, {style.method_label(method)}, {mode}"
        if c["dtype"].nunique() > 1:
            label += f", {dtype}"
        ax.plot(s["time_median_s"], s["max_rel_err"], color=style.backend_colour(b),
                linestyle=style.variant_linestyle(v, variants[b]), marker=style.method_marker(method),
                markersize=4, linewidth=1.0, label=label,
                markerfacecolor="none" if mode == "adaptive" else None)
        for _, r in s.iterrows():
            tag = f"dt={style.format_number(r['dt'])}" if mode == "fixed" else f"tol={style.format_number(r['rtol'])}"
            ax.annotate(tag, (r["time_median_s"], r["max_rel_err"]), fontsize=4.5,
                        textcoords="offset points", xytext=(3, 2), color="#555555")
            rows.append(dict(series=label, backend=b, variant=v, method=method, mode=mode, dtype=dtype,
                             device=device, problem=problem, n=n, dt=r["dt"], rtol=r["rtol"],
                             atol=r["atol"], time_median_s=r["time_median_s"],
                             time_min_s=r["time_min_s"], max_rel_err=r["max_rel_err"],
                             steps_mean=r["steps_mean"], rhs_evals_mean=r["rhs_evals_mean"]))
    log_axes(ax, "time per solve [s] (median)", "max relative error vs float64 reference",
              f"{problem}, N = {n}: work-precision (each library's strongest variant)")
    handles = [Line2D([], [], color=style.backend_colour(b), linewidth=2.5, label=style.backend_label(b))
               for b in sorted(set(c["backend"]), key=lambda b: (b != REFERENCE_BACKEND, b))]
    handles += [Line2D([], [], color="#555555", marker="o", linestyle="none", label="fixed step (points: dt)"),
                Line2D([], [], color="#555555", marker="o", markerfacecolor="none", linestyle="none",
                       label="adaptive (points: tolerance)")]
    ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    info.extra = {"problem": problem, "n": n}
    notes = ["each point is one cell: fixed-step cells differ in dt (filled markers), adaptive "
             "cells in tolerance (hollow markers); error over the reference subsample"]
    return save(ctx, info, fig, _tidy(pd.DataFrame(rows)), notes)


# ---- figure 8: lockstep cost -------------------------------------------------------------------

def _fig8(ctx: FigureContext) -> FigureInfo:
    name = "fig8_lockstep"
    info = FigureInfo(name, FIGURES[name])
    c = ctx.cells
    c = c[c["success"] & (c["mode"] == "adaptive") & c["steps_mean"].notna() & c["steps_max"].notna()]
    if c.empty:
        return _skip(info, "no successful adaptive cell with step counts")
    problems = sorted(set(c["problem"]), key=lambda p: (p != "lorenz", p))
    problem = problems[0]
    c = sweep_cells(c[c["problem"] == problem])
    c = c.assign(step_control=c["step_control"].where(c["step_control"] != "", "unknown"))
    # one variant per library and step-control scope (the default where it ran): the variants of a
    # library share its step control, and a legend entry each made the figure unreadable
    first = (c[["backend", "step_control", "variant"]].drop_duplicates()
             .sort_values("variant", key=lambda v: v.map(lambda x: (x != "", x)))
             .drop_duplicates(["backend", "step_control"]))
    c = c.merge(first, on=["backend", "step_control", "variant"])
    # One panel per tolerance; colour = backend (its step-control scope in the legend), solid
    # filled = mean, dotted hollow = max: at most one legend entry per backend and variant.
    tols = sorted(set(c["rtol"].dropna()), reverse=True) or [float("nan")]
    fig, axes = new_figure(ctx.dpi, nrows=len(tols), height=3.2)
    rows = []
    for ax, tol in zip(axes, tols):
        at = c[np.isclose(c["rtol"], tol)] if np.isfinite(tol) else c
        handles = []
        for (b, v, method, scope), s in at.groupby(["backend", "variant", "method", "step_control"], sort=True):
            s = s.sort_values("n")
            colour = style.backend_colour(b)
            if b == REFERENCE_BACKEND and scope == "per-trajectory" and (s["device"] == "cpu").all():
                # The CPU lane kernel runs 32-lane blocks until the block's slowest lane ends
                # (like a GPU warp): the per-block maximum, not the mean, is the work done.
                scope = "per 32-lane block (CPU): each block runs to its slowest lane"
            label = (f"{style.backend_label(b)}{f' [{v}]' if v else ''}, {style.method_label(method)}: {scope}")
            marker = style.variant_marker(v, sorted(set(c.loc[c["backend"] == b, "variant"])))
            tag(ax.plot(s["n"], s["steps_mean"], color=colour, marker=marker, markersize=3.5, linewidth=1.2,
                        linestyle="-"), b)
            tag(ax.plot(s["n"], s["steps_max"], color=colour, marker=marker, markersize=3.5, linewidth=1.0,
                        linestyle=":", markerfacecolor="none"), b)
            handles.append(Line2D([], [], color=colour, marker=marker, linewidth=2, label=label))
            for _, r in s.iterrows():
                rows.append(dict(series=label, backend=b, variant=r["variant"], method=r["method"],
                                 problem=problem, dtype=r["dtype"], device=r["device"], dt=r["dt"],
                                 rtol=r["rtol"], atol=r["atol"], step_control=r["step_control"], n=int(r["n"]),
                                 steps_mean=r["steps_mean"], steps_max=r["steps_max"],
                                 max_over_mean=r["steps_max"] / r["steps_mean"]
                                 if r["steps_mean"] > 0 else np.nan,
                                 time_median_s=r["time_median_s"]))
        handles += [Line2D([], [], color="#555555", linestyle="-", marker="o", label="mean steps"),
                    Line2D([], [], color="#555555", linestyle=":", marker="o", markerfacecolor="none",
                           label="max steps (lockstep/shared/block: the work done)")]
        worst = at.assign(r=at["steps_max"] / at["steps_mean"]).sort_values(["r", "backend"]).iloc[-1]
        log_axes(ax, "trajectories N", "accepted steps per trajectory",
                  f"{problem}, tol {tol:g}: the slowest lane takes up to {worst['r']:.2g}× the mean "
                  f"({style.backend_label(worst['backend'])}, N={worst['n']})", title_size=8)
        ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    info.extra = {"problem": problem}
    notes = ["solid/filled: mean accepted steps per trajectory; dotted/hollow: the maximum. Under "
             "lockstep, a shared step or the CPU kernel's 32-lane blocks the maximum is the work done"]
    return save(ctx, info, fig, _tidy(pd.DataFrame(rows)), notes)
