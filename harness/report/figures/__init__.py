"""Figures of the reproduction: pure functions of a results table (see :mod:`.figures`).

Public surface: :func:`make_figures`, :class:`FigureInfo`, :data:`FIGURES`, the cell and
speedup tables the report also reads, and the fixed colour per backend.
"""
from harness.results.cells import cell_table, paper_speedups, speedup_table, sweep_cells
from harness.report.figures.core import FIGURES, FigureInfo, make_figures
from harness.report.figures.style import BACKEND_COLOURS, backend_colour, backend_label

__all__ = ["BACKEND_COLOURS", "FIGURES", "FigureInfo", "backend_colour", "backend_label",
           "cell_table", "make_figures", "paper_speedups", "speedup_table", "sweep_cells"]
