"""The scaling section (harness.report.sections.scaling) from a synthetic sharded run: figure, plotted CSV,
table and README paragraph come from the rows; a run without sharded rows gets no section."""
from __future__ import annotations

import json

import pandas as pd

from harness.report.sections import scaling as scaling_report
from harness.results.cells import cell_table
from harness.results.schema import conform


def _row(problem, n, k, threads, t, shard_solves=None, mode="fixed"):
    harness = {}
    if k:
        harness = {"shards": [{"solve_s": [s, s]} for s in shard_solves],
                   "overhead_s": [t - max(shard_solves)] * 2}
    return [{"schema_version": 1, "run_id": "r", "suite": "scaling", "method": "tsit5", "dtype": "float32",
             "device": "cpu", "variant": "", "reason": "",
             "problem": problem, "backend": "fused", "mode": mode, "n": n, "shards": k or None,
             "threads": threads, "status": "ok", "repeat": r, "time_s": t, "steps_mean": 1000.0,
             "max_scaled_err": 0.5, "settings": json.dumps({"harness": harness})} for r in range(2)]


def synthetic() -> pd.DataFrame:
    rows = (_row("lorenz", 1024, 0, 1, 1.0) + _row("lorenz", 1024, 0, 2, 0.55)
            + _row("lorenz", 1024, 1, 1, 1.1, [1.0]) + _row("lorenz", 1024, 2, 1, 0.6, [0.5, 0.5])
            + _row("lorenz", 1024, 4, 1, 0.65, [0.5] * 4) + _row("lorenz", 512, 1, 1, 0.6, [0.5])
            + _row("lorenz", 2048, 4, 1, 1.2, [1.0] * 4)
            + _row("lorenz_mpi", 4096, 2, 1, 3.0, [2.5, 2.4], mode="adaptive"))
    return conform(pd.DataFrame(rows))


def test_section_draws_strong_and_weak_scaling_from_the_rows(tmp_path):
    text = scaling_report.report_section(tmp_path, cell_table(synthetic()))
    assert text.startswith("## Sharded ensembles")
    plotted = pd.read_csv(tmp_path / "figures" / "scaling.csv")
    strong = plotted[(plotted["panel"] == "strong") & (plotted["series"] == "sharded")]
    assert list(strong["K"]) == [1, 2, 4] and set(strong["n"]) == {1024}
    weak = plotted[plotted["panel"] == "weak"]
    assert list(weak["K"]) == [1, 2, 4] and list(weak["n"] // weak["K"]) == [512] * 3
    assert (tmp_path / "figures" / "scaling.png").stat().st_size > 0
    assert "| lorenz_mpi | adaptive | 4,096 | 2 | 1 | 3 | 2.5 | 0.5 |" in text
    assert "holds no time for its 2^30 run" in text


def test_no_section_without_sharded_rows(tmp_path):
    df = synthetic()
    assert scaling_report.report_section(tmp_path, cell_table(df[df["shards"].isna()])) is None


def test_readme_paragraph_reads_the_scaling_run_it_is_given(tmp_path):
    run = tmp_path / "20261201T000000Z-scaling-vm"
    text = scaling_report.readme_paragraph(run, cell_table(synthetic()))
    assert "K = 1: 1.1 s, K = 2: 0.6 s, K = 4: 0.65 s" in text and run.name in text
    assert "N = 4,096 (t in [0, 10]) took 3 s on 2 workers" in text
    unsharded = synthetic()[lambda d: d["shards"].isna()]
    assert scaling_report.readme_paragraph(run, cell_table(unsharded)) is None
