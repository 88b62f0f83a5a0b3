"""Every figure the harness draws is checked as it is written (canvas.figure_problems): these tests
show the check catches what it should, and that every committed run's report passes it."""
import shutil
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from harness.report.figures.canvas import MAX_LEGEND_ENTRIES, figure_problems, write_files

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_RUNS = sorted(p for p in (ROOT / "results").glob("2*") if (p / "results.csv").is_file())


def _figure(ncols=1):
    fig = Figure(figsize=(4, 3))
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def test_an_empty_panel_is_named():
    fig, (a, b) = _figure(2)
    a.plot([1, 2], [3, 4])
    a.set_xlabel("N")
    a.set_ylabel("time (s)")
    b.set_title("lower")
    assert figure_problems(fig) == ["panel 2 (lower) has no data"]


def test_an_unlabelled_axis_is_named_unless_a_shared_neighbour_labels_it():
    fig, (a,) = _figure()
    a.plot([1, 2], [3, 4])
    a.set_xlabel("N")
    assert figure_problems(fig) == ["panel 1 (untitled) has an unlabelled y axis"]
    fig = Figure()
    a, b = fig.subplots(1, 2, sharey=True)
    for ax in (a, b):
        ax.plot([1, 2], [3, 4])
        ax.set_xlabel("N")
    a.set_ylabel("time (s)")
    assert figure_problems(fig) == []


def test_bars_with_named_categories_need_no_axis_label():
    fig, (a,) = _figure()
    a.bar(["fused", "diffrax"], [1.0, 2.0])
    a.set_ylabel("time (s)")
    assert figure_problems(fig) == []


def test_a_long_legend_is_refused_when_strict(tmp_path, monkeypatch):
    fig, (a,) = _figure()
    for i in range(MAX_LEGEND_ENTRIES + 1):
        a.plot([1, 2], [i, i + 1], label=f"series {i}")
    a.set_xlabel("N")
    a.set_ylabel("time (s)")
    a.legend()
    monkeypatch.setenv("ODEBENCH_STRICT_FIGURES", "1")
    with pytest.raises(ValueError, match="legend has 13 entries"):
        write_files(fig, tmp_path, "long", pd.DataFrame())
    monkeypatch.delenv("ODEBENCH_STRICT_FIGURES")
    with pytest.warns(UserWarning, match="legend has 13 entries"):
        write_files(fig, tmp_path, "long", pd.DataFrame())


@pytest.mark.slow
@pytest.mark.parametrize("run", COMMITTED_RUNS, ids=lambda p: p.name)
def test_every_figure_of_every_committed_report_passes(run, tmp_path, monkeypatch):
    """Rebuilding a committed run's report (strict: a defective figure raises) succeeds."""
    from harness.report.markdown import write_report

    monkeypatch.setenv("ODEBENCH_STRICT_FIGURES", "1")
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    write_report(copy)
    assert list((copy / "figures").glob("*.png"))
