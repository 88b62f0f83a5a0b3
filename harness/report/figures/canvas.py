"""Where every figure of the harness is made and written: one deterministic saver.

:func:`write_files` writes a figure as PNG and SVG and its plotted data as CSV so that drawing the
same data twice gives the same bytes: the SVG has no date and a fixed hash salt (its clip-path
ids derive from it), the PNG has no Software or date entry, and the CSV has ``\\n`` line ends,
floats written as their shortest round-trip text and the rows in the order the figure gives them
(every figure sorts its data by key columns, never by row order of the results).
:func:`save` adds the environment footnote and fills a :class:`FigureInfo`; the report's
figures, the story figures, every report section and the GPU-profile comparison go through it.

Only the object-oriented Matplotlib API is used here (``matplotlib.figure.Figure``, saved
through the Agg and SVG canvases), so nothing here touches pyplot's global state.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from harness.report.figures import style

#: Formats written for every figure (the CSV of plotted data comes in addition).
IMAGE_FORMATS = ("png", "svg")

#: More legend entries than this cannot be read beside a figure (issue: a 28-entry legend).
MAX_LEGEND_ENTRIES = 12

#: Salt of the SVG's generated ids (clip paths): fixed, so the ids repeat from run to run.
SVG_HASH_SALT = "odeensemble-figures"


@dataclass
class FigureInfo:
    """One figure: what was written, or why it was skipped.

    Attributes:
        name: file stem, e.g. "fig1_lorenz_fixed_time".
        title: one-line title.
        paths: files written (PNG, SVG, CSV), empty when skipped.
        skipped: "" when drawn, else the reason it was not.
        data: the plotted data (what the CSV holds), None when skipped.
        notes: caveats shown in the footnote (and repeated by the report).
        extra: figure-specific results the report reads (e.g. the fitted model coefficients).
    """

    name: str
    title: str
    paths: list[Path] = field(default_factory=list)
    skipped: str = ""
    data: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class FigureContext:
    """What the report's figures are drawn from and where they go."""

    cells: pd.DataFrame
    published: pd.DataFrame
    published_note: str
    env: dict
    devices: list[str]
    out_dir: Path
    dpi: int


def new_figure(dpi: int, nrows: int = 1, width: float = 6.0, height: float = 3.8,
               ncols: int = 1) -> tuple[Figure, list]:
    """A figure of ``nrows`` x ``ncols`` panels (row-major list of axes)."""
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    if nrows > 1:
        fig.subplots_adjust(hspace=0.45)
    return fig, [ax for row in axes for ax in row]


def log_axes(ax, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
             title_size: int = 9) -> None:
    """Log-log axes with the labels, title and grid every figure uses."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=title_size)


def add_footnote(fig: Figure, text: str) -> None:
    """``text`` below everything drawn so far (axis labels included), so it never overlaps them."""
    content = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer())
    top = min(-0.01, content.y0 / fig.get_figheight() - 0.02)
    fig.text(0.0, top, text, fontsize=7, va="top", ha="left", color="#333333")


def _has_data(ax) -> bool:
    """True when the axes draws at least one finite data point (a line, marker, bar or image)."""
    for line in ax.get_lines():
        x, y = (np.asarray(v, dtype=float) for v in line.get_data())
        if x.size and np.isfinite(x).any() and np.isfinite(y).any():
            return True
    if any(len(c.get_offsets()) or len(c.get_paths()) for c in ax.collections):
        return True
    return bool(ax.images) or any(p.get_height() != 0 or p.get_width() != 0 for p in ax.patches
                                   if hasattr(p, "get_height"))


def _is_categorical(axis) -> bool:
    """An axis whose ticks name categories (bars) needs no axis label or unit."""
    return bool(axis.get_ticklabels()) and axis.get_scale() == "linear" and all(
        t.get_text() and not t.get_text().lstrip("−-").replace(".", "").replace("%", "").isdigit()
        for t in axis.get_ticklabels() if t.get_text())


def figure_problems(fig: Figure) -> list[str]:
    """What makes ``fig`` unreadable: a visible panel without data, an unlabelled data axis, a
    legend of more than MAX_LEGEND_ENTRIES entries. Empty when the figure is fine."""
    FigureCanvasAgg(fig).draw()  # tick labels exist only once drawn
    problems = []
    for i, ax in enumerate(a for a in fig.axes if a.get_visible() and a.axison):
        where = f"panel {i + 1} ({ax.get_title() or 'untitled'})"
        if not _has_data(ax):
            problems.append(f"{where} has no data")
            continue
        for axis, label, shared in ((ax.xaxis, ax.get_xlabel(), ax.get_shared_x_axes()),
                                    (ax.yaxis, ax.get_ylabel(), ax.get_shared_y_axes())):
            # a panel sharing its axis with a labelled neighbour is labelled by it
            labelled_by_sibling = any(
                (a.get_xlabel() if axis is ax.xaxis else a.get_ylabel()).strip()
                for a in shared.get_siblings(ax) if a is not ax)
            if not label.strip() and not labelled_by_sibling and not _is_categorical(axis):
                problems.append(f"{where} has an unlabelled {axis.axis_name} axis")
    # a legend kept with ax.add_artist (a second legend beside the first) is a child, not get_legend()
    legends = [*fig.legends, *(c for ax in fig.axes for c in ax.get_children() if isinstance(c, Legend))]
    for lg in legends:
        if len(lg.get_texts()) > MAX_LEGEND_ENTRIES:
            problems.append(f"a legend has {len(lg.get_texts())} entries (at most {MAX_LEGEND_ENTRIES})")
    return problems


def tag(artists, key: str):
    """Name drawn artists ``series:<key>`` (their SVG group id) so report.html can show/hide them.
    Accepts an artist, a list of them, or a container (an errorbar's line, caps and bars)."""
    if isinstance(artists, (list, tuple)):   # matplotlib containers are tuples
        for a in artists:
            tag(a, key)
    elif artists is not None:
        artists.set_gid(f"series:{key}")
    return artists


def write_files(fig: Figure, out_dir: Path, name: str, data: pd.DataFrame, *,
                dpi: int | None = None) -> list[Path]:
    """``<name>.png``, ``<name>.svg`` and ``<name>.csv`` in ``out_dir``, byte-reproducibly.

    The image is cut to the figure's tight bounding box (computed once, shared by both formats).
    """
    problems = figure_problems(fig)
    if problems:
        # Tests and `make test` set ODEBENCH_STRICT_FIGURES: a defective figure fails them; a user's
        # report still gets its figure, with the defect named on the console.
        message = f"figure {name}: " + "; ".join(problems)
        if os.environ.get("ODEBENCH_STRICT_FIGURES"):
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bbox = fig.get_tightbbox(FigureCanvasAgg(fig).get_renderer()).padded(0.1)
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": SVG_HASH_SALT, "svg.fonttype": "path"}):
        for fmt in IMAGE_FORMATS:
            path = out_dir / f"{name}.{fmt}"
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(path, format=fmt, metadata=metadata, bbox_inches=bbox, dpi=dpi or fig.dpi)
            paths.append(path)
    csv_path = out_dir / f"{name}.csv"
    data.to_csv(csv_path, index=False, lineterminator="\n")
    paths.append(csv_path)
    return paths


def save(ctx: FigureContext, info: FigureInfo, fig: Figure, data: pd.DataFrame,
         notes: list[str]) -> FigureInfo:
    """Footnote (environment and ``notes``), write PNG/SVG/CSV, and fill ``info``."""
    add_footnote(fig, style.footnote_text(ctx.env, ctx.devices, notes))
    info.paths = write_files(fig, ctx.out_dir, info.name, data)
    info.data, info.notes = data, notes
    return info


__all__ = ["figure_problems", "MAX_LEGEND_ENTRIES", "FigureContext", "FigureInfo", "IMAGE_FORMATS", "add_footnote", "log_axes", "new_figure",
           "save", "tag", "write_files"]
