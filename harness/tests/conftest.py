"""One synthetic run folder with its report written, shared by the report tests (drawing is slow)."""
from __future__ import annotations

import json

import pytest

from harness.results.paper import PAPER_DATA_ENV


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    """(run_dir, report.md path, report.md text) for the synthetic results (no published data)."""
    from harness.report import markdown as report
    from harness.tests.test_plots import ENV, synthetic_results

    run_dir = tmp_path_factory.mktemp("run")
    synthetic_results().to_csv(run_dir / "results.csv", index=False)
    (run_dir / "environment.json").write_text(json.dumps(ENV))
    with pytest.MonkeyPatch.context() as mp:
        # A path that is not a folder: the report must still be written, saying so.
        mp.setenv(PAPER_DATA_ENV, str(run_dir / "no-paper-data-here"))
        path = report.write_report(run_dir, dpi=30)
    return run_dir, path, path.read_text(encoding="utf-8")
