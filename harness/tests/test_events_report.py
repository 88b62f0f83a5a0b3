"""The events section (harness.report.sections.events) from a synthetic events run: its figure
(one log-log panel per problem, the plotted CSV), the fused kernel's lead per problem and N, the
event-count line and the README paragraph all come from the rows."""
from __future__ import annotations

import pandas as pd

from harness.report.sections import events as events_report
from harness.results.cells import cell_table
from harness.results.schema import conform

#: (problem, backend, method, {N: median seconds}): fused is 1 ms at N=8 and grows with N.
TIMES = [
    ("bouncing_ball", "fused", "tsit5_event", {8: 1e-3, 64: 2e-3, 524288: 0.5}),
    ("bouncing_ball", "array", "tsit5_event", {8: 4e-3, 64: 5e-2}),
    ("bouncing_ball", "torchdiffeq", "dopri5_event", {8: 0.1, 64: 1.0}),
    ("lorenz_plane", "fused", "tsit5_event", {8: 1e-3, 64: 2e-3}),
    ("lorenz_plane", "diffrax", "tsit5_event", {8: 3e-3, 64: 8e-3}),
    ("pk_doses", "fused", "tsit5_event", {8: 1e-3}),
    ("pk_doses", "array", "tsit5_event", {8: 2e-3}),
]


def synthetic(tmp_path) -> pd.DataFrame:
    rows = []
    for problem, backend, method, times in TIMES:
        for n, t in times.items():
            rows += [{"schema_version": 1, "run_id": "r", "suite": "events", "problem": problem, "backend": backend,
                      "variant": "", "method": method, "mode": "adaptive", "dtype": "float32", "n": n,
                      "device": "cpu", "rtol": 1e-6, "atol": 1e-6, "status": "ok", "reason": "", "repeat": r,
                      "time_s": t, "steps_mean": 50.0, "max_rel_err": 1e-5, "events_mean": 4.5, "events_max": 6.0,
                      "event_count_errors": 0.0, "max_event_t_err": 1e-7, "step_control": "per-trajectory"}
                     for r in range(2)]
    rows.append(dict(rows[-1], backend="diffrax", n=8, status="failed", reason="cell timed out", repeat=-1,
                     time_s=float("nan")))
    df = conform(pd.DataFrame(rows))
    df.to_csv(tmp_path / "results.csv", index=False)
    return df


def test_section_draws_time_vs_n_per_problem_and_states_the_lead(tmp_path):
    df = synthetic(tmp_path)
    text = events_report.report_section(tmp_path, cell_table(df))
    assert text.startswith("## Events")
    assert "![events: time per solve vs N](figures/events_time_vs_n.png)" in text
    plotted = pd.read_csv(tmp_path / "figures" / "events_time_vs_n.csv")
    assert sorted(plotted["problem"].unique()) == ["bouncing_ball", "lorenz_plane", "pk_doses"]
    assert len(plotted) == sum(len(t) for *_, t in TIMES)
    assert (tmp_path / "figures" / "events_time_vs_n.svg").stat().st_size > 0
    # the lead per problem and N, read from the rows (median over the fused kernel's)
    assert "array 4x at N=8, 25x at N=64" in text
    assert "torchdiffeq 100x at N=8, 500x at N=64" in text
    assert "diffrax 3x at N=8, 4x at N=64" in text
    assert "fused 0.5 s at N=524,288" in text
    assert "0 trajectories with a wrong number of events" in text
    assert "pk_doses diffrax N=8 float32: failed (cell timed out)" in text


def test_readme_paragraph_reads_the_events_run_it_is_given(tmp_path):
    run = tmp_path / "20261207T000000Z-events-vm"
    run.mkdir()
    df = synthetic(run)
    text = events_report.readme_paragraph(run, cell_table(df))
    assert text.startswith("**Events**") and run.name in text
    assert "bouncing ball: array 4x at N=8, 25x at N=64" in text and "pk doses: array 2x at N=8" in text


def test_no_section_without_event_cells(tmp_path):
    df = synthetic(tmp_path)
    other = df.assign(problem="lorenz", method="tsit5")
    other.to_csv(tmp_path / "results.csv", index=False)
    assert events_report.report_section(tmp_path, cell_table(other)) is None
    assert events_report.readme_paragraph(tmp_path, cell_table(other)) is None

