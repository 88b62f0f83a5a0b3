"""Where and in what order cells run: suites, gates, executors (here or on Dask), the sweep and
the ``run`` session."""
from harness.run.session import run_session
from harness.run.suites import load_suite
from harness.run.sweep import run_sweep

__all__ = ["load_suite", "run_session", "run_sweep"]
