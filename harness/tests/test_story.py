"""Headline figures: pure functions of the results table, findings from the data, floors only if measured."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.results.cells import cell_table
from harness.report.figures.canvas import FigureContext
from harness.report.figures.story import STORY_FIGURES, make_story_figures, measured_floor
from harness.report.figures.style import dispatch_kind, mode_linestyle, published_colour
from harness.results.schema import validate
from harness.tests.test_plots import ENV, published_sample, synthetic_results


def _draw(df: pd.DataFrame, out, run_dir=None):
    cells = cell_table(df)
    ctx = FigureContext(cells=cells, published=published_sample(), published_note="", env=ENV,
                   devices=["cpu"], out_dir=out, dpi=30)
    return make_story_figures(ctx, run_dir)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    out = tmp_path_factory.mktemp("story")
    df = validate(synthetic_results())
    run_dir = out / "run"
    run_dir.mkdir()
    (run_dir / "peak.json").write_text(json.dumps({"ns_per_trajectory_step": 0.5, "how": "synthetic"}))
    first = _draw(df, out / "a", run_dir)
    second = _draw(df.sample(frac=1.0, random_state=11).reset_index(drop=True), out / "b", run_dir)
    return first, second


def test_story_figures_are_pure_functions_of_the_table(drawn):
    first, second = drawn
    assert [f.name for f in first] == list(STORY_FIGURES)
    drawn_names = {f.name for f in first if not f.skipped}
    assert {"story1_headline_speedup", "story2_fused_vs_replica", "story3_throughput",
            "story5_first_solve"} <= drawn_names
    for a, b in zip(first, second):
        assert a.skipped == b.skipped
        for pa, pb in zip(a.paths, b.paths):
            if pa.suffix in (".csv", ".svg"):
                assert pa.read_bytes() == pb.read_bytes(), f"{pa.name} depends on row order"


def test_findings_state_numbers_from_the_data(drawn):
    figs = {f.name: f for f in drawn[0]}
    replica = figs["story2_fused_vs_replica"]
    data = replica.data.pivot(index="n", columns="backend", values="time_median_s")
    ratio = data["array"] / data["fused"]
    assert f"{ratio.iloc[0]:.0f}× slower" in replica.extra["finding"]
    assert "7,000 array operations" in replica.extra["finding"]
    headline = figs["story1_headline_speedup"].data
    ours = headline[headline["source"] == "this run"]
    assert (ours["speedup_lo"] <= ours["speedup"]).all() and (ours["speedup"] <= ours["speedup_hi"]).all()


def test_floor_drawn_only_from_a_measured_peak(drawn, tmp_path):
    figs = {f.name: f for f in drawn[0]}
    assert any("measured hardware floor 0.5 ns" in n for n in figs["story3_throughput"].notes)
    floor, why = measured_floor(tmp_path)
    assert np.isnan(floor) and "no measured peak" in why


def test_encoding_helpers():
    assert published_colour("diffrax vmap (JAX)").startswith("#") and published_colour("x") != "#1f77b4"
    assert mode_linestyle("fixed", float("nan")) == "-" and mode_linestyle("adaptive", 1e-8) != "--"
    assert dispatch_kind("cpu: ATen operators dispatched") == "ATen operators"
    assert dispatch_kind("calls of the prepared's jitted callables") == "XLA executable calls"
