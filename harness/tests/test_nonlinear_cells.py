"""Nonlinear cells through the kind-agnostic runner, and the nonlinear report section."""
import math

import pandas as pd

from harness.measure.accuracy import violation
from harness.measure.execute import execute_cell
from harness.report.sections.nonlinear import array_over_fused, readme_paragraph, report_section, summary, nonlinear_rows
from harness.measure.execute import Cell
from harness.run.suites import load_suite
from solvers.base import SolveSpec


def _cell(backend, method="newton", n=16, max_steps=50, dtype="float64"):
    tol = 1e-10 if dtype == "float64" else 1e-5
    spec = SolveSpec("generalized_rosenbrock", method, "adaptive", dtype, n, rtol=tol, atol=tol, max_steps=max_steps)
    return Cell(backend=backend, spec=spec, repeats=1, warmups=0, timeout_s=120)


def test_rows_carry_iterations_and_the_error_against_the_root():
    for backend in ("fused", "array"):
        rows = execute_cell(_cell(backend))
        assert [r["status"] for r in rows] == ["ok"], rows
        r = rows[0]
        assert 5 <= r["steps_mean"] <= r["steps_max"] <= 20
        assert r["failed_trajectories"] == 0 and r["max_rel_err"] <= 1e-9 and r["max_scaled_err"] <= 10
        assert violation(r) is None


def test_non_converged_systems_become_a_count_and_a_reason_not_an_error():
    rows = execute_cell(_cell("fused", max_steps=3))
    r = rows[0]
    assert r["status"] == "failed" and r["failed_trajectories"] == 16  # every system hit the cap
    assert "NOT_CONVERGED 16" in r["reason"]
    rows = execute_cell(_cell("torchdiffeq"))
    assert rows[0]["status"] in ("unsupported", "unavailable")


def test_suite_loads_and_every_cell_is_a_nonlinear_solve():
    suite = load_suite("nonlinear")
    assert suite.cells and all(c.spec.prob.kind == "nonlinear" for c in suite.cells)
    assert {c.backend for c in suite.cells} >= {"fused", "array", "optimistix", "torch-newton", "scipy-root"}


def _fake_run(tmp_path):
    rows = []
    for backend, times in (("fused", (0.01, 0.1)), ("array", (0.05, 2.0))):
        for n, t in zip((8, 1024), times):
            rows.append({"problem": "generalized_rosenbrock", "backend": backend, "variant": "", "method": "newton",
                         "dtype": "float32", "device": "cpu", "n": n, "status": "ok", "time_s": t, "compile_s": 1.0,
                         "steps_mean": 9.0, "steps_max": 11, "failed_trajectories": 0, "max_rel_err": 0.0,
                         "max_scaled_err": 0.0})
    rows.append(dict(rows[0], problem="lorenz"))
    return pd.DataFrame(rows)


def test_report_section_reads_ratios_from_the_data(tmp_path):
    df = _fake_run(tmp_path)
    summ = summary(nonlinear_rows(df))
    assert array_over_fused(summ, method="newton", dtype="float32") == [(8, 5.0), (1024, 20.0)]
    text = report_section(tmp_path, df)
    assert "5.0x at N=8, 20.0x at N=1024" in text
    assert (tmp_path / "figures" / "nonlinear_time_vs_n.png").is_file()
    plotted = pd.read_csv(tmp_path / "figures" / "nonlinear_time_vs_n.csv")
    assert len(plotted) == 4
    assert report_section(tmp_path, df[df["problem"] == "lorenz"]) is None


def test_readme_paragraph_needs_a_committed_run(tmp_path, monkeypatch):
    import harness.results.feature_runs as fr

    monkeypatch.setattr(fr, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(fr.latest_run, "__defaults__", (tmp_path,))
    assert readme_paragraph(tmp_path, pd.DataFrame()) is None
    run = tmp_path / "20261201T000000Z-nonlinear-vm"
    run.mkdir()
    _fake_run(tmp_path).to_csv(run / "results.csv", index=False)
    text = readme_paragraph(tmp_path, pd.DataFrame())
    assert "5.0x at N=8" in text and run.name in text and not math.isnan(len(text))


def test_systems_that_do_not_converge_are_a_result_for_nonlinear_rows_only():
    row = {"problem": "generalized_rosenbrock", "status": "ok", "failed_trajectories": 70.0,
           "max_rel_err": 0.0, "max_scaled_err": 0.0}
    assert violation(row) is None  # counted in the row and the report, not a harness error
    assert violation({**row, "problem": "lorenz"}) == "70 failed trajectories"
