"""The benchmark harness: suites, the runner that owns the clock, results and environment.

Command line: ``python -m harness run --suite smoke`` (see ``python -m harness --help``).
Folders, each importing only those before it: ``results`` (the schema, the CSV, the cell table),
``measure`` (one cell: its lifecycle, the clock, threads, load, launches, accuracy, the
environment fingerprint), ``run`` (suites, gates, executors, the sweep and the ``run`` session,
Dask) and ``gpu_profile``, then ``report``; ``cli`` on top.

The public names below are resolved on first use (PEP 562), not at import: ``python -m
harness.packages`` must run on a bare system Python, before numpy or pandas exist (the Makefile
checks packages with it before any venv is built).
"""
from __future__ import annotations

import importlib

#: name -> the module that defines it.
_PUBLIC = {
    "load_suite": "harness.run.suites",
    "run_sweep": "harness.run.sweep",
    "execute_cell": "harness.measure.execute",
    "read_results": "harness.results.store",
    "cell_table": "harness.results.cells",
    "write_report": "harness.report.markdown",
    "benchmark_ensemble": "harness.measure.ensemble",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
