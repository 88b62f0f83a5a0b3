"""The report's extension sections: the one registry read by report.md and the README generator.

A :class:`Section` says when it applies to a run (from its cell table), renders its Markdown for
the report (and may draw figures into the run's ``figures/``) and, where it has one, a README
paragraph. A section that compares against another run (the swarm and nonlinear sections against
the cpu ODE run) finds it among the context's companions, which the caller names explicitly
(``harness report RUN --companion OTHER``); nothing here scans the checkout for runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from harness.gpu_profile import section as gpu_section
from harness.report.figures.canvas import write_files
from harness.report.inputs import Run, cpu_words
from harness.report.summary import kind_finding
from harness.report.sections import cpp, events, explainer, noise, nonlinear, pso, scaling, sde, sizes
from harness.results.headline import HEADLINE_PROBLEM
from problems.kinds import KINDS


@dataclass(frozen=True)
class SectionContext:
    """What a section renders from: the run being reported and its explicit companion runs."""

    run: Run
    companions: tuple[Run, ...] = field(default=())

    @property
    def run_dir(self) -> Path:
        return self.run.path

    @property
    def results(self) -> pd.DataFrame:
        return self.run.results

    @property
    def cells(self) -> pd.DataFrame:
        return self.run.cells

    def companion(self, kind: str) -> Run | None:
        """The first companion run with cells of ``kind`` (None when no companion has any)."""
        return next((c for c in self.companions if has_kind(c.cells, kind)), None)


@dataclass(frozen=True)
class Section:
    """One extension section: ``applies(cells)``, ``markdown(ctx)`` and an optional ``readme(ctx)``."""

    name: str
    applies: Callable[[pd.DataFrame], bool]
    markdown: Callable[[SectionContext], str | None]
    readme: Callable[[SectionContext], str | None] | None = None
    #: the section's own finding, which a report whose run has no Lorenz headline opens with
    #: (default: its README paragraph, else the first paragraph of its Markdown)
    headline: Callable[[SectionContext], str | None] | None = None
    #: False for sections that explain or check the run rather than state what it measured
    leads: bool = True


def has_kind(cells: pd.DataFrame, kind: str) -> bool:
    """True when the cell table holds a cell of workload ``kind`` (problems.kinds)."""
    return bool((cells["kind"] == kind).any())


def _cells_of(run: Run | None) -> pd.DataFrame | None:
    return None if run is None else run.cells


def _compared_with_ode(render: Callable[[Path, pd.DataFrame, pd.DataFrame | None], str | None]):
    """A report section that sets its fused-vs-array ratio beside the cpu ODE run's
    (``render(run_dir, cells, ode_cells)``); when that companion was measured on another CPU
    than the run, the section says so: the two ratios then come from two machines."""
    def markdown(ctx: SectionContext) -> str | None:
        ode = ctx.companion("ode")
        text = render(ctx.run_dir, ctx.cells, _cells_of(ode))
        if text is None or ode is None:
            return text
        here, there = cpu_words(ctx.run_dir), cpu_words(ode.path)
        if here == there:
            return text
        return (f"{text.rstrip()}\n\n*The ODE ratios come from the cpu reference run `{ode.path.name}`, "
                f"measured on another CPU ({there}) than this run ({here}).*\n")
    return markdown


def _always(cells: pd.DataFrame) -> bool:
    return True


def has_headline_ode(cells: pd.DataFrame) -> bool:
    """True when the run has fused cells of the problem the GPU profile and headline use, of a
    kind whose fused kernels the GPU profile covers (problems.kinds: ``gpu_profiled``)."""
    profiled = cells["kind"].map(lambda k: KINDS[k].gpu_profiled).astype(bool)
    return bool(((cells["backend"] == "fused") & profiled & (cells["problem"] == HEADLINE_PROBLEM)).any())


#: In order of priority for report.md's line budget, and the order of the README's paragraphs.
SECTIONS: tuple[Section, ...] = (
    # why one launch wins, for a reader without HPC background, from the run's own numbers
    Section("explainer", explainer.applies, explainer.report_section, leads=False),
    # GPU machine code, time model, paper check: static evidence of the headline problem's kernels
    Section("gpu_profile", has_headline_ode,
            lambda ctx: gpu_section.report_section(ctx.run_dir, ctx.results, write_files),
            lambda ctx: gpu_section.readme_paragraph(ctx.results), leads=False),
    Section("sde", lambda cells: has_kind(cells, "sde"),
            lambda ctx: sde.report_section(ctx.run_dir, ctx.cells),
            headline=lambda ctx: kind_finding(ctx.cells, "sde")),
    Section("noise", lambda cells: bool((cells["repeats"] > 0).any()),
            lambda ctx: noise.report_section(ctx.cells), leads=False),
    Section("cpp", cpp.applies,
            lambda ctx: cpp.report_section(ctx.cells),
            lambda ctx: cpp.readme_paragraph(ctx.cells), leads=False),
    Section("sizes", sizes.applies,
            lambda ctx: sizes.report_section(ctx.run_dir, ctx.cells),
            lambda ctx: sizes.readme_paragraph(ctx.run_dir, ctx.cells)),
    Section("pso", lambda cells: has_kind(cells, "pso"),
            _compared_with_ode(pso.report_section),
            lambda ctx: pso.readme_paragraph(ctx.run_dir, ctx.cells, _cells_of(ctx.companion("ode")))),
    Section("scaling", scaling.applies,
            lambda ctx: scaling.report_section(ctx.run_dir, ctx.cells),
            lambda ctx: scaling.readme_paragraph(ctx.run_dir, ctx.cells)),
    Section("nonlinear", lambda cells: has_kind(cells, "nonlinear"),
            _compared_with_ode(nonlinear.report_section),
            lambda ctx: nonlinear.readme_paragraph(ctx.run_dir, ctx.cells, _cells_of(ctx.companion("ode")))),
    Section("events", lambda cells: has_kind(cells, "event"),
            lambda ctx: events.report_section(ctx.run_dir, ctx.cells),
            lambda ctx: events.readme_paragraph(ctx.run_dir, ctx.cells)),
)

__all__ = ["SECTIONS", "Section", "SectionContext", "has_headline_ode", "has_kind"]
