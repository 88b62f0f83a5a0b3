"""The report's headline figures, each a pure function of the results table with a stated finding.

* ``headline_speedup``: fused over each library's strongest variant vs N (bars: min/max bracket);
* ``fused_vs_replica``: the paper's EnsembleGPUKernel-vs-EnsembleGPUArray control, in Python:
  time, dispatches and ns per trajectory-step vs N;
* ``throughput``: ns per trajectory-step vs N for every library's strongest variant, with the
  hardware floor only where a measured peak is in the run folder;
* ``equal_accuracy``: speedup read off the work-precision data at equal error;
* ``first_solve``: time to first solve (compile + run) beside the warm time.

The title of each is its finding, computed from the data. Files are written like every other
figure (PNG, SVG, plotted CSV; see :mod:`harness.report.figures.core`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.results.headline import CONTROLS, PAPER_GPU, headline_rows, headline_settings, in_setting
from harness.report.figures import style
from harness.results.cells import paper_speedups
from harness.report.figures.canvas import FigureContext, FigureInfo, log_axes, new_figure, save
from harness.report.figures.core import key_legend
from harness.report.figures.style import combo_label, figure_combos
from harness.report.figures.canvas import tag
from harness.report.figures.figure1 import make_figure1
from harness.report.figures.model import trajectory_steps

#: name -> title used when the figure is skipped (a drawn figure's title states its finding).
STORY_FIGURES = {
    "story0_time_vs_n": "Time per solve vs N",
    "story1_headline_speedup": "Fused kernel over each library's strongest variant",
    "story2_fused_vs_replica": "Fused kernel vs its array-style replica",
    "story3_throughput": "Throughput: ns per trajectory-step",
    "story4_equal_accuracy": "Speedup at equal accuracy",
    "story5_first_solve": "Time to first solve",
}

#: A measured peak written into the run folder (by a peak-FLOP microbenchmark), if any:
#: {"ns_per_trajectory_step": float, "how": "..."}; without it no floor is drawn.
PEAK_FILE = "peak.json"

_fmt_x = style.format_ratio
_fmt_t = style.format_seconds


def make_story_figures(ctx: FigureContext, run_dir: Path | None = None) -> list[FigureInfo]:
    """Every story figure, in :data:`STORY_FIGURES` order (a skipped one carries its reason).

    ``run_dir`` is read only for a measured peak (:data:`PEAK_FILE`)."""
    Path(ctx.out_dir).mkdir(parents=True, exist_ok=True)
    cells = ctx.cells
    makers = (_headline_speedup, _fused_vs_replica, _throughput, _equal_accuracy, _first_solve)
    return [make_figure1(ctx)] + [m(ctx, cells, run_dir) for m in makers]


def _skip(name: str, reason: str) -> FigureInfo:
    return FigureInfo(name, STORY_FIGURES[name], skipped=reason)


def _tidy(rows: list[dict], keys: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame.sort_values(keys, kind="mergesort").reset_index(drop=True)


# ---- 1: headline speedup vs N -----------------------------------------------------------------

def _headline_speedup(ctx, cells, run_dir) -> FigureInfo:
    name = "story1_headline_speedup"
    settings = [s for s in headline_settings(cells) if not np.isfinite(s.threads) or s.threads != 1]
    settings = [s for s in settings if s.device == settings[0].device] if settings else settings
    if not settings:
        return _skip(name, "no Lorenz fused-kernel sweep in this run")
    tables = []
    for s in settings:
        ns = sorted(set(cells[(cells["problem"] == "lorenz") & (cells["backend"] == "fused")
                              & (cells["mode"] == s.mode) & (cells["device"] == s.device)]["n"]))
        t = headline_rows(cells, s, ctx.published, ns=ns)
        if not t.empty:
            tables.append(t.assign(rtol=s.rtol))
    if not tables:
        return _skip(name, "no library ran the fused kernel's Lorenz settings")
    table = pd.concat(tables, ignore_index=True)
    modes = [m for m in ("fixed", "adaptive") if (table["mode"] == m).any()]
    fig, axes = new_figure(ctx.dpi, nrows=len(modes), height=3.4)
    paper = paper_speedups(ctx.published)
    rows = []
    for ax, mode in zip(axes, modes):
        t = table[table["mode"] == mode]
        for (lib, rtol), g in t.groupby(["library", "rtol"], dropna=False, sort=True):
            g = g.sort_values("n")
            kw = dict(color=style.backend_colour(lib), linestyle=style.mode_linestyle(mode, rtol),
                      marker="o", markersize=3.5, linewidth=1.3)
            tag(ax.errorbar(g["n"], g["speedup"], yerr=[g["speedup"] - g["speedup_lo"], g["speedup_hi"] - g["speedup"]],
                            elinewidth=0.7, capsize=1.5, **kw), lib)
            for _, r in g.iterrows():
                rows.append(dict(source="this run", mode=mode, rtol=rtol, library=lib, variant=r["variant"],
                                 method=r["method"], n=int(r["n"]), speedup=r["speedup"],
                                 speedup_lo=r["speedup_lo"], speedup_hi=r["speedup_hi"], notes=r["notes"], gpu=""))
        published = {}
        if not paper.empty:
            pm = paper[(paper["problem"] == "lorenz") & (paper["mode"] == mode) & (paper["gpu"] == PAPER_GPU)]
            for impl, g in pm.groupby("implementation", sort=True):
                g = g.sort_values("n")
                kw = dict(color=style.published_colour(impl), linestyle="--", marker="*", markersize=3.5)
                tag(ax.plot(g["n"], g["speedup"], linewidth=1.0, **kw), "paper")
                published[f"{PAPER_GPU}: {impl} / EnsembleGPUKernel (tol 1e-8)" if mode == "adaptive"
                          else f"{PAPER_GPU}: {impl} / EnsembleGPUKernel"] = kw
                for _, r in g.iterrows():
                    rows.append(dict(source="paper", mode=mode, rtol=np.nan, library=impl, variant="",
                                     method=r["method"], n=int(r["n"]), speedup=r["speedup"],
                                     speedup_lo=np.nan, speedup_hi=np.nan, notes="ratio of published minima",
                                     gpu=PAPER_GPU))
        ax.axhline(1.0, color="#999999", linewidth=0.8)
        peers = t[t["group"] == "peer"] if (t["group"] == "peer").any() else t   # the C++ control is no peer
        lo = peers.loc[peers["speedup"].idxmin()]
        log_axes(ax, "trajectories N", "peer time / fused time\n(medians; bars: min/max bracket)",
                  f"{mode}: fused leads every peer by ≥ {_fmt_x(lo['speedup'])} "
                  f"(least: {style.backend_label(lo['library'])}, N={lo['n']})" if lo["speedup"] > 1 else
                  f"{mode}: {style.backend_label(lo['library'])} is faster than fused at N={lo['n']} "
                  f"({_fmt_x(lo['speedup'])})",
                  title_size=8)
        # every series here is drawn with one marker: the legend explains colour and line only
        key_legend(ax, t.assign(backend=t["library"], variant="", dtype="float32").drop(columns="method"),
                   published)
    notes = ["each library at its strongest variant at each N (lowest median time), same method "
             "where it ran it, same threads; the variant chosen per N is in the CSV",
             f"paper: {PAPER_GPU} ratios (GPU, not this machine); adaptive ratios are at tol 1e-8"]
    info = FigureInfo(name, "Fused kernel over each library's strongest variant")
    info.extra["finding"] = _headline_finding(table)
    return save(ctx, info, fig, _tidy(rows, ["source", "mode", "library", "rtol", "n"]), notes)


def _headline_finding(table: pd.DataFrame) -> str:
    parts = []
    for mode, t in table[table["group"] == "peer"].groupby("mode", sort=False):
        lo, hi = t.loc[t["speedup"].idxmin()], t.loc[t["speedup"].idxmax()]
        parts.append(f"{mode}: {_fmt_x(lo['speedup'])} (over {style.backend_label(lo['library'])}, N={lo['n']}) to "
                     f"{_fmt_x(hi['speedup'])} (over {style.backend_label(hi['library'])}, N={hi['n']})")
    return ("Peer time / fused time over each library's strongest variant spans " + "; ".join(parts)
            + " (the hand-written C++ control is drawn, not counted).")


# ---- 2: fused vs replica -----------------------------------------------------------------------

def _strongest_per_n(frame: pd.DataFrame) -> pd.DataFrame:
    """The fastest cell at each N (ties broken by name, so row order never matters)."""
    ordered = frame.sort_values(["n", "time_median_s", "variant", "method"], kind="mergesort")
    return ordered.drop_duplicates("n", keep="first").reset_index(drop=True)


def _fused_vs_replica(ctx, cells, run_dir) -> FigureInfo:
    name = "story2_fused_vs_replica"
    c = cells[(cells["problem"] == "lorenz") & (cells["mode"] == "fixed") & cells["success"]
              & (cells["method"] == "tsit5") & ~(cells["threads"] == 1)]
    f = c[(c["backend"] == "fused") & (c["variant"] == "")]
    a = c[(c["backend"] == "array") & (c["variant"] == "")]
    if f.empty or a.empty:
        return _skip(name, "needs Lorenz fixed-step Tsit5 cells of both the fused kernel and the replica")
    # the sweep's step size only (other dt at one N are work-precision points), one cell per N
    dt = f["dt"].mode().iloc[0]
    f, a = (_strongest_per_n(x[np.isclose(x["dt"], dt)]) for x in (f, a))
    if f.empty or a.empty:
        return _skip(name, "the fused kernel and the replica share no fixed-step sweep")
    fig = Figure(figsize=(10.5, 3.4), dpi=ctx.dpi)
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(wspace=0.35)
    rows = []
    for backend, g in (("fused", f), ("array", a)):
        g = g.sort_values("n")
        steps = trajectory_steps(g["n"], g["steps_mean"], g["steps_max"], pd.Series("none", index=g.index))
        ns_step = g["time_median_s"] / steps * 1e9
        kw = dict(color=style.backend_colour(backend), marker="o", markersize=3.5, linewidth=1.3,
                  label=style.backend_label(backend))
        axes[0].errorbar(g["n"], g["time_median_s"], yerr=[g["time_median_s"] - g["time_min_s"], g["time_max_s"] - g["time_median_s"]],
                         elinewidth=0.7, capsize=1.5, **kw)
        # fixed step runs the same program at every N: a count made at one N holds at all of them
        counted = g["launches"].notna()
        known = g["launches"].dropna()
        dispatches = g["launches"].fillna(known.iloc[0]) if len(known) else g["launches"]
        axes[1].plot(g["n"], dispatches, **kw)
        axes[1].plot(g["n"][~counted], dispatches[~counted], linestyle="none", marker="o", markersize=3.5,
                     markerfacecolor="white", markeredgecolor=kw["color"])
        axes[2].plot(g["n"], ns_step, **kw)
        for (_, r), nss, d, c in zip(g.iterrows(), ns_step, dispatches, counted):
            rows.append(dict(backend=backend, n=int(r["n"]), time_median_s=r["time_median_s"], time_min_s=r["time_min_s"],
                             time_max_s=r["time_max_s"], dispatches=d, dispatches_counted=bool(c),
                             ns_per_trajectory_step=nss))
    data = _tidy(rows, ["backend", "n"])
    both = data.pivot(index="n", columns="backend", values="time_median_s").dropna()
    ratio = both["array"] / both["fused"]
    disp = data.groupby("backend")["dispatches"].median()
    for ax, ylabel in zip(axes, ("time per solve [s]", "dispatches per solve", "ns per trajectory-step")):
        log_axes(ax, "trajectories N", ylabel)
    axes[0].set_title(f"replica {_fmt_x(ratio.iloc[0])} slower at N={ratio.index[0]},\n"
                      f"{_fmt_x(ratio.iloc[-1])} at N={ratio.index[-1]}", fontsize=8)
    axes[1].set_title(f"{disp.get('array', np.nan):,.0f} array operations\nvs "
                      f"{disp.get('fused', np.nan):,.0f} kernel call per solve (hollow: not counted,\n"
                      "same program at every N)", fontsize=8)
    ns = data.pivot(index="n", columns="backend", values="ns_per_trajectory_step").dropna()
    axes[2].set_title(f"same arithmetic: {ns['array'].iloc[-1]:.3g} vs {ns['fused'].iloc[-1]:.3g} ns\n"
                      f"per trajectory-step at N={ns.index[-1]}", fontsize=8)
    axes[0].legend(fontsize=6.5, frameon=False)
    notes = ["Lorenz, Tsit5, fixed dt: both run the same tableau and controller (solvers/tableaus.py); "
             "time bars: min–max of the repeats; the replica's dispatches are NumPy array operations"]
    info = FigureInfo(name, "Fused kernel vs its array-style replica (the paper's Kernel vs Array control)")
    info.extra["finding"] = (f"With the same tableau and controller, the array-style replica is "
                             f"{_fmt_x(ratio.iloc[0])} slower than the fused kernel at N={ratio.index[0]} and "
                             f"{_fmt_x(ratio.iloc[-1])} at N={ratio.index[-1]}, dispatching "
                             f"{disp.get('array', np.nan):,.0f} array operations per solve against one kernel call.")
    return save(ctx, info, fig, data, notes)


# ---- 3: throughput ------------------------------------------------------------------------------

def measured_floor(run_dir: Path | None) -> tuple[float, str]:
    """(ns per trajectory-step floor, how it was measured) from the run folder, or (nan, why not)."""
    path = Path(run_dir) / PEAK_FILE if run_dir is not None else None
    if path is None or not path.is_file():
        return float("nan"), f"no measured peak in the run folder ({PEAK_FILE}), so no hardware floor is drawn"
    try:
        data = json.loads(path.read_text())
        return float(data["ns_per_trajectory_step"]), str(data.get("how", PEAK_FILE))
    except (ValueError, KeyError, TypeError) as exc:
        return float("nan"), f"{PEAK_FILE} unreadable ({type(exc).__name__}), so no floor is drawn"


def _throughput(ctx, cells, run_dir) -> FigureInfo:
    name = "story3_throughput"
    c = cells[(cells["problem"] == "lorenz") & (cells["mode"] == "fixed") & cells["success"]
              & ~(cells["threads"] == 1) & cells["steps_mean"].notna()]
    if c.empty:
        return _skip(name, "no successful Lorenz fixed-step cell with step counts")
    c = c[np.isclose(c["dt"], c["dt"].mode().iloc[0])]
    fig, (ax,) = new_figure(ctx.dpi, height=3.6)
    rows = []
    for lib, g in c.groupby("backend", sort=True):
        # one method per library (Tsit5 where it ran it): a cheaper tableau is not more throughput
        g = g[g["method"] == ("tsit5" if (g["method"] == "tsit5").any() else sorted(g["method"])[0])]
        best = _strongest_per_n(g)
        if best["n"].nunique() < 2 and lib != "fused":
            continue
        nss = best["time_median_s"] / (best["n"] * best["steps_mean"]) * 1e9
        tag(ax.plot(best["n"], nss, color=style.backend_colour(lib), marker="o", markersize=3.5, linewidth=1.3), lib)
        for (_, r), v in zip(best.iterrows(), nss):
            rows.append(dict(backend=lib, variant=r["variant"], method=r["method"], n=int(r["n"]),
                             ns_per_trajectory_step=v, time_median_s=r["time_median_s"], steps_mean=r["steps_mean"]))
    if not rows:  # e.g. a run without fused cells whose peers ran at one N each
        return _skip(name, "no library ran this setting at two or more N, and the fused kernel did not run it")
    data = _tidy(rows, ["backend", "n"])
    floor, how = measured_floor(run_dir)
    notes = ["each library at its fastest variant per N, Tsit5 where it ran it (else its method, see the CSV); "
             "ns per trajectory-step = median time / (N × mean steps)"]
    if np.isfinite(floor):
        ax.axhline(floor, color="#000000", linestyle=(0, (1, 1)), linewidth=1.0)
        notes.append(f"dotted line: measured hardware floor {floor:.3g} ns ({how})")
    else:
        notes.append(how)
    fused = data[data["backend"] == "fused"]
    best_f = fused.loc[fused["ns_per_trajectory_step"].idxmin()] if not fused.empty else None
    others = data[(data["backend"] != "fused") & ~data["backend"].isin(CONTROLS)]   # the C++ control is no peer
    title = "Throughput"
    if best_f is not None and not others.empty:
        o = others.loc[others["ns_per_trajectory_step"].idxmin()]
        title = (f"fused reaches {best_f['ns_per_trajectory_step']:.3g} ns per trajectory-step (N={best_f['n']}); "
                 f"best peer {style.backend_label(o['backend'])} {o['ns_per_trajectory_step']:.3g} ns (N={o['n']})")
    log_axes(ax, "trajectories N", "ns per trajectory-step (median)", title, title_size=8)
    key_legend(ax, data.assign(variant="").drop(columns="method"))
    info = FigureInfo(name, "Throughput: ns per trajectory-step vs N")
    info.extra["finding"] = title[0].upper() + title[1:] + "."
    return save(ctx, info, fig, data, notes)


# ---- 4: speedup at equal accuracy ------------------------------------------------------------------

def _interp_loglog(x: np.ndarray, y: np.ndarray, at: float) -> float:
    """y at x=at on the piecewise log-log line through (x, y); NaN outside the range (no extrapolation)."""
    order = np.argsort(x)
    lx, ly = np.log(x[order]), np.log(y[order])
    if not (lx[0] <= np.log(at) <= lx[-1]):
        return float("nan")
    return float(np.exp(np.interp(np.log(at), lx, ly)))


def _equal_accuracy(ctx, cells, run_dir) -> FigureInfo:
    name = "story4_equal_accuracy"
    c = cells[(cells["problem"] == "lorenz") & (cells["mode"] == "adaptive") & cells["success"]
              & (cells["err"] > 0) & ~(cells["threads"] == 1)]
    if c.empty:
        return _skip(name, "no successful adaptive Lorenz cell with a measured error")
    counts = c.groupby("n")["rtol"].nunique()
    n = int(counts.sort_values(kind="mergesort").index[-1])
    if counts.max() < 2:
        return _skip(name, "no N with two or more tolerances (work-precision data)")
    c = c[c["n"] == n]
    f = c[(c["backend"] == "fused") & (c["variant"] == "")]
    if f["rtol"].nunique() < 2:
        return _skip(name, f"the fused kernel ran fewer than two tolerances at N={n}")
    fe, ft = f["err"].to_numpy(), f["time_median_s"].to_numpy()
    rows = []
    for (lib, variant, method), g in c[c["backend"] != "fused"].groupby(["backend", "variant", "method"], sort=True):
        for _, r in g.iterrows():
            fused_t = _interp_loglog(fe, ft, r["err"])
            rows.append(dict(backend=lib, variant=variant, method=method, n=n, rtol=r["rtol"], err=r["err"],
                             err_kind=r["err_kind"], peer_s=r["time_median_s"], fused_s_at_equal_err=fused_t,
                             speedup=r["time_median_s"] / fused_t if np.isfinite(fused_t) else np.nan))
    data = _tidy(rows, ["backend", "variant", "method", "rtol"])
    usable = data[data["speedup"].notna()] if not data.empty else data
    if usable.empty:
        return _skip(name, f"no peer's error at N={n} lies inside the fused kernel's error range")
    fig, (ax,) = new_figure(ctx.dpi, height=3.4)
    combos = figure_combos(usable)
    for (lib, variant, method), g in usable.groupby(["backend", "variant", "method"], sort=True):
        g = g.sort_values("err")
        marker = style.VARIANT_MARKERS[combos.index(combo_label(variant, method)) % len(style.VARIANT_MARKERS)]
        tag(ax.plot(g["err"], g["speedup"], color=style.backend_colour(lib), marker=marker, markersize=4,
                    linewidth=1.2), lib)
    ax.axhline(1.0, color="#999999", linewidth=0.8)
    lo = usable.loc[usable["speedup"].idxmin()]
    log_axes(ax, "error of the peer's solve, in units of the tolerance (max |u − ref| / (atol + rtol·|ref|))\n"
                 "(the fused time is read at the same error)",
              "peer time / fused time at equal error",
              f"At equal accuracy (N={n}) the fused kernel is ≥ {_fmt_x(lo['speedup'])} faster "
              f"(least: {style.backend_label(lo['backend'])} at error {lo['err']:.2g} tolerances)" if lo["speedup"] > 1 else
              f"At equal accuracy (N={n}) {lo['backend']} is faster at error {lo['err']:.2g}", title_size=8)
    key_legend(ax, usable)
    notes = ["fused time interpolated log-log on its work-precision curve at each peer point's error "
             "(no extrapolation; points outside the fused range are left out, see the CSV); "
             "error = max_scaled_err where measured, else max relative error"]
    info = FigureInfo(name, "Speedup at equal accuracy (from the work-precision data)")
    hi = usable.loc[usable["speedup"].idxmax()]
    info.extra["finding"] = (f"Read at equal error (N={n}, adaptive), the fused kernel is "
                             f"{_fmt_x(lo['speedup'])} to {_fmt_x(hi['speedup'])} faster; the least lead is "
                             f"over {lo['backend']} at error {lo['err']:.2g}.")
    return save(ctx, info, fig, data, notes)


# ---- 5: time to first solve ----------------------------------------------------------------------

def _first_solve(ctx, cells, run_dir) -> FigureInfo:
    name = "story5_first_solve"
    fixed = [s for s in headline_settings(cells) if s.mode == "fixed"]
    # one bar per backend, variant and method: the headline's fixed setting at its largest thread count
    c = in_setting(cells, fixed[0]) if fixed else cells.iloc[0:0]
    c = c[c["success"]]
    if c.empty:
        return _skip(name, "no successful Lorenz fixed-step cell")
    n = int(c["n"].min())
    c = c[c["n"] == n].sort_values(["backend", "variant", "method"])
    first = c["compile_s"] + c["time_median_s"]  # compile_s = first call minus the median repeat (harness.measure.clock)
    rows = [dict(backend=r["backend"], variant=r["variant"], method=r["method"], n=n, warm_s=r["time_median_s"],
                 compile_s=r["compile_s"], first_solve_s=fs)
            for (_, r), fs in zip(c.iterrows(), first) if np.isfinite(fs)]
    data = _tidy(rows, ["backend", "variant", "method"])
    if data.empty:
        return _skip(name, "no cell recorded its compile time")
    fig, (ax,) = new_figure(ctx.dpi, height=0.28 * len(data) + 1.2)
    labels = [f"{style.backend_label(b)}{f' [{v}]' if v else ''}{'' if m == 'tsit5' else f', {style.method_label(m)}'}"
              for b, v, m in zip(data["backend"], data["variant"], data["method"])]
    y = np.arange(len(data))
    ax.barh(y, data["first_solve_s"], color=[style.backend_colour(b) for b in data["backend"]], alpha=0.45,
            label="first solve (compile + run)")
    ax.barh(y, data["warm_s"], color=[style.backend_colour(b) for b in data["backend"]], label="warm solve (median)")
    ax.set_yticks(y, labels, fontsize=6.5)
    ax.set_xscale("log")
    ax.grid(True, axis="x", alpha=0.3)
    slow = data.loc[data["first_solve_s"].idxmax()]
    fused = data[data["backend"] == "fused"]
    if (fused["method"] == "tsit5").any():
        fused = fused[fused["method"] == "tsit5"]
    title = f"Time to first solve at N={n}: slowest {style.backend_label(slow['backend'])} {_fmt_t(slow['first_solve_s'])}"
    if not fused.empty and slow["backend"] != "fused":
        title += f"; fused kernel {_fmt_t(fused['first_solve_s'].iloc[0])}"
    elif not fused.empty:
        title += f", {_fmt_t(slow['warm_s'])} once compiled"
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("time (s, log scale)")
    ax.legend(fontsize=6.5, frameon=False, loc="lower right")
    notes = ["light bar: first call (compile + one solve), dark: warm median; the first cell of a sweep "
             "pays the compile; later N may reuse a cached kernel, so this uses the smallest N"]
    info = FigureInfo(name, "Time to first solve (compile) vs warm solve")
    info.extra["finding"] = title + "."
    return save(ctx, info, fig, data, notes)


