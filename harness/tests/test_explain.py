"""The five-minute reading: README's first screen, contended cells marked, the C++ control apart,
dispatch counts at several N, the explainer and Figure 1 built from a run's own rows."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.report.markdown import dirty_note, headline_markdown
from harness.report.summary import CONTENDED_MARK, compact_caption, compact_table
from harness.results.cells import cell_table
from harness.results.headline import headline_table

ROOT = Path(__file__).resolve().parents[2]
CPU_RUN = ROOT / "results" / "20261207T232121Z-cpu-vm"


def test_readme_first_screen_holds_the_answer_figure_1_and_the_table():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = "\n".join(text.splitlines()[:40])
    assert "**The answer.**" in first and "faster" in first
    assert "![Figure 1" in first and "figures/cpu-time_vs_n.png" in first
    assert "| library (its fastest variant) |" in first and "hand-written C++ (control)" in first
    assert "*modelled*" in first
    # no internal vocabulary anywhere in the README
    assert not re.search(r"\b(issues?|lent|goals?)\b", text, re.IGNORECASE), \
        re.search(r".{40}\b(issues?|lent|goals?)\b.{40}", text, re.IGNORECASE)


def _rows(backend: str, n: int, times: list[float], *, variant: str = "", contended: bool = False) -> list[dict]:
    return [dict(problem="lorenz", backend=backend, variant=variant, method="tsit5", mode="fixed",
                 dtype="float32", n=n, device="cpu", dt=1e-3, rtol=float("nan"), atol=float("nan"), threads=2,
                 status="ok", time_s=t, steps_mean=1000.0, steps_max=1000.0, max_rel_err=1e-6,
                 contended=contended, repeat=i) for i, t in enumerate(times)]


def _synthetic() -> pd.DataFrame:
    rows = []
    for n in (8, 32768):
        rows += _rows("fused", n, [1e-4, 1.1e-4, 1.2e-4])
        rows += _rows("diffrax", n, [1e-3, 1.1e-3], contended=(n == 8))
        rows += _rows("diffrax", n, [1e-3, 1.1e-3, 2e-3], variant="batched")
        rows += _rows("cuda-cpp", n, [0.9e-4, 1e-4])
    # one contended repeat makes the whole cell contended
    rows[-1]["contended"] = "True"
    return pd.DataFrame(rows)


def test_contended_cells_get_a_banner_and_a_mark():
    results = _synthetic()
    cells = cell_table(results)
    assert cells[(cells["backend"] == "diffrax") & (cells["variant"] == "") & (cells["n"] == 8)]["contended"].all()
    assert not cells[(cells["backend"] == "fused")]["contended"].any()
    assert cells[(cells["backend"] == "cuda-cpp") & (cells["n"] == 32768)]["contended"].all()
    table = headline_table(results)
    assert table["contended"].any() and set(table["group"]) == {"peer", "control"}
    md = headline_markdown(table)
    assert "**Contended:**" in md and CONTENDED_MARK in md
    from harness.report.findings import verdict

    assert "contended" in verdict(table)
    compact = "\n".join(compact_table(table))
    assert CONTENDED_MARK in compact and CONTENDED_MARK in compact_caption(table)
    # a run without the column reads as quiet
    quiet = headline_table(results.drop(columns=["contended"]))
    assert not quiet["contended"].any() and "**Contended:**" not in headline_markdown(quiet)


def test_the_cpp_control_is_its_own_group_below_the_peers():
    table = headline_table(_synthetic().drop(columns=["contended"]))
    lines = compact_table(table)
    labels = [line.split("|")[1].strip() for line in lines[2:]]
    assert labels[-2:] == ["*control, not a peer:*", "hand-written C++ (control)"]
    md = headline_markdown(table)
    assert md.index("*control, not a peer:*") < md.index("hand-written C++ (control)")
    assert "fused kernel, C++" not in md


def test_accuracy_is_explained_under_each_table():
    md = headline_markdown(headline_table(_synthetic()))
    assert md.count("*Error:*") == md.count("### ")


def test_dirty_tree_names_its_files():
    assert dirty_note({"git": {"commit": "abc", "dirty": False, "dirty_paths": []}}) == ""
    note = dirty_note({"git": {"commit": "abcdef", "dirty": True, "dirty_paths": ["harness/cli.py"]}})
    assert "`harness/cli.py`" in note


def test_launch_counts_at_several_n_per_series(tmp_path):
    from harness.measure.execute import Cell  # noqa: F401 - the gate works on its cells
    from harness.run.gates import LaunchesOncePerSeries
    from harness.run.suites import load_suite

    suite = tmp_path / "mini.toml"
    body = ('description = "x"\ndevice = "cpu"\n{extra}\n[[entries]]\nproblem = "lorenz"\nbackends = ["fused"]\n'
            'methods = ["tsit5"]\nmodes = ["fixed"]\nn = [8, 32, 128, 512]\n')
    suite.write_text(body.format(extra='launch_counts = 3'))
    s = load_suite(str(suite))
    assert s.launch_counts == 3
    gate = LaunchesOncePerSeries(s.launch_counts)
    counted = [gate.admit(c)[0].count_launches for c in s.cells]
    assert counted == [True, True, True, False]
    suite.write_text(body.format(extra='launch_counts = "all"'))
    assert load_suite(str(suite)).launch_counts is None
    suite.write_text(body.format(extra='launch_counts = 0'))
    with pytest.raises(Exception, match="launch_counts"):
        load_suite(str(suite))


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    if not (CPU_RUN / "results.csv").is_file():
        pytest.skip("the committed cpu run is not in this checkout")
    out = tmp_path_factory.mktemp("run") / CPU_RUN.name
    out.mkdir()
    for name in ("results.csv", "environment.json"):
        shutil.copyfile(CPU_RUN / name, out / name)
    return out


def test_explainer_states_the_dispatch_share_from_the_run(cpu_run):
    from harness.report.inputs import read_run
    from harness.report.sections import SECTIONS, SectionContext
    from harness.report.sections.explainer import report_section

    assert "explainer" in [s.name for s in SECTIONS]
    text = report_section(SectionContext(read_run(cpu_run)))
    assert text.startswith("## Why one launch wins")
    assert re.search(r"array-style replica \(ours\) \d+% at N = 8 and \d+% at N = 32,768", text)
    assert "lockstep" in text and "dense linear algebra" in text
    assert (cpu_run / "figures" / "explainer_dispatch_model.png").is_file()


def test_figure_1_has_one_legend_entry_per_library(cpu_run):
    from harness.report.figures.canvas import FigureContext
    from harness.report.figures.figure1 import make_figure1
    from harness.report.inputs import read_run
    from harness.results.paper import load_paper_data

    run = read_run(cpu_run)
    ctx = FigureContext(cells=run.cells, published=load_paper_data(), published_note="", env={},
                        devices=["cpu"], out_dir=cpu_run / "fig", dpi=60)
    info = make_figure1(ctx)
    assert not info.skipped
    ours = info.data[info.data["source"] == "this run"]
    assert set(ours["mode"]) == {"fixed", "adaptive"}
    assert ours.groupby(["mode", "library", "role"])["variant"].nunique().max() == 1
    assert ours["library"].nunique() + 2 <= 12
    assert (info.data["source"] == "paper").any()


def test_a_run_without_the_lorenz_headline_leads_with_its_own_finding():
    from harness.report.summary import kind_finding

    rows = []
    for backend, t in (("fused", 1.0), ("array", 3.0), ("diffrax", 2.0)):
        for n in (8, 1024):
            rows += [dict(r, problem="linear_sde", method="em", time_s=t * n) for r in _rows(backend, n, [1.0])]
    cells = cell_table(pd.DataFrame(rows))
    text = kind_finding(cells, "sde")
    assert "`linear_sde`" in text and "3.00× (N = 1,024)" in text and "2.00× (N = 1,024)" in text
    assert kind_finding(cells, "pso") is None


def test_every_headline_row_has_every_column():
    md = headline_markdown(headline_table(_synthetic()))
    widths = {line.count(" | ") for line in md.splitlines() if line.startswith("| ") and "---" not in line}
    assert len(widths) == 1, widths
