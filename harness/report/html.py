"""report.html: one self-contained page (no network; opens from file:// and offline).

Built with Jinja2 from the same tables as report.md: the headline tables and every cell in
sortable tables, each figure inlined as SVG with a checkbox per series (backend) that shows or
hides it, and the settings in collapsible ``<details>``. Nothing is fetched: figures are inline
SVG, the style and the script are in the page.

The sorting and show/hide script is ~30 lines of plain JavaScript written here, on purpose: no
sortable-table library is available offline on these machines (Debian ships only jQuery,
Underscore and Sphinx's doctools under /usr/share/javascript, the shared environment takes no
new packages, and fetched code is not committed), and inlining a framework for two behaviours
would be heavier than the behaviours.
"""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from harness.results.headline import XLA_CAVEAT
from harness.report.figures import style
from harness.report.figures.canvas import FigureInfo
from harness.report.findings import REPORT_FIGURES, finding, verdict
from harness.report.inputs import Run

HTML_FILE = "report.html"

_SERIES_ID = re.compile(r'id="series:([^"]+)"')

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \25B2"} th[aria-sort=descending]::after{content:" \25BC"}
td{white-space:nowrap} td.t,th.t{text-align:left;white-space:normal}
figure{margin:1.5em 0;border-top:1px solid #ddd;padding-top:.5em}
figure svg{max-width:100%;height:auto}
img{max-width:100%;height:auto}
table{display:block;overflow-x:auto;max-width:100%}
pre{overflow-x:auto;max-width:100%}
.banner{background:#fff4d6;border-left:4px solid #e69f00;padding:.3em .6em;font-size:13px}
.toggles label{margin-right:1em;font-size:12px}
details{margin:.3em 0} summary{cursor:pointer}
.note{font-size:12px;color:#555}
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ intro }}</p>
{% if answer %}<h2 id="answer">The answer</h2>{{ answer | safe }}{% endif %}
<h2 id="headline">Headline: fused kernel vs each library at its strongest</h2>
<p class="note">{{ headline_note }}</p>
{% for t in headline_tables %}
<h3>{{ t.caption }}</h3>
{% for b in t.banners %}<p class="banner">{{ b }}</p>{% endfor %}
{{ t.html | safe }}
{% for n in t.notes %}<p class="note">{{ n }}</p>{% endfor %}
{% else %}<p>No library ran the fused kernel's Lorenz settings in this run.</p>{% endfor %}
{% if caveat %}<p class="note">&dagger; {{ caveat }}.</p>{% endif %}
<h2>Verdict</h2>
<p id="verdict">{{ verdict }}</p>
<h2>Figures</h2>
{% for f in figures %}
<figure id="{{ f.name }}" class="figure">
<figcaption><b>Figure {{ loop.index }}.</b> {{ f.finding }}</figcaption>
{% if f.series %}<div class="toggles">Show:
{% for s in f.series %}<label><input type="checkbox" checked data-series="{{ s }}"> {{ s }}</label>{% endfor %}
</div>{% endif %}
{{ f.svg | safe }}
</figure>
{% endfor %}
{% for s in sections %}<section class="extension">{{ s | safe }}</section>{% endfor %}
<h2>Omissions</h2>
{{ omissions | safe }}
<h2>Every cell</h2>
<details><summary>{{ n_cells }} cells (click a column to sort)</summary>
{{ cells_html | safe }}
</details>
<h2>Settings of every backend</h2>
{% for s in settings %}<details><summary>{{ s.title }}</summary>{{ s.html | safe }}</details>{% endfor %}
<h2>Environment</h2>
<details><summary>fingerprint</summary>{{ env_html | safe }}</details>
<script>
// Sort a table by the clicked column: numbers (leading number of the cell) numerically, else text.
function cellKey(td){var t=td.textContent.trim();var m=t.replace(/,/g,"").match(/^-?[0-9.]+(e[-+]?[0-9]+)?/i);
  if(!m)return [1,t];var v=parseFloat(m[0]);if(/\bms\b/.test(t))v*=1e-3;else if(/µs/.test(t))v*=1e-6;else if(/\bns\b/.test(t))v*=1e-9;return [0,v];}
document.querySelectorAll("table.sortable th").forEach(function(th){th.addEventListener("click",function(){
  var table=th.closest("table"),i=Array.prototype.indexOf.call(th.parentNode.children,th);
  var asc=th.getAttribute("aria-sort")!=="ascending";
  table.querySelectorAll("th").forEach(function(h){h.removeAttribute("aria-sort");});
  th.setAttribute("aria-sort",asc?"ascending":"descending");
  var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){var x=cellKey(a.cells[i]),y=cellKey(b.cells[i]);
    var c=x[0]-y[0]||(x[1]<y[1]?-1:x[1]>y[1]?1:0);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});});});
// Show or hide one series of one figure: its SVG groups are named "series:<name>".
document.querySelectorAll(".toggles input").forEach(function(box){box.addEventListener("change",function(){
  var fig=box.closest("figure"),id="series:"+box.dataset.series;
  fig.querySelectorAll("svg [id]").forEach(function(el){if(el.id===id)el.style.display=box.checked?"":"none";});});});
</script>
</body></html>
"""


def _frame_html(frame: pd.DataFrame, table_id: str, text_cols: set[str]) -> str:
    head = "".join(f'<th class="{"t" if c in text_cols else ""}">{html.escape(str(c))}</th>' for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(f'<td class="{"t" if c in text_cols else ""}">{html.escape(str(v))}</td>'
                        for c, v in zip(frame.columns, row))
        body.append(f"<tr>{cells}</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _headline_tables(md_headline: str) -> list[dict]:
    """The headline's Markdown tables (already formatted by report/markdown.py) as HTML tables."""
    tables = []
    for block in md_headline.split("\n### ")[1:]:
        caption, _, rest = block.partition("\n\n")
        lines = [line for line in rest.splitlines() if line.startswith("|")]
        if len(lines) < 2:
            continue
        split = (lambda line: [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        header, rows = split(lines[0]), [split(line) for line in lines[2:]]
        rows = [[c.strip("*") if c.startswith("*control") else c for c in row] for row in rows]
        frame = pd.DataFrame(rows, columns=header)
        plain = (lambda line: re.sub(r"[*]{1,2}([^*]+)[*]{1,2}", r"\1", line.lstrip("> ").strip()))
        tables.append(dict(caption=caption.strip(), html=_frame_html(
            frame, f"headline-{len(tables)}", {"library", "strongest variant", "method", "notes"}),
            banners=[plain(line) for line in rest.splitlines() if line.startswith("> ")],
            notes=[plain(line) for line in rest.splitlines() if line.startswith("*Error:*")]))
    return tables


def _svg_inline(info: FigureInfo) -> tuple[str, list[str]]:
    path = next(p for p in info.paths if p.suffix == ".svg")
    text = path.read_text(encoding="utf-8")
    text = text[text.index("<svg"):]   # drop the XML declaration and DOCTYPE
    series = sorted(set(_SERIES_ID.findall(text)), key=lambda s: (s == "paper", s))
    return text, series


def _settings(cells: pd.DataFrame) -> list[dict]:
    out = []
    for (backend, mode), g in cells[cells["settings"] != ""].groupby(["backend", "mode"], sort=True):
        values: dict[str, dict[str, set]] = {}
        for problem, text in zip(g["problem"], g["settings"]):
            try:
                flat = style.flatten(json.loads(text))
            except (json.JSONDecodeError, TypeError):
                flat = {"(unparsed)": text}
            for k, v in flat.items():
                values.setdefault(k, {}).setdefault(problem, set()).add(v)
        problems = sorted(set(g["problem"]))
        frame = pd.DataFrame([[k, *("; ".join(sorted(values[k].get(p, set()))) for p in problems)]
                              for k in sorted(values)], columns=["setting", *problems])
        out.append(dict(title=f"{style.backend_label(backend)} ({backend}), {mode}",
                        html=_frame_html(frame, f"settings-{backend}-{mode}", set(frame.columns))))
    return out


def _markdown(text: str) -> str:
    try:
        from markdown_it import MarkdownIt  # optional: markdown-it-py renders the sections where it imports
    except ImportError:   # markdown-it-py comes with rich; without it, show the text as it is
        return f"<pre>{html.escape(text)}</pre>"
    return MarkdownIt("commonmark").enable("table").render(text)


def render_html(run: Run, env: dict, figures: list[FigureInfo], headline: pd.DataFrame,
                report_md: str, sections: list[tuple[str, str]] | None = None) -> str:
    """The page's HTML (pure apart from reading the figures' SVG files)."""
    # jinja2 is an extra: without it this raises ImportError and report.md stands alone
    from jinja2 import Environment, select_autoescape

    results, cells = run.results, run.cells
    by_name = {f.name: f for f in figures if not f.skipped}
    figs = []
    for name in [*REPORT_FIGURES, *(f.name for f in figures if f.name not in REPORT_FIGURES)]:
        info = by_name.get(name)
        if info is None:
            continue
        svg, series = _svg_inline(info)
        figs.append(dict(name=name, finding=finding(info), svg=svg, series=series))
    md_headline = report_md.split("## Headline", 1)[1].split("\n## ", 1)[0] if "## Headline" in report_md else ""
    omissions = report_md.split("## Omissions", 1)[1] if "## Omissions" in report_md else ""
    answer = report_md.split("## The answer", 1)[1].split("\n## ", 1)[0] if "## The answer" in report_md else ""
    run_id = ", ".join(sorted(set(results["run_id"].dropna().astype(str)))) or "unnamed run"
    intro = report_md.split("\n\n")[1] if report_md.count("\n\n") >= 1 else ""
    shown = cells[["problem", "backend", "variant", "method", "mode", "dtype", "n", "device", "dt", "rtol",
                   "status", "repeats", "time_median_s", "time_min_s", "time_max_s", "launches",
                   "steps_mean", "steps_max", "max_rel_err"]].copy()
    for col in ("time_median_s", "time_min_s", "time_max_s", "max_rel_err", "dt", "rtol"):
        shown[col] = [("" if not np.isfinite(v) else f"{v:.4g}") for v in shown[col]]
    for col in ("launches", "steps_mean", "steps_max"):
        shown[col] = [("" if not np.isfinite(v) else f"{v:.6g}") for v in shown[col]]
    flat_env = style.flatten(env or {})
    env_frame = pd.DataFrame(sorted(flat_env.items()), columns=["key", "value"])
    page = Environment(autoescape=select_autoescape(default=True)).from_string(_TEMPLATE)
    return page.render(
        title=f"Benchmark report: {run_id}",
        intro=re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", intro),
        headline_note=("Ratio of median times (peer / fused; above 1 the fused kernel is faster) with the "
                       "[min–max] bracket of the repeats; strongest = lowest median variant at that N, same "
                       "threads, same method where the library ran it; the hand-written C++ solver is a control, "
                       "listed apart. Click a column to sort."),
        answer=_markdown(answer.strip()) if answer.strip() else "",
        headline_tables=_headline_tables(md_headline),
        caveat=XLA_CAVEAT if "XLA:CPU" in md_headline else "",
        verdict=verdict(headline), figures=figs,
        sections=[_markdown(text) for _, text in (sections or [])],
        omissions=_markdown(omissions.strip()),
        n_cells=len(cells),
        cells_html=_frame_html(shown, "cells", {"problem", "backend", "variant", "method", "mode", "dtype",
                                                "device", "status"}),
        settings=_settings(cells),
        env_html=_frame_html(env_frame, "environment", {"key", "value"}),
    )


def write_html(run: Run, env: dict, figures: list[FigureInfo], headline: pd.DataFrame, report_md: str,
               sections: list[tuple[str, str]] | None = None) -> Path:
    """Write ``report.html`` into the run's folder."""
    path = run.path / HTML_FILE
    path.write_text(render_html(run, env, figures, headline, report_md, sections), encoding="utf-8")
    return path
