"""The Markdown report of one run: the claim, the speedups, the figures read aloud, and caveats.

``write_report(run_dir, companions=...)`` reads ``run_dir/results.csv`` (and ``environment.json``)
and each companion run once, draws the figures into ``run_dir/figures/`` and writes
``run_dir/report.md``, its appendix and the extension sections (:mod:`harness.report.sections`).
Every sentence that states a number is computed from the results (or the published files);
nothing is a canned claim.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.appendix import APPENDIX_FILE, REPORT_FILE, render_appendix
from harness.report.figures import style
from harness.report.figures.canvas import FigureContext, FigureInfo
from harness.report.figures.core import make_figures
from harness.report.figures.story import make_story_figures
from harness.report.findings import REPORT_FIGURES, finding, verdict
from harness.report.html import write_html
from harness.report.inputs import Run, load_environment, read_run, suite_companions
from harness.report.mdtext import accuracy_note, err_text, md_table
from harness.report.summary import CONTENDED_MARK, answer_lines, model_ratios
from harness.report.sections import SECTIONS, Section, SectionContext
from harness.results.headline import XLA_CAVEAT, headline_table
from harness.results.paper import load_paper_data

FIGURES_DIR = "figures"
#: The extension sections in full (report.md shows each one's opening and links here).
SECTIONS_FILE = "report_sections.md"
#: A section longer than this many lines is shortened in report.md (the report stays < 250 lines).
SECTION_MAX_LINES = 20
#: report.md's length limit (issue 19: under 250 lines); extension sections fill what is left.
REPORT_MAX_LINES = 240

_fmt_t = style.format_seconds
_fmt_x = style.format_ratio


def write_report(run_dir: Path, *, companions: tuple[Path, ...] | None = None, dpi: int = 150,
                 html: bool = True) -> Path:
    """Draw the figures, write ``report.md``, the appendix and (``html``) ``report.html``.

    Args:
        run_dir: a run folder holding results.csv and (ideally) environment.json.
        companions: other run folders the sections compare against (the swarm and nonlinear
            sections read the cpu ODE run among them); each is read once. None: those the run's
            suite file names (:func:`harness.report.inputs.suite_companions`).
        dpi: resolution of the PNG figures.
        html: also write the self-contained ``report.html``.

    Returns:
        The path of report.md.

    Raises:
        SchemaError (a ValueError): a results.csv missing, empty or invalid (one-line message).
    """
    run = read_run(run_dir)
    others = tuple(read_run(c) for c in (suite_companions(run_dir) if companions is None else companions))
    run_dir, results = run.path, run.results
    env, env_note = load_environment(run_dir)
    published = load_paper_data()
    figures = make_all_figures(run, env, published, dpi=dpi)
    headline = headline_table(results, published)
    ctx = SectionContext(run, others)
    sections = extension_sections(ctx)
    leads = lead_findings(ctx) if headline.empty else []
    text = render_report(run, env, figures, headline, sections, leads,
                         model_ratios(results) if not headline.empty else [])
    path = run_dir / REPORT_FILE
    path.write_text(text, encoding="utf-8")
    (run_dir / APPENDIX_FILE).write_text(
        render_appendix(run.cells, env, figures, published, run_dir, env_note=env_note), encoding="utf-8")
    full = [t for _, t in sections if not t.startswith("_Section `")]
    (run_dir / SECTIONS_FILE).write_text(
        f"# Extension sections of [{REPORT_FILE}]({REPORT_FILE}), in full\n\n" + "\n\n".join(full) + "\n",
        encoding="utf-8")
    if html:
        try:
            write_html(run, env, figures, headline, text, sections)
        except ImportError as exc:   # jinja2 is an extra: report.md still stands without the page
            print(f"note: report.html not written ({exc})", file=sys.stderr)
    return path


def make_all_figures(run: Run, env: dict, published: pd.DataFrame, *, dpi: int = 150) -> list[FigureInfo]:
    """The eight original figures and the headline ("story") figures, in one list."""
    out_dir = run.path / FIGURES_DIR
    figures = make_figures(run.results, env, out_dir, published, dpi=dpi)
    ctx = FigureContext(cells=run.cells, published=published, published_note="", env=env or {},
                        devices=sorted(set(run.cells["device"]) - {""}), out_dir=out_dir, dpi=dpi)
    return figures + make_story_figures(ctx, run.path)


def extension_sections(ctx: SectionContext,
                       sections: tuple[Section, ...] = SECTIONS) -> list[tuple[str, str]]:
    """``[(name, markdown)]`` of the sections that apply to the run; a section that fails yields
    a one-line note instead (the report is still written)."""
    out = []
    for section in sections:
        if not section.applies(ctx.run.cells):
            continue
        try:
            text = section.markdown(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the report
            out.append((section.name, f"_Section `{section.name}` failed: {type(exc).__name__}: "
                                      f"{' '.join(str(exc).split())[:200]}._"))
            continue
        if text:
            out.append((section.name, text.strip()))
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


def render_report(run: Run, env: dict, figures: list[FigureInfo], headline: pd.DataFrame,
                  sections: list[tuple[str, str]], leads: list[str] | None = None,
                  modelled: list[float] | None = None) -> str:
    """The short report's Markdown (pure): what it measured (the answer, or each feature section's
    own finding when the run has no Lorenz headline), headline, verdict, figures, omissions."""
    results, cells, run_dir = run.results, run.cells, run.path
    run_id = ", ".join(sorted(set(results["run_id"].dropna().astype(str)))) or "unnamed run"
    devices = sorted(set(cells["device"]) - {""})
    fields = dict(style.environment_fields(env))
    machine = ", ".join(f"{k} {fields[k]}" for k in ("CPU", "cores", "GPU") if fields.get(k))
    parts = [
        f"# Benchmark report: {run_id}",
        f"Device(s): {', '.join(devices) or 'n/a'}{f' ({machine})' if machine else ''}. "
        f"{len(cells)} cells, {int(cells['success'].sum())} successful. Settings, accuracy of every "
        f"cell, every speedup and the environment: [{APPENDIX_FILE}]({APPENDIX_FILE}).",
        dirty_note(env),
    ]
    if headline.empty:
        parts += ["## What this run measured\n\n" + "\n\n".join(leads or ["(no section states a finding for this run)"])]
    else:
        parts += ["## The answer\n\n" + "\n".join(answer_lines(headline, modelled)), headline_markdown(headline),
                  "## Verdict\n\n" + verdict(headline)]
    parts.append(_short_figures_section(figures, run_dir))
    tail = [_short_omissions(cells, figures, results, headline)]
    used = sum(len(p.strip().splitlines()) + 1 for p in parts + tail if p)
    parts += _sections_markdown(sections, REPORT_MAX_LINES - used) + tail
    return "\n\n".join(p.strip() for p in parts if p) + "\n"


def dirty_note(env: dict | None) -> str:
    """Which tracked files were modified when the run was made (empty for a clean tree)."""
    git = (env or {}).get("git") or {}
    if not git.get("dirty"):
        return ""
    paths = git.get("dirty_paths")
    if paths:
        return (f"Made from a modified tree (commit {str(git.get('commit'))[:12]} plus local changes to "
                + ", ".join(f"`{p}`" for p in paths) + ").")
    return (f"Made from a modified tree (commit {str(git.get('commit'))[:12]} plus local changes; this run's "
            "fingerprint predates the list of modified files).")


def lead_findings(ctx: SectionContext, sections: tuple[Section, ...] = SECTIONS) -> list[str]:
    """Each applicable section's own finding (its headline hook, else its README paragraph, else the
    first paragraph of its Markdown): what a run without a Lorenz headline opens with."""
    out = []
    for section in sections:
        if not section.leads or not section.applies(ctx.run.cells):
            continue
        try:
            hook = section.headline or section.readme
            text = hook(ctx) if hook is not None else None
            if not text:
                body = [b for b in (section.markdown(ctx) or "").split("\n\n") if b.strip() and not b.startswith("#")]
                text = body[0] if body else None
        except Exception:  # noqa: BLE001 - the report opens without this section's line
            text = None
        if text:
            out.append(text.strip())
    return out


def _bracket(r) -> str:
    return f"{_fmt_x(r['speedup'])} [{style.format_ratio_digits(r['speedup_lo'])}–{style.format_ratio_digits(r['speedup_hi'])}]"


def _pair(a: float, b: float, fmt) -> str:
    return f"{fmt(a)} / {fmt(b)}"


def headline_markdown(headline: pd.DataFrame) -> str:
    """The headline tables (one per setting and thread count), as Markdown."""
    lines = ["## Headline: fused kernel vs each library at its strongest",
             "Ratio of median times (peer / fused; above 1 the fused kernel is faster) with the [min–max] bracket of the repeats "
             "(slowest-fused-vs-fastest-peer to the reverse); *strongest* = the library's variant with "
             "the lowest median at that N, same threads, same method where it ran it; *as the paper "
             "ran it* = diffrax vmap-of-jit, torchdiffeq default. The hand-written C++ solver is a control (the same fused design in "
             "another language), listed apart and never counted among the peers. Paper: its Tesla V100 ratio where the settings match."]
    if headline.empty:
        lines.append("No headline: no library ran the fused kernel's Lorenz settings in this run.")
        return "\n\n".join(lines)
    has_util = headline[["cpu_util_fused", "cpu_util_peer"]].notna().any().any()
    caveat = False
    for setting, t in headline.groupby("setting", sort=False):
        rows = []
        for group, g in t.groupby(t.get("group", pd.Series("peer", index=t.index)).fillna("peer"), sort=False):
            if group == "control":
                rows.append(["*control, not a peer:*"] + [""] * (11 + has_util))
            for _, r in g.iterrows():
                caveat |= "XLA:CPU" in r["notes"]
                rows.append(_headline_row(r, has_util))
        header = ["library", "N", "strongest variant", "method", "fused", "peer", "peer / fused [min–max]",
                  "as paper ran it", "error peer / fused", "steps peer / fused",
                  *(["CPU util peer / fused"] if has_util else []), "paper V100", "notes"]
        lines.append(f"### {setting}")
        lines += contended_banner(t)
        lines.append(md_table(header, rows))
        lines.append(accuracy_note(t["mode"].iloc[0], _rtol_of(setting)))
    if caveat:
        lines.append(f"† {XLA_CAVEAT}.")
    return "\n\n".join(lines)


def _rtol_of(setting: str) -> float:
    m = re.search(r"tol = ([0-9.e+-]+)", setting)
    return float(m.group(1)) if m else float("nan")


def _headline_row(r: pd.Series, has_util: bool) -> list:
    notes = r["notes"].replace("XLA:CPU caveat", "XLA:CPU †")
    speedup = _bracket(r) + (f" {CONTENDED_MARK}" if bool(r.get("contended", False)) else "")
    row = [style.backend_label(r["library"]), r["n"], r["variant"] or "default",
           style.method_label(r["method"]), _fmt_t(r["fused_s"]), _fmt_t(r["peer_s"]), speedup,
           _fmt_x(r["as_paper_speedup"]) if np.isfinite(r["as_paper_speedup"]) else "",
           _pair(r["err_peer"], r["err_fused"], err_text),
           _pair(r["steps_peer"], r["steps_fused"], lambda v: "n/a" if not np.isfinite(v) else f"{v:.4g}")]
    if has_util:
        row.append(_pair(r["cpu_util_peer"], r["cpu_util_fused"], lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}"))
    return row + [_fmt_x(r["paper_speedup"]) if np.isfinite(r["paper_speedup"]) else "", notes]


def contended_banner(rows: pd.DataFrame) -> list[str]:
    """A banner (one-element list) above a table some of whose cells ran on a busy machine."""
    if "contended" not in rows.columns or not rows["contended"].fillna(False).astype(bool).any():
        return []
    k = int(rows["contended"].fillna(False).astype(bool).sum())
    return [f"> **Contended:** {k} of the {len(rows)} rows below include a cell measured while other processes, "
            f"or other guests of the host (steal), competed for the cores ({CONTENDED_MARK}); their times may be "
            "inflated and their ratios are not "
            "quotable without that mark."]


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
        lines.append(f"**Figure {number}.** {finding(info)} ![{info.title}]({png}) "
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


