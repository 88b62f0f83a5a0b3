"""The report's appendix: the claim, every speedup, the other figures read aloud, accuracy,
omissions, the settings of every backend and the environment (``report_settings.md``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.figures import style
from harness.report.figures.canvas import FigureInfo
from harness.report.figures.core import PAPER_GPUS
from harness.report.findings import REPORT_FIGURES
from harness.report.mdtext import err_text, md_table, num_text, peer_text, settings_text, value_range
from harness.results import paper as pd_
from harness.results.cells import REFERENCE_BACKEND, paper_ratio, paper_speedups, speedup_table

#: The report the appendix belongs to, and the appendix itself.
REPORT_FILE = "report.md"
APPENDIX_FILE = "report_settings.md"

#: The ensemble sizes the speedup table always tries (plus the largest N both sides reached).
KEY_NS = (8, 8192)

_fmt_t = style.format_seconds
_fmt_x = style.format_ratio


def render_appendix(cells: pd.DataFrame, env: dict, figures: list[FigureInfo],
                    published: pd.DataFrame, run_dir: Path, env_note: str = "") -> str:
    """The appendix: every speedup, the other figures read aloud, accuracy, omissions, settings."""
    speedups = speedup_table(cells)
    paper = paper_speedups(published)
    devices = sorted(set(cells["device"]) - {""})
    parts = [
        "# Appendix: settings, accuracy, every speedup and the environment",
        f"Companion of [{REPORT_FILE}]({REPORT_FILE}). Times are medians of a cell's timed repeats; "
        "the paper reported minima, so the tables also give the ratio of minima.",
        _claim_section(cells, speedups, paper, env, devices),
        _speedup_section(speedups, paper),
        _figures_section([f for f in figures if f.name not in REPORT_FIGURES], run_dir),
        _accuracy_section(cells, speedups),
        _omissions_section(cells, figures),
        _settings_section(cells),
        _environment_section(env, env_note, devices, published),
    ]
    return "\n\n".join(p.strip() for p in parts if p) + "\n"


def _claim_section(cells, speedups, paper, env, devices) -> str:
    lines = ["## The claim",
             "Utkarsh et al. (CMAME 2024, arXiv:2304.06835) report that DiffEqGPU.jl's fused "
             "EnsembleGPUKernel (one GPU kernel per ensemble solve, one thread per trajectory) solves "
             "ensembles of small ODEs 20–100× faster than vmapped JAX/diffrax and batched "
             "PyTorch/torchdiffeq on a GPU."]
    if not paper.empty:
        sentences = []
        for (gpu, mode, impl), g in paper[(paper["problem"] == "lorenz")
                                          & paper["implementation"].isin([pd_.JAX, pd_.TORCH])].groupby(
                ["gpu", "mode", "implementation"], sort=True):
            lo, hi = g.loc[g["speedup"].idxmin()], g.loc[g["speedup"].idxmax()]
            sentences.append(f"- Lorenz, {mode}, {gpu}: {impl} / {pd_.KERNEL} {_fmt_x(lo['speedup'])} "
                             f"(N={lo['n']}) to {_fmt_x(hi['speedup'])} (N={hi['n']})")
        if sentences:
            lines.append("In the published timing files (ratios of published minima at the same N on "
                         "the same GPU; the paper's Python timings did not synchronise the device):"
                         "\n\n" + "\n".join(sentences))
    else:
        lines.append("The published timing files were not found, so the paper's own ratios are not shown.")
    gpu = dict(style.environment_fields(env)).get("GPU", "")
    where = ", ".join(devices) + (f" ({gpu})" if gpu and "gpu" in devices else "")
    if speedups.empty:
        has_fused = (cells["backend"] == REFERENCE_BACKEND).any()
        lines.append(f"**This run** ({where or 'no device'}) cannot test the claim: "
                     + ("no peer cell shares its settings with a successful fused-kernel cell."
                        if has_fused else "it has no fused-kernel cells."))
        return "\n\n".join(lines)
    found = []
    # one range per tolerance and fused method: a range never merges different comparisons
    for (problem, mode, device, peer, variant, method, fused_method, rtol), g in speedups.groupby(
            ["problem", "mode", "device", "peer", "peer_variant", "peer_method", "fused_method", "rtol"],
            sort=True, dropna=False):
        lo, hi = g.loc[g["speedup"].idxmin()], g.loc[g["speedup"].idxmax()]
        span = (f"{_fmt_x(lo['speedup'])} (N={lo['n']})" if len(g) == 1 else
                f"{_fmt_x(lo['speedup'])} (N={lo['n']}) to {_fmt_x(hi['speedup'])} (N={hi['n']})")
        tol = f" tol {num_text(rtol)}" if mode == "adaptive" and num_text(rtol) else ""
        vs = f" (fused {style.method_label(fused_method)})" if fused_method != method else ""
        found.append(f"- {problem}, {mode}{tol}, {device}: over {peer_text(peer, variant, method)}{vs} {span}")
    lines.append(f"**This run** ({where}) measured the fused kernel's speedup (ratio of medians over "
                 "every pair of cells with matching settings):\n\n" + "\n".join(found))
    if "gpu" not in devices:
        lines.append("This run has no GPU cells: the paper's claim is about GPUs, so these CPU numbers "
                     "test the architectural argument (launches per solve, lockstep stepping) on this "
                     "device, not the 20–100× figure itself.")
    return "\n\n".join(lines)


def _speedup_section(speedups, paper) -> str:
    lines = ["## Speedups at key N",
             "Fused-kernel speedup = peer time / fused-kernel time at the same problem, mode, dtype, "
             "device, N, dt and tolerances. Rows at N = 8, 8192 and the largest N both reached. The "
             "paper's columns are its published ratio for the corresponding implementation over "
             "EnsembleGPUKernel at the same N and GPU (blank where the paper has no such file)."]
    if speedups.empty:
        lines.append("No comparison is possible in this run (see the omissions).")
        return "\n\n".join(lines)
    group = ["dtype", "device", "dt", "rtol", "atol", "peer", "peer_variant", "peer_method", "fused_method"]
    for (problem, mode), sub in speedups.groupby(["problem", "mode"], sort=True):
        rows = []
        for _, g in sub.groupby(group, sort=True, dropna=False):
            ns = sorted({n for n in KEY_NS if n in set(g["n"])} | {int(g["n"].max())})
            for n in ns:
                r = g[g["n"] == n].iloc[0]
                papers = [paper_ratio(paper, r["peer"], problem, mode, n, gpu, r["fused_method"])
                          for gpu in PAPER_GPUS]
                paper_notes = sorted({note for _, note in papers if note})
                note = "; ".join(x for x in (r["note"], *paper_notes) if x)
                rows.append([f"{r['dtype']}, {r['device']}", settings_text(r["dt"], r["rtol"], r["atol"], mode),
                             peer_text(r["peer"], r["peer_variant"], r["peer_method"]),
                             style.method_label(r["fused_method"]), n, _fmt_t(r["fused_s"]),
                             _fmt_t(r["peer_s"]), _fmt_x(r["speedup"]), _fmt_x(r["speedup_min"]),
                             *("" if not np.isfinite(p) else _fmt_x(p) for p, _ in papers),
                             note])
        lines.append(f"### {problem}, {mode}")
        lines.append(md_table(["dtype, device", "settings", "peer, method", "fused method", "N", "fused",
                             "peer", "speedup (medians)", "speedup (mins)",
                             *(f"paper, {g}" for g in PAPER_GPUS), "note"], rows))
    return "\n\n".join(lines)


def _figures_section(figures: list[FigureInfo], run_dir: Path) -> str:
    lines = ["## Figures"]
    readers = {"fig1_lorenz_fixed_time": _read_time, "fig2_lorenz_adaptive_time": _read_time,
               "fig6_robertson": _read_time, "fig7_sir": _read_time, "fig3_speedup": _read_speedup,
               "fig4_launches_model": _read_model, "fig5_work_precision": _read_work_precision,
               "fig8_lockstep": _read_lockstep}
    for number, info in enumerate(figures, start=1):
        lines.append(f"### Figure {number}: {info.title}")
        if info.skipped:
            lines.append(f"Skipped: {info.skipped}.")
            continue
        links = {p.suffix: p.relative_to(run_dir).as_posix() if p.is_relative_to(run_dir) else str(p)
                 for p in info.paths}
        lines.append(f"![{info.title}]({links['.png']})")
        lines.append(f"Files: [SVG]({links['.svg']}), [plotted data (CSV)]({links['.csv']}).")
        reader = readers.get(info.name)
        if reader is not None:
            lines.append(reader(info))
        if info.notes:
            lines.append("Notes: " + "; ".join(info.notes) + ".")
    return "\n\n".join(lines)


# ---- readings: one paragraph per figure, computed from its plotted data ------------------------------

def _read_time(info: FigureInfo) -> str:
    data = info.data
    ours = data[(data["source"] == "this run") & data["success"].astype(bool)]
    if ours.empty:
        return "No successful cell of this run is drawn."
    series_n = ours.groupby("series")["n"].apply(set)
    common = set.intersection(*series_n) if len(series_n) else set()
    sentences = []
    for label, n in (("smallest", min(common) if common else None),
                     ("largest", max(common) if common else None)):
        if n is None or (label == "largest" and n == min(common)):
            continue
        at = ours[ours["n"] == n].sort_values(["time_median_s", "series"])
        fused = at[at["backend"] == REFERENCE_BACKEND]
        if not fused.empty:
            # the base is the fused series running the method most peers ran (like for like)
            peer_methods = at.loc[at["backend"] != REFERENCE_BACKEND, "method"]
            same = fused[fused["method"].isin(peer_methods.mode())] if len(peer_methods) else fused
            f = (same if not same.empty else fused).iloc[0]
            others = [f"{r['series']} {_fmt_t(r['time_median_s'])} ({_fmt_x(r['time_median_s'] / f['time_median_s'])})"
                      for _, r in at.iterrows() if r["series"] != f["series"]]
            text = f"At N={n} the {f['series']} took {_fmt_t(f['time_median_s'])}"
            sentences.append(text + (" vs " + ", ".join(others) if others else "") + ".")
        else:
            best = at.iloc[0]
            others = [f"{r['series']} {_fmt_t(r['time_median_s'])}" for _, r in at.iloc[1:].iterrows()]
            sentences.append(f"At N={n} the fastest was {best['series']} ({_fmt_t(best['time_median_s'])})"
                             + ("; " + ", ".join(others) if others else "") + ".")
    if not common:
        sentences.append("The series share no N; each is drawn over the N it reached.")
    for series, g in ours.groupby("series", sort=True):
        g = g.sort_values("n")
        if len(g) >= 2:
            lo, hi = g.iloc[0], g.iloc[-1]
            growth = hi["time_median_s"] / lo["time_median_s"]
            scale = hi["n"] / lo["n"]
            sentences.append(f"{series}: {_fmt_t(lo['time_median_s'])} at N={lo['n']} to "
                             f"{_fmt_t(hi['time_median_s'])} at N={hi['n']} ({_fmt_x(growth)} the time "
                             f"for {_fmt_x(scale)} the trajectories).")
    paper = data[data["source"] == "paper"]
    if not paper.empty and common:
        n = min(common)
        at = paper[paper["n"] == n].sort_values("series")
        if not at.empty:
            sentences.append(f"Published minima at N={n}: " + ", ".join(
                f"{r['series']} {_fmt_t(r['plotted_s'])}" for _, r in at.iterrows()) + ".")
    flagged = data[(data["source"] == "this run") & ~data["success"].astype(bool)]
    if not flagged.empty:
        sentences.append(f"{len(flagged)} cell(s) ran but had failed trajectories and are marked ×, "
                         "not drawn as successes: " + ", ".join(
                             f"{r['series']} at N={r['n']}" for _, r in flagged.iterrows()) + ".")
    return " ".join(sentences)


def _read_speedup(info: FigureInfo) -> str:
    data = info.data
    ours = data[data["source"] == "this run"]
    paper = data[data["source"] == "paper"]
    sentences = []
    for (mode, series), g in ours.groupby(["mode", "series"], sort=True):
        g = g.sort_values("n")
        first, last = g.iloc[0], g.iloc[-1]
        best = g.loc[g["speedup"].idxmax()]
        text = (f"{mode}, {series}: {_fmt_x(first['speedup'])} at N={first['n']} "
                f"({_fmt_t(first['fused_s'])} vs {_fmt_t(first['peer_s'])})")
        if len(g) > 1:
            text += f", {_fmt_x(last['speedup'])} at N={last['n']}; largest {_fmt_x(best['speedup'])} at N={best['n']}"
        for gpu in PAPER_GPUS:
            p = paper[(paper["mode"] == mode) & (paper["gpu"] == gpu)
                      & (paper["peer"] == _fig3_counterpart(first["peer"]))]
            at = p[p["n"].isin([first["n"], last["n"]])].sort_values("n")
            if not at.empty:
                text += f" (paper, {gpu}, same N: " + ", ".join(
                    f"{_fmt_x(r['speedup'])} at N={r['n']}" for _, r in at.iterrows()) + ")"
        sentences.append(text + ".")
    below = ours[ours["speedup"] < 1]
    if not below.empty:
        sentences.append(f"The fused kernel was slower (ratio below 1) in {len(below)} of {len(ours)} "
                         "compared cells.")
    return "Speedup of the fused kernel (ratio of medians): " + " ".join(sentences)


def _fig3_counterpart(peer: str) -> str:
    """The published implementation figure 3 draws for a peer backend ("" if none)."""
    return {"diffrax": pd_.JAX, "torchdiffeq": pd_.TORCH}.get(peer, "")


def _read_model(info: FigureInfo) -> str:
    fits = info.extra.get("fits")
    data = info.data
    sentences = [f"{info.extra.get('problem')}, {info.extra.get('mode')}. Launches per solve: " + ", ".join(
        f"{series} {value_range(g['launches'], num_text)}" for series, g in data.groupby("series", sort=True)) + "."]
    if fits is None or fits.empty:
        sentences.append("No series had enough points to fit the model.")
        return " ".join(sentences)
    for _, f in fits.iterrows():
        pts = data[data["series"] == f["series"]].sort_values("n")
        last = pts.iloc[-1]
        text = (f"{f['series']}: fitted {_fmt_t(f['launch_cost_s'])} per launch and "
                f"{_fmt_t(f['step_cost_s'])} per trajectory-step; dominant term at N={f['small_n']}: "
                f"{f['dominant_small']}, at N={f['large_n']}: {f['dominant_large']} "
                f"(median fit error {100 * f['median_rel_err']:.1f}%)")
        if f["launch_cost_s"] > 0 and f["step_cost_s"] > 0 and last["trajectory_steps"] > 0:
            steps = last["trajectory_steps"] / last["n"]
            crossover = last["launches"] * f["launch_cost_s"] / (steps * f["step_cost_s"])
            text += f"; the terms are equal near N ≈ {crossover:.3g}"
        sentences.append(text + ".")
    for u in info.extra.get("unfitted", []):
        sentences.append(f"Not fitted: {u}.")
    sentences.append("This is a fitted description of the measured times, not a measurement of "
                     "launch cost or bandwidth.")
    return " ".join(sentences)


def _read_work_precision(info: FigureInfo) -> str:
    data = info.data
    sentences = [f"{info.extra.get('problem')} at N={info.extra.get('n')}."]
    for series, g in data.groupby("series", sort=True):
        best = g.loc[g["max_rel_err"].idxmin()]
        fastest = g.loc[g["time_median_s"].idxmin()]
        setting = (lambda r: f"dt={num_text(r['dt'])}" if r["mode"] == "fixed" else f"tol={num_text(r['rtol'])}")
        sentences.append(f"{series}: smallest error {err_text(best['max_rel_err'])} in "
                         f"{_fmt_t(best['time_median_s'])} ({setting(best)}); fastest "
                         f"{_fmt_t(fastest['time_median_s'])} at error {err_text(fastest['max_rel_err'])} "
                         f"({setting(fastest)}).")
    return " ".join(sentences)


def _read_lockstep(info: FigureInfo) -> str:
    data = info.data
    sentences = [f"{info.extra.get('problem')}, adaptive."]
    for (scope, series), g in data.groupby(["step_control", "series"], sort=True):
        r = g.sort_values("n").iloc[-1]
        sentences.append(f"{series} ({scope}) at N={r['n']}: mean {r['steps_mean']:.4g} and max "
                         f"{r['steps_max']:.4g} accepted steps per trajectory ({_fmt_x(r['max_over_mean'])})"
                         + ("; every lane does the maximum's work" if scope in ("lockstep", "shared") else "")
                         + ".")
    return " ".join(sentences)


# ---- accuracy, omissions, settings, environment ---------------------------------------------------

def _accuracy_section(cells, speedups) -> str:
    lines = ["## Accuracy and amount of work",
             "Max scaled error of the final state against the float64 reference subsample (max over "
             "components of |u - ref| / (atol + rtol |ref|), in units of the tolerance; fixed-step "
             "cells use the problem's default tolerances), max relative error (per trajectory, "
             "relative to its largest component), and "
             "accepted steps per trajectory, over the cells of each backend that ran (ranges over N "
             "and settings). A speedup between rows of different accuracy or step count is labelled "
             "in the speedup table's note."]
    ran = cells[cells["status"] == "ok"]
    rows = []
    for key, g in ran.groupby(["problem", "backend", "variant", "method", "mode", "dtype", "device"], sort=True):
        problem, backend, variant, method, mode, dtype, device = key
        rows.append([problem, peer_text(backend, variant, method), mode, f"{dtype}, {device}", len(g),
                     value_range(g["max_scaled_err"], err_text), value_range(g["max_rel_err"], err_text),
                     value_range(g["steps_mean"], lambda v: f"{v:.4g}"),
                     value_range(g["steps_max"], lambda v: f"{v:.4g}"),
                     value_range(g["rhs_evals_mean"], lambda v: f"{v:.4g}"), value_range(g["compile_s"], _fmt_t)])
    if rows:
        lines.append(md_table(["problem", "backend, method", "mode", "dtype, device", "cells",
                             "max scaled err", "max rel err", "steps (mean)", "steps (max)", "RHS evals (mean)",
                             "compile"], rows))
    if not speedups.empty:
        flagged = speedups[speedups["note"] != ""]
        lines.append(f"{len(flagged)} of {len(speedups)} fused-kernel comparisons are not like for like "
                     "(another method, accuracy differing by more than 10×, or mean steps differing by "
                     "more than 1.2×); their notes say which.")
    return "\n\n".join(lines)


def _omissions_section(cells, figures) -> str:
    lines = ["## Omissions"]
    failed = cells[cells["status"] != "ok"]
    if failed.empty:
        lines.append("Every cell ran.")
    else:
        lines.append(f"{len(failed)} cell(s) could not run:")
        lines.append(md_table(
            ["problem", "backend", "variant", "method", "mode", "dtype", "device", "N", "settings",
             "status", "reason"],
            [[r["problem"], r["backend"], r["variant"], r["method"], r["mode"], r["dtype"], r["device"],
              r["n"], settings_text(r["dt"], r["rtol"], r["atol"], r["mode"]), r["status"], r["reason"]]
             for _, r in failed.iterrows()]))
    partial = cells[(cells["status"] == "ok") & (cells["failed_trajectories"].fillna(0) > 0)]
    if not partial.empty:
        lines.append(f"{len(partial)} cell(s) ran but some trajectories did not succeed; they are not "
                     "drawn or compared as successes:")
        lines.append(md_table(
            ["problem", "backend", "method", "mode", "dtype", "device", "N", "failed trajectories"],
            [[r["problem"], peer_text(r["backend"], r["variant"], r["method"]), r["method"], r["mode"],
              r["dtype"], r["device"], r["n"], f"{r['failed_trajectories']:g}"] for _, r in partial.iterrows()]))
    skipped = [f for f in figures if f.skipped]
    if skipped:
        lines.append("Figures not drawn: " + "; ".join(f"{f.name} ({f.skipped})" for f in skipped) + ".")
    return "\n\n".join(lines)


def _parse_settings(text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"(unparsed)": text}
    return style.flatten(value) if isinstance(value, dict) else {"(value)": str(value)}


def _settings_section(cells) -> str:
    lines = ["## Settings of every backend",
             "Every setting each backend recorded (the `settings` column), one table per backend and "
             "mode; a column per problem, several values where cells differed."]
    ran = cells[cells["settings"] != ""]
    if ran.empty:
        lines.append("No cell recorded its settings.")
        return "\n\n".join(lines)
    for (backend, mode), g in ran.groupby(["backend", "mode"], sort=True):
        problems = sorted(set(g["problem"]))
        values: dict[str, dict[str, set]] = {}
        for _, r in g.iterrows():
            for key, value in _parse_settings(r["settings"]).items():
                values.setdefault(key, {}).setdefault(r["problem"], set()).add(value)
        rows = [[key, *("; ".join(sorted(values[key].get(p, set()))) for p in problems)]
                for key in sorted(values)]
        lines.append(f"### {style.backend_label(backend)} (`{backend}`), {mode}")
        lines.append(md_table(["setting", *problems], rows))
    return "\n\n".join(lines)


def _environment_section(env, env_note, devices, published) -> str:
    lines = ["## Environment", f"Device(s) in the results: {', '.join(devices) or 'n/a'}."]
    if env_note:
        lines.append(f"Note: {env_note}.")
    flat = style.flatten(env)
    if flat:
        lines.append(md_table(["key", "value"], [[k, flat[k]] for k in sorted(flat)]))
    source = published.attrs.get("source", "") if published is not None else ""
    lines.append("Published data: " + (f"{len(published)} rows from {source}." if not published.empty
                                       else f"not available ({source or 'not supplied'})."))
    return "\n\n".join(lines)
