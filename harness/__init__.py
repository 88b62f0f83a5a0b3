"""The benchmark harness: suites, the runner that owns the clock, results and environment.

Command line: ``python -m harness run --suite smoke`` (see ``python -m harness --help``).
Modules: ``suites`` (TOML suites -> cells), ``clock`` (the timed region), ``execute`` (one cell's
lifecycle -> rows), ``runner`` (the sweep: isolation, time limits, resume), ``results`` (the CSV),
``environment`` (the fingerprint), ``schema`` (the columns).
"""
