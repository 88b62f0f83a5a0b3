"""The Markdown report of one run: the claim, the speedups, the figures read aloud, and caveats.

``write_report(run_dir)`` reads ``run_dir/results.csv`` (and ``environment.json``), draws the
figures into ``run_dir/figures/`` and writes ``run_dir/report.md``. Every sentence that states a
number is computed from the results (or the published files); nothing is a canned claim.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.results import paper as pd_
from harness.results.paper import load_paper_data
from harness.report.figures import style
from harness.results.cells import (REFERENCE_BACKEND, cell_table, paper_ratio, paper_speedups,
                                 speedup_table)
from harness.results.headline import XLA_CAVEAT, headline_table, threads_label, verdict
from harness.report.figures.core import PAPER_GPUS, FigureInfo, make_figures
from harness.results.schema import COLUMNS, SchemaError, validate
from harness.results.store import last_line_cut

RESULTS_FILE = "results.csv"
ENVIRONMENT_FILE = "environment.json"
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"

#: The ensemble sizes the speedup table always tries (plus the largest N both sides reached).
KEY_NS = (8, 8192)

_fmt_t = style.format_seconds
_fmt_x = style.format_ratio


# ---- inputs ---------------------------------------------------------------------------------------

def load_results(run_dir: Path) -> pd.DataFrame:
    """``run_dir/results.csv`` read and validated.

    Raises:
        SchemaError (a ValueError): the folder or file is missing, the file is empty or not a
            CSV, or the table fails :func:`harness.results.schema.validate`; the message is one line.
    """
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not run_dir.is_dir():
        raise SchemaError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise SchemaError(f"{path} is missing: a run folder holds {RESULTS_FILE} (write one with a run first)")
    if last_line_cut(path):  # a cut row is not a repeat (harness.results.store)
        raise SchemaError(f"{path}: its last line is cut (a write was interrupted); "
                          f"`python -m harness run --resume` drops it and runs that cell again")
    strings = [c for c, t in COLUMNS.items() if t == "string"]
    # Text read as written ("None" or "NA" stay text); only numeric columns have missing values.
    # Floats are parsed exactly (the default from pandas 3), so key columns match as written.
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    try:
        df = pd.read_csv(path, dtype={c: str for c in strings}, keep_default_na=False,
                         na_values={c: ["", "nan", "NaN"] for c in COLUMNS if c not in strings}, **exact)
    except pd.errors.EmptyDataError:
        raise SchemaError(f"{path} is empty: no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SchemaError(f"{path} is not a readable results CSV: {first}") from None
    try:
        return validate(df)
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None


def load_environment(run_dir: Path) -> tuple[dict, str]:
    """``(fingerprint, note)``: the parsed environment.json (or {}), and "" or why it is absent."""
    path = Path(run_dir) / ENVIRONMENT_FILE
    if not path.is_file():
        return {}, f"{ENVIRONMENT_FILE} is missing from the run folder"
    try:
        env = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return {}, f"{ENVIRONMENT_FILE} could not be read ({type(exc).__name__}: {exc})"
    if not isinstance(env, dict):
        return {}, f"{ENVIRONMENT_FILE} does not hold a JSON object"
    return env, ""


#: The appendix: settings, accuracy, every speedup, the environment and the remaining figures.
APPENDIX_FILE = "report_settings.md"
#: The extension sections in full (report.md shows each one's opening and links here).
SECTIONS_FILE = "report_sections.md"
#: A section longer than this many lines is shortened in report.md (the report stays < 250 lines).
SECTION_MAX_LINES = 20
#: report.md's length limit (issue 19: under 250 lines); extension sections fill what is left.
REPORT_MAX_LINES = 240

#: Report extension hook: "module:function" section providers, called in order with
#: ``(run_dir, results)``; each returns Markdown (or None) and may write figures into
#: run_dir/"figures". A module that is not importable is skipped with a note.
SECTION_PROVIDERS: list[str] = [   # in order of priority for report.md's line budget
    "harness.gpu_profile.section:report_section",  # GPU machine code, time model, paper check
    "harness.report.sections.sde:report_section",         # SDE ensembles beside the paper's GPUEM series
    "harness.results.stats:report_section",              # noise: spread of the repeats, noisy cells
    "harness.report.sections.cpp:report_section",         # hand-written C++ fused solver vs the Numba kernel
    "harness.report.sections.sizes:report_section",       # Lorenz-96 d = 4..1024: where fused stops winning
    "harness.report.sections.pso:report_section",         # particle swarms: fused vs array vs JAX (issue 18)
    "harness.report.sections.scaling:report_section",     # sharded ensembles on Dask: strong/weak scaling
    "harness.report.sections.nonlinear:report_section",   # batched nonlinear solves, fused vs array vs peers
]

#: Figures the short report shows (in order); the others go to the appendix.
REPORT_FIGURES = ("story1_headline_speedup", "story2_fused_vs_replica", "story3_throughput",
                  "story4_equal_accuracy", "fig4_launches_model", "fig8_lockstep", "story5_first_solve")


def write_report(run_dir: Path, *, dpi: int = 150, html: bool = True) -> Path:
    """Draw the figures, write ``report.md``, the appendix and (``html``) ``report.html``.

    Args:
        run_dir: a run folder holding results.csv and (ideally) environment.json.
        dpi: resolution of the PNG figures.
        html: also write the self-contained ``report.html``.

    Returns:
        The path of report.md.

    Raises:
        SchemaError (a ValueError): results.csv missing, empty or invalid (one-line message).
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    env, env_note = load_environment(run_dir)
    published = load_paper_data()
    figures = make_all_figures(results, env, run_dir, published, dpi=dpi)
    headline = headline_table(results, published)
    sections = extension_sections(run_dir, results)
    text = render_report(results, env, figures, published, run_dir, env_note=env_note,
                         headline=headline, sections=sections)
    path = run_dir / REPORT_FILE
    path.write_text(text, encoding="utf-8")
    (run_dir / APPENDIX_FILE).write_text(
        render_appendix(results, env, figures, published, run_dir, env_note=env_note), encoding="utf-8")
    full = [t for _, t in sections if not t.startswith("_Section `")]
    (run_dir / SECTIONS_FILE).write_text(
        f"# Extension sections of [{REPORT_FILE}]({REPORT_FILE}), in full\n\n" + "\n\n".join(full) + "\n",
        encoding="utf-8")
    if html:
        try:
            from harness.report.html import write_html
        except ImportError as exc:   # jinja2 is an extra: report.md still stands without the page
            print(f"note: report.html not written ({exc})", file=sys.stderr)
        else:
            write_html(run_dir, results, env, figures, headline, text, sections)
    return path


def make_all_figures(results: pd.DataFrame, env: dict, run_dir: Path, published: pd.DataFrame,
                     *, dpi: int = 150) -> list[FigureInfo]:
    """The eight original figures and the headline ("story") figures, in one list."""
    from harness.report.figures.core import _Context
    from harness.report.figures.story import make_story_figures

    figures = make_figures(results, env, run_dir / FIGURES_DIR, published, dpi=dpi)
    cells = cell_table(results)
    ctx = _Context(cells=cells, published=published, published_note="", env=env or {},
                   devices=sorted(set(cells["device"]) - {""}), out_dir=run_dir / FIGURES_DIR, dpi=dpi)
    return figures + make_story_figures(results, ctx, run_dir)


def extension_sections(run_dir: Path, results: pd.DataFrame,
                       providers: list[str] | None = None) -> list[tuple[str, str]]:
    """``[(provider, markdown)]`` from :data:`SECTION_PROVIDERS`; a provider that cannot be
    imported or fails yields a one-line note instead (the report is still written)."""
    import importlib

    out = []
    for entry in SECTION_PROVIDERS if providers is None else providers:
        module_name, _, func_name = entry.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), func_name)
        except (ImportError, AttributeError) as exc:
            out.append((entry, f"_Section `{entry}` skipped: not available on this branch ({type(exc).__name__})._"))
            continue
        try:
            text = func(Path(run_dir), results)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the report
            out.append((entry, f"_Section `{entry}` failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}._"))
            continue
        if text:
            out.append((entry, text.strip()))
    return out


def _shorten(text: str) -> str:
    """A long section's heading and opening prose (up to its first table or SECTION_MAX_LINES
    lines), then a link to the full section in SECTIONS_FILE."""
    lines = text.splitlines()
    if len(lines) <= SECTION_MAX_LINES:
        return text
    keep = []
    for line in lines[:SECTION_MAX_LINES]:
        if line.startswith("|") or line.startswith("!["):
            break
        keep.append(line)
    title = lines[0].lstrip("#").strip()
    anchor = "-".join("".join(c for c in title.lower() if c.isalnum() or c in " -").split())
    return "\n".join(keep).rstrip() + f"\n\nThe whole section, with its tables: [{SECTIONS_FILE}]({SECTIONS_FILE}#{anchor})."


def _sections_markdown(sections: list[tuple[str, str]], budget_lines: int = 10**9) -> list[str]:
    """Provider sections in order: each in full while the report's line budget allows, else
    shortened (the full text is always in SECTIONS_FILE); skipped providers folded into one line."""
    notes = [text for _, text in sections if text.startswith("_Section `")]
    texts = [text for _, text in sections if not text.startswith("_Section `")]
    body = []
    for i, text in enumerate(texts):
        rest = sum(len(_shorten(t).splitlines()) + 1 for t in texts[i + 1:])
        full = len(text.splitlines()) + 1
        body.append(text if full + rest <= budget_lines else _shorten(text))
        budget_lines -= len(body[-1].splitlines()) + 1
    if notes:
        body.append("Extension sections not shown: " + " ".join(n.strip("_") for n in notes))
    return body


# ---- Markdown helpers -------------------------------------------------------------------------------

def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}"


def _err(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.2g}"


def _range(values: pd.Series, fmt) -> str:
    v = values.dropna()
    if v.empty:
        return "n/a"
    lo, hi = v.min(), v.max()
    return fmt(lo) if lo == hi else f"{fmt(lo)} – {fmt(hi)}"


def _settings_text(dt: float, rtol: float, atol: float, mode: str) -> str:
    if mode == "adaptive":
        tol = _num(rtol) if rtol == atol or not np.isfinite(atol) else f"{_num(rtol)}/{_num(atol)}"
        return f"tol {tol}, dt0 {_num(dt)}" if _num(dt) else f"tol {tol}"
    return f"dt {_num(dt)}"


def _peer_text(backend: str, variant: str, method: str) -> str:
    text = style.backend_label(backend)
    if variant:
        text += f" [{variant}]"
    return f"{text}, {style.method_label(method)}"


# ---- sections ---------------------------------------------------------------------------------------

def render_report(results: pd.DataFrame, env: dict, figures: list[FigureInfo],
                  published: pd.DataFrame, run_dir: Path, env_note: str = "",
                  headline: pd.DataFrame | None = None,
                  sections: list[tuple[str, str]] | None = None) -> str:
    """The short report's Markdown (pure): headline, verdict, figures with findings, omissions."""
    cells = cell_table(results)
    if headline is None:
        headline = headline_table(results, published)
    run_id = ", ".join(sorted(set(results["run_id"].dropna().astype(str)))) or "unnamed run"
    devices = sorted(set(cells["device"]) - {""})
    fields = dict(style.environment_fields(env))
    machine = ", ".join(f"{k} {fields[k]}" for k in ("CPU", "cores", "GPU") if fields.get(k))
    parts = [
        f"# Benchmark report: {run_id}",
        f"Device(s): {', '.join(devices) or 'n/a'}{f' ({machine})' if machine else ''}. "
        f"{len(cells)} cells, {int(cells['success'].sum())} successful. Settings, accuracy of every "
        f"cell, every speedup and the environment: [{APPENDIX_FILE}]({APPENDIX_FILE}).",
        headline_markdown(headline),
        "## Verdict\n\n" + verdict(headline),
        _short_figures_section(figures, run_dir),
    ]
    tail = [_short_omissions(cells, figures, results, headline)]
    used = sum(len(p.strip().splitlines()) + 1 for p in parts + tail if p)
    parts += _sections_markdown(sections or [], REPORT_MAX_LINES - used) + tail
    return "\n\n".join(p.strip() for p in parts if p) + "\n"


def _bracket(r) -> str:
    return f"{_fmt_x(r['speedup'])} [{_sig(r['speedup_lo'])}–{_sig(r['speedup_hi'])}]"


def _sig(x: float) -> str:
    return style.format_ratio(x).rstrip("×")


def _pair(a: float, b: float, fmt) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def headline_markdown(headline: pd.DataFrame) -> str:
    """The headline tables (one per setting and thread count), as Markdown."""
    lines = ["## Headline: fused kernel vs each library at its strongest",
             "Ratio of median times (peer / fused) with the [min–max] bracket of the repeats "
             "(slowest-fused-vs-fastest-peer to the reverse); *strongest* = the library's variant with "
             "the lowest median at that N, same threads, same method where it ran it; *as the paper "
             "ran it* = diffrax vmap-of-jit, torchdiffeq default. Error: adaptive cells, max scaled error (|u - ref| / (atol + rtol |ref|)) where "
             "measured; fixed-step cells and older runs, max relative error. Paper: its Tesla V100 ratio where the settings match."]
    if headline.empty:
        lines.append("No headline: no library ran the fused kernel's Lorenz settings in this run.")
        return "\n\n".join(lines)
    has_util = headline[["cpu_util_fused", "cpu_util_peer"]].notna().any().any()
    caveat = False
    for setting, t in headline.groupby("setting", sort=False):
        rows = []
        for _, r in t.iterrows():
            notes = r["notes"].replace("XLA:CPU caveat", "XLA:CPU †")
            caveat |= "XLA:CPU" in notes
            row = [style.backend_label(r["library"]), r["n"], r["variant"] or "default",
                   style.method_label(r["method"]), _fmt_t(r["fused_s"]), _fmt_t(r["peer_s"]), _bracket(r),
                   _fmt_x(r["as_paper_speedup"]) if np.isfinite(r["as_paper_speedup"]) else "",
                   _pair(r["err_peer"], r["err_fused"], _err),
                   _pair(r["steps_peer"], r["steps_fused"], lambda v: "n/a" if not np.isfinite(v) else f"{v:.4g}")]
            if has_util:
                row.append(_pair(r["cpu_util_peer"], r["cpu_util_fused"],
                                 lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}"))
            row += [_fmt_x(r["paper_speedup"]) if np.isfinite(r["paper_speedup"]) else "", notes]
            rows.append(row)
        header = ["library", "N", "strongest variant", "method", "fused", "peer", "speedup [min–max]",
                  "as paper ran it", "error peer / fused", "steps peer / fused",
                  *(["CPU util peer / fused"] if has_util else []), "paper V100", "notes"]
        lines.append(f"### {setting}")
        lines.append(_table(header, rows))
    if caveat:
        lines.append(f"† {XLA_CAVEAT}.")
    return "\n\n".join(lines)


def _finding(info: FigureInfo) -> str:
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


def _short_figures_section(figures: list[FigureInfo], run_dir: Path) -> str:
    lines = ["## Figures"]
    by_name = {f.name: f for f in figures}
    number = 0
    for name in REPORT_FIGURES:
        info = by_name.get(name)
        if info is None or info.skipped:
            continue
        number += 1
        png = _link(info, run_dir, ".png")
        lines.append(f"**Figure {number}.** {_finding(info)} ![{info.title}]({png}) "
                     f"([SVG]({_link(info, run_dir, '.svg')}), [data]({_link(info, run_dir, '.csv')}))")
    skipped = [f for f in figures if f.skipped and f.name in REPORT_FIGURES]
    if skipped:
        lines.append("Not drawn: " + "; ".join(f"{f.title} ({f.skipped})" for f in skipped) + ".")
    lines.append(f"The time-vs-N, work-precision, Robertson and SIR figures are in [{APPENDIX_FILE}]({APPENDIX_FILE}).")
    return "\n\n".join(lines)


def _link(info: FigureInfo, run_dir: Path, suffix: str) -> str:
    p = next(p for p in info.paths if p.suffix == suffix)
    return p.relative_to(run_dir).as_posix() if p.is_relative_to(run_dir) else str(p)


#: Stiff methods whose saveat clips steps (no dense output yet; DiffEqGPU interpolates).
ROSENBROCK_METHODS = ("rosenbrock23", "rodas4", "rodas5p")

#: Libraries and variants the headline expects; absent ones are listed as omissions.
EXPECTED_VARIANTS = {"diffrax": ("", "vmap-of-jit", "batched"), "torchdiffeq": ("", "compiled"),
                     "torchode": ("", "jit"), "torch-handwritten": ("", "compiled"),
                     "jax-handwritten": ("", "soa"), "cuda-cpp": ("",), "array": ("",)}


def _short_omissions(cells: pd.DataFrame, figures: list[FigureInfo], results: pd.DataFrame,
                     headline: pd.DataFrame) -> str:
    lines = ["## Omissions"]
    failed = cells[cells["status"] != "ok"]
    if not failed.empty:
        summary = failed.groupby(["backend", "status"]).size()
        lines.append(f"{len(failed)} cell(s) could not run (each with its reason in the appendix): "
                     + ", ".join(f"{b} {s} ×{k}" for (b, s), k in summary.items()) + ".")
    partial = cells[(cells["status"] == "ok") & (cells["failed_trajectories"].fillna(0) > 0)]
    if not partial.empty:
        lines.append(f"{len(partial)} cell(s) ran with failed trajectories and are not counted as successes.")
    ran = set(zip(cells["backend"], cells["variant"]))
    missing = [f"{b} [{v or 'default'}]" for b, vs in EXPECTED_VARIANTS.items() for v in vs if (b, v) not in ran]
    if missing:
        lines.append("Not in this run: " + ", ".join(missing) + ".")
    for col, what in (("threads", "thread counts were not recorded (every backend used what it took)"),
                      ("cpu_util", "CPU time / wall time was not recorded"),
                      ("max_scaled_err", "errors are max relative errors, not scaled by the tolerance")):
        if col not in results.columns or results[col].isna().all():
            lines.append(f"No `{col}` column: {what}.")
    if not headline.empty and not (headline["threads"] == 1).any():
        lines.append("No single-thread (threads = 1) rows: the per-core comparison is not in this run.")
    if "gpu" not in set(cells["device"]):
        lines.append("No GPU cells: the paper's GPU claim is not measured by this run.")
    if not (cells["problem"].str.contains("sde|crn", regex=True)).any():
        lines.append("SDE ensembles (the paper's linear SDE and CRN) run in their own suite "
                     "(`make reproduce SUITE=sde`), not in this run.")
    saved = results[results["settings"].fillna("").str.contains('"saveat": [', regex=False)
                    & results["method"].isin(ROSENBROCK_METHODS)] if "settings" in results.columns else results.iloc[:0]
    if not saved.empty:
        lines.append(f"{saved.groupby(['backend', 'method', 'n']).ngroups} Rosenbrock cell(s) with saveat: our "
                     "kernels clip steps onto the save times where DiffEqGPU interpolates, so their step "
                     "counts are not comparable with DiffEqGPU's (docs/fairness.md).")
    return "\n\n".join(lines)


def render_appendix(results: pd.DataFrame, env: dict, figures: list[FigureInfo],
                    published: pd.DataFrame, run_dir: Path, env_note: str = "") -> str:
    """The appendix: every speedup, the other figures read aloud, accuracy, omissions, settings."""
    cells = cell_table(results)
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
        tol = f" tol {_num(rtol)}" if mode == "adaptive" and _num(rtol) else ""
        vs = f" (fused {style.method_label(fused_method)})" if fused_method != method else ""
        found.append(f"- {problem}, {mode}{tol}, {device}: over {_peer_text(peer, variant, method)}{vs} {span}")
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
                rows.append([f"{r['dtype']}, {r['device']}", _settings_text(r["dt"], r["rtol"], r["atol"], mode),
                             _peer_text(r["peer"], r["peer_variant"], r["peer_method"]),
                             style.method_label(r["fused_method"]), n, _fmt_t(r["fused_s"]),
                             _fmt_t(r["peer_s"]), _fmt_x(r["speedup"]), _fmt_x(r["speedup_min"]),
                             *("" if not np.isfinite(p) else _fmt_x(p) for p, _ in papers),
                             note])
        lines.append(f"### {problem}, {mode}")
        lines.append(_table(["dtype, device", "settings", "peer, method", "fused method", "N", "fused",
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
        f"{series} {_range(g['launches'], _num)}" for series, g in data.groupby("series", sort=True)) + "."]
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
        setting = (lambda r: f"dt={_num(r['dt'])}" if r["mode"] == "fixed" else f"tol={_num(r['rtol'])}")
        sentences.append(f"{series}: smallest error {_err(best['max_rel_err'])} in "
                         f"{_fmt_t(best['time_median_s'])} ({setting(best)}); fastest "
                         f"{_fmt_t(fastest['time_median_s'])} at error {_err(fastest['max_rel_err'])} "
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
        rows.append([problem, _peer_text(backend, variant, method), mode, f"{dtype}, {device}", len(g),
                     _range(g["max_scaled_err"], _err), _range(g["max_rel_err"], _err),
                     _range(g["steps_mean"], lambda v: f"{v:.4g}"),
                     _range(g["steps_max"], lambda v: f"{v:.4g}"),
                     _range(g["rhs_evals_mean"], lambda v: f"{v:.4g}"), _range(g["compile_s"], _fmt_t)])
    if rows:
        lines.append(_table(["problem", "backend, method", "mode", "dtype, device", "cells",
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
        lines.append(_table(
            ["problem", "backend", "variant", "method", "mode", "dtype", "device", "N", "settings",
             "status", "reason"],
            [[r["problem"], r["backend"], r["variant"], r["method"], r["mode"], r["dtype"], r["device"],
              r["n"], _settings_text(r["dt"], r["rtol"], r["atol"], r["mode"]), r["status"], r["reason"]]
             for _, r in failed.iterrows()]))
    partial = cells[(cells["status"] == "ok") & (cells["failed_trajectories"].fillna(0) > 0)]
    if not partial.empty:
        lines.append(f"{len(partial)} cell(s) ran but some trajectories did not succeed; they are not "
                     "drawn or compared as successes:")
        lines.append(_table(
            ["problem", "backend", "method", "mode", "dtype", "device", "N", "failed trajectories"],
            [[r["problem"], _peer_text(r["backend"], r["variant"], r["method"]), r["method"], r["mode"],
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
        lines.append(_table(["setting", *problems], rows))
    return "\n\n".join(lines)


def _environment_section(env, env_note, devices, published) -> str:
    lines = ["## Environment", f"Device(s) in the results: {', '.join(devices) or 'n/a'}."]
    if env_note:
        lines.append(f"Note: {env_note}.")
    flat = style.flatten(env)
    if flat:
        lines.append(_table(["key", "value"], [[k, flat[k]] for k in sorted(flat)]))
    source = published.attrs.get("source", "") if published is not None else ""
    lines.append("Published data: " + (f"{len(published)} rows from {source}." if not published.empty
                                       else f"not available ({source or 'not supplied'})."))
    return "\n\n".join(lines)
