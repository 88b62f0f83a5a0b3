"""Where and in what order cells run: suites, gates, executors (here or on Dask), the sweep and
the ``run`` session (harness.run.session.run_session)."""
