"""The report: numbers computed from the data, the omissions, working links, clear bad-input errors."""
from __future__ import annotations

import json
import re

import pytest

from harness import report
from harness.paper_data import PAPER_DATA_ENV
from harness.schema import SchemaError
from harness.tests.test_plots import ENV, synthetic_results


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A run folder with the synthetic results, its report written (published data hidden)."""
    run_dir = tmp_path_factory.mktemp("run")
    synthetic_results().to_csv(run_dir / "results.csv", index=False)
    (run_dir / "environment.json").write_text(json.dumps(ENV))
    with pytest.MonkeyPatch.context() as mp:
        # A path that is not a folder: the report must still be written, saying so.
        mp.setenv(PAPER_DATA_ENV, str(run_dir / "no-paper-data-here"))
        path = report.write_report(run_dir, dpi=30)
    return run_dir, path, path.read_text(encoding="utf-8")


def test_report_is_written_in_the_run_folder(written):
    run_dir, path, text = written
    assert path == run_dir / "report.md"
    assert text.startswith("# Benchmark report: synthetic")
    for heading in ("## The claim", "## Speedups at key N", "## Figures", "## Accuracy and amount of work",
                    "## Omissions", "## Settings of every backend", "## Environment"):
        assert heading in text


def test_speedup_table_holds_the_computed_ratios(written):
    text = written[2]
    # diffrax / fused at N=8, fixed dt=1e-3: (9000*6e-6 + 8*1000*3e-8) / (2e-4 + 8*1000*1e-9)
    expected = (9000 * 6e-6 + 8 * 1000 * 3e-8) / (2e-4 + 8 * 1000 * 1e-9)
    assert f"{expected:.0f}×" == "261×"
    row = next(line for line in text.splitlines()
               if line.startswith("| float32, cpu | dt 0.001 | diffrax vmap (JAX), Tsit5 | Tsit5 | 8 |"))
    assert "| 261× | 261× |" in row
    # torchdiffeq is compared at another method, and the table says so.
    torch_rows = [line for line in text.splitlines() if "torchdiffeq batched (PyTorch), RK4 3/8 rule | Tsit5" in line]
    assert torch_rows and all("3/8 rule" in line.split("|")[-2] for line in torch_rows)
    # The reading of figure 1 states the same numbers as the table.
    assert "At N=8 the fused kernel (ours), Tsit5 took 208 µs vs" in text
    assert "diffrax vmap (JAX), Tsit5 54.2 ms (261×)" in text


def test_omissions_list_the_failed_cell_and_its_reason(written):
    omissions = written[2].split("## Omissions", 1)[1].split("\n## ", 1)[0]
    assert "| lorenz | torchdiffeq |  | rk4_38 | adaptive | float32 | cpu | 8 |" in omissions
    assert "torchdiffeq rk4_38 has no adaptive mode" in omissions
    assert "| lorenz | diffrax vmap (JAX), Tsit5 | tsit5 | adaptive | float32 | cpu | 2048 | 2 |" in omissions
    assert "fig7_sir (no SIR cells in this run)" in omissions


def test_links_are_relative_and_point_to_existing_files(written):
    run_dir, _, text = written
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) == 7 * 3, "three links (PNG, SVG, CSV) per drawn figure"
    for link in links:
        assert not link.startswith("/") and (run_dir / link).is_file(), link


def test_settings_and_environment_and_missing_paper_data_are_reported(written):
    text = written[2]
    settings = text.split("## Settings of every backend", 1)[1]
    assert "### fused kernel (ours) (`fused`), adaptive" in settings
    assert "| controller.beta1 | 0.14 | 0.14 |" in settings
    assert "| cpu_model | Synthetic CPU |" in text
    assert "The published timing files were not found" in text
    assert "Published data: not available" in text


def test_missing_and_empty_results_give_one_line_errors(tmp_path):
    with pytest.raises(SchemaError, match="does not exist"):
        report.write_report(tmp_path / "nowhere")
    with pytest.raises(SchemaError, match="results.csv is missing"):
        report.write_report(tmp_path)
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(SchemaError, match="is empty") as err:
        report.write_report(tmp_path)
    assert "\n" not in str(err.value)
    synthetic_results().head(0).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match="no rows"):
        report.write_report(tmp_path)
    synthetic_results().drop(columns=["time_s"]).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match="missing columns: time_s"):
        report.write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_unreadable_environment_is_noted_not_fatal(tmp_path):
    (tmp_path / "environment.json").write_text("{not json")
    env, note = report.load_environment(tmp_path)
    assert env == {} and "could not be read" in note
    env, note = report.load_environment(tmp_path / "other")
    assert env == {} and "missing" in note
