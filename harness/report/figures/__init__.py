"""Figures of the reproduction: pure functions of a results table (see :mod:`.core`).

Public surface: :func:`make_figures`, :class:`FigureInfo`, :data:`FIGURES`, and the fixed colour
per backend. Every figure is written by :mod:`.canvas`.
"""
from harness.report.figures.canvas import FigureInfo
from harness.report.figures.core import FIGURES, make_figures
from harness.report.figures.style import BACKEND_COLOURS, backend_colour, backend_label

__all__ = ["BACKEND_COLOURS", "FIGURES", "FigureInfo", "backend_colour", "backend_label", "make_figures"]
