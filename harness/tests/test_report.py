"""The report: short, headline first, numbers computed from the data, a working appendix and page."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from harness.report import markdown as report
from harness.report.appendix import APPENDIX_FILE
from harness.report.findings import verdict
from harness.report.inputs import Run, load_environment
from harness.report.sections import Section, SectionContext
from harness.results.cells import cell_table
from harness.results.headline import headline_settings, headline_table
from harness.results.schema import SchemaError
from harness.tests.test_plots import synthetic_results


def test_report_is_short_and_headline_first(written):
    run_dir, path, text = written
    assert path == run_dir / "report.md"
    assert len(text.splitlines()) < 250
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## The answer", "## Headline: fused kernel vs each library at its strongest",
                            "## Verdict", "## Figures"]
    assert headings[-1] == "## Omissions"
    appendix = (run_dir / APPENDIX_FILE).read_text(encoding="utf-8")
    for heading in ("## Speedups at key N", "## Accuracy and amount of work", "## Omissions",
                    "## Settings of every backend", "## Environment"):
        assert heading in appendix and heading not in text.replace("## Omissions", "")


def test_headline_ratio_and_bracket_come_from_the_repeats(written):
    text = written[2]
    # diffrax / fused at N=8, fixed dt=1e-3 (synthetic model times; repeats x1.0, x1.1, x0.95)
    median = (9000 * 6e-6 + 8 * 1000 * 3e-8) / (2e-4 + 8 * 1000 * 1e-9)
    lo, hi = median * 0.95 / 1.1, median * 1.1 / 0.95
    row = next(line for line in text.splitlines() if line.startswith("| diffrax (JAX) | 8 | default | Tsit5 |"))
    assert f"| {median:.0f}× [{lo:.0f}–{hi:.0f}] |" in row
    assert "XLA:CPU †" in row and "† XLA:CPU adds per-operation loop overhead" in text
    torch_row = next(line for line in text.splitlines() if line.startswith("| torchdiffeq batched (PyTorch) | 8 |"))
    assert "RK4 3/8 rule" in torch_row


def test_work_differs_above_1_2x_and_omissions_name_absent_columns(written):
    text = written[2]
    # adaptive synthetic steps: mean 150 everywhere -> same work; no row may say work differs
    assert "work differs" not in text.split("## Verdict")[0]
    omissions = text.split("## Omissions", 1)[1]
    for col in ("threads", "cpu_util", "max_scaled_err"):
        assert f"No `{col}` column" in omissions
    assert "1 cell(s) could not run" in omissions and "torchdiffeq unsupported ×1" in omissions
    assert "No GPU cells" in omissions


def test_figure_captions_state_a_number_and_links_exist(written):
    run_dir, _, text = written
    captions = [line for line in text.splitlines() if line.startswith("**Figure ")]
    assert 5 <= len(captions) <= 8
    assert all(re.search(r"\d", c.split("![")[0]) for c in captions), "each caption states a number"
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert not link.startswith("/") and (run_dir / link).is_file(), link


def test_html_is_self_contained(written):
    page = (written[0] / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and not re.search(r"<script[^>]+src", page)
    assert page.count("<figure") >= 6 and 'id="headline-0"' in page
    assert "<details>" in page, "settings are collapsible"


def _with_threads(df: pd.DataFrame) -> pd.DataFrame:
    """The synthetic table at 2 threads plus a 1-thread copy where fused is 2x slower."""
    two = df.assign(threads=2, cpu_util=np.where(df["backend"] == "fused", 1.9, 1.0))
    one = df.assign(threads=1, cpu_util=1.0)
    one.loc[one["backend"] == "fused", "time_s"] *= 2
    return pd.concat([two, one], ignore_index=True)


def test_headline_has_full_core_and_single_thread_tables_and_tolerates_order():
    df = _with_threads(synthetic_results())
    table = headline_table(df)
    assert {"Lorenz fixed step, dt = 0.001, cpu, 2 threads", "Lorenz fixed step, dt = 0.001, cpu, 1 thread"} <= set(table["setting"])
    a = table.set_index(["setting", "library", "n"])
    full = a.loc[("Lorenz fixed step, dt = 0.001, cpu, 2 threads", "diffrax", 8), "speedup"]
    single = a.loc[("Lorenz fixed step, dt = 0.001, cpu, 1 thread", "diffrax", 8), "speedup"]
    assert single == pytest.approx(full / 2)
    assert a["cpu_util_fused"].notna().all()
    shuffled = headline_table(df.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(table, shuffled)
    assert "At 1 thread" in verdict(table) and "At 2 threads" in verdict(table)


def test_devices_get_their_own_headline_tables():
    df = synthetic_results()
    gpu = df.assign(device="gpu", time_s=df["time_s"] / 10)
    table = headline_table(pd.concat([df, gpu], ignore_index=True))
    settings = list(dict.fromkeys(table["setting"]))
    assert settings[0].endswith("gpu, all cores") and any(s.endswith("cpu, all cores") for s in settings)
    for _, t in table.groupby("setting"):
        assert t["device"].nunique() == 1


def test_strongest_variant_is_the_fastest_and_as_paper_ran_is_beside_it():
    df = synthetic_results()
    fast = df[(df["backend"] == "diffrax") & (df["mode"] == "fixed")].copy()
    fast["variant"], fast["time_s"] = "batched", fast["time_s"] / 5
    slow = df[(df["backend"] == "diffrax") & (df["mode"] == "fixed")].copy()
    slow["variant"], slow["time_s"] = "vmap-of-jit", slow["time_s"] * 2
    table = headline_table(pd.concat([df, fast, slow], ignore_index=True))
    row = table[(table["library"] == "diffrax") & (table["mode"] == "fixed") & (table["n"] == 8)].iloc[0]
    base = table  # the default variant's ratio is 5x the batched one
    assert row["variant"] == "batched"
    plain = headline_table(df)
    p = plain[(plain["library"] == "diffrax") & (plain["mode"] == "fixed") & (plain["n"] == 8)].iloc[0]
    assert row["speedup"] == pytest.approx(p["speedup"] / 5)
    assert row["as_paper_speedup"] == pytest.approx(p["speedup"] * 2)
    assert not base.empty


def test_step_counts_differing_more_than_1_2x_are_labelled():
    df = synthetic_results()
    m = (df["backend"] == "array") & (df["mode"] == "adaptive")
    df.loc[m, "steps_mean"] *= 1.25
    table = headline_table(df)
    notes = table[(table["library"] == "array") & (table["mode"] == "adaptive")]["notes"]
    assert notes.str.contains("work differs").all()
    assert headline_settings(cell_table(df))  # settings found without a threads column


def test_extension_sections_run_in_order_only_where_they_apply_and_failures_are_noted(tmp_path):
    results = synthetic_results().head(3)
    ctx = SectionContext(Run(tmp_path, results, cell_table(results)))
    sections = (Section("good", lambda cells: True, lambda c: f"## Extra\n\n{len(c.results)} rows"),
                Section("elsewhere", lambda cells: False, lambda c: "## Never"),
                Section("bad", lambda cells: True, lambda c: 1 / 0))
    out = report.extension_sections(ctx, sections)
    assert out[0] == ("good", "## Extra\n\n3 rows")
    assert len(out) == 2 and out[1][0] == "bad" and "ZeroDivisionError" in out[1][1]


def test_missing_and_empty_results_give_one_line_errors(tmp_path):
    with pytest.raises(SchemaError, match="does not exist"):
        report.write_report(tmp_path / "nowhere")
    with pytest.raises(SchemaError, match="results.csv is missing"):
        report.write_report(tmp_path)
    (tmp_path / "results.csv").write_text("")
    with pytest.raises(SchemaError, match="is empty") as err:
        report.write_report(tmp_path)
    assert "\n" not in str(err.value)
    synthetic_results().drop(columns=["time_s"]).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ValueError, match="missing columns: time_s"):
        report.write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_unreadable_environment_is_noted_not_fatal(tmp_path):
    (tmp_path / "environment.json").write_text("{not json")
    env, note = load_environment(tmp_path)
    assert env == {} and "could not be read" in note


def test_scaled_error_is_preferred_and_cuda_cpp_is_listed_not_counted():
    df = synthetic_results()
    df["max_scaled_err"] = np.where(df["backend"] == "fused", 0.5, 2.0)
    cpp = df[df["backend"] == "fused"].assign(backend="cuda-cpp")
    table = headline_table(pd.concat([df, cpp], ignore_index=True))
    row = table[(table["library"] == "diffrax") & (table["mode"] == "adaptive")].iloc[0]
    assert (row["err_peer"], row["err_fused"], row["err_kind"]) == (2.0, 0.5, "scaled")
    # a fixed-step solve has no tolerance of its own: its error is the relative one
    fixed = table[(table["library"] == "diffrax") & (table["mode"] == "fixed")].iloc[0]
    assert fixed["err_kind"] == "rel" and fixed["err_peer"] != 2.0
    assert "cuda-cpp" in set(table["library"])
    # the C++ control is its own group, after every peer of its table
    for _, t in table.groupby(["setting", "n"]):
        assert t["library"].tolist()[-1] == "cuda-cpp" and t["group"].tolist()[-1] == "control"
    assert set(table[table["library"] != "cuda-cpp"]["group"]) == {"peer"}
    assert "cuda-cpp" not in verdict(table)


def test_companions_come_from_the_runs_suite_file_when_not_named(tmp_path):
    from harness.report.inputs import RESULTS_DIR, suite_companions

    (tmp_path / "environment.json").write_text('{"suite": {"name": "pso"}}')
    assert suite_companions(tmp_path) == (RESULTS_DIR / "20261207T232121Z-cpu-vm",)
    (tmp_path / "environment.json").write_text('{"suite": {"name": "cpu"}}')
    assert suite_companions(tmp_path) == ()
    (tmp_path / "environment.json").write_text("{}")
    assert suite_companions(tmp_path) == ()
