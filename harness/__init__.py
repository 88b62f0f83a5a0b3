"""The benchmark harness: suites, the runner that owns the clock, results and environment.

Command line: ``python -m harness run --suite smoke`` (see ``python -m harness --help``).
Folders: ``results`` (the schema, the CSV, the cell table), ``measure`` (one cell: its lifecycle,
the clock, threads, launches, accuracy, the environment fingerprint), ``run`` (suites, gates,
executors, the sweep and the ``run`` session, Dask), ``report`` and ``gpu_profile``.

This package imports nothing itself: ``python -m harness.packages`` must run on a bare system
Python (the Makefile checks packages with it before any venv exists).
"""
