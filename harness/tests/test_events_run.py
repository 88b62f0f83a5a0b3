"""An events run end to end (issue 32), small: the fused kernel and the array replica at N = 8 on
the three event problems, run by the harness; the certifier accepts it, the fairness audit reads
it, its report has the events section and figure, and the README generator, given it as a
companion of the reference run, writes the events paragraph from it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.report.readme import runs_named_in_readme

SUITE = """description = "events, tiny"
device = "cpu"
repeats = 1
warmups = 0
cell_timeout_s = 120

[[entries]]
problem = "bouncing_ball"
backends = ["fused", "array"]
methods = ["tsit5_event"]
modes = ["adaptive"]
n = [8]

[[entries]]
problem = "lorenz_plane"
backends = ["fused", "array"]
methods = ["tsit5_event"]
modes = ["adaptive"]
saveat = [0.0, 0.5, 1.0, 1.5, 2.0]
n = [8]

[[entries]]
problem = "pk_doses"
backends = ["fused", "array"]
methods = ["tsit5_event"]
modes = ["adaptive"]
n = [8]
"""


@pytest.fixture(scope="module")
def events_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("events")
    suite = tmp / "events_tiny.toml"
    suite.write_text(SUITE)
    out = tmp / "20261207T000000Z-events-vm"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--in-process", "--quiet", "--report"]) == 0
    return out


@pytest.mark.slow
def test_check_accepts_an_events_run_and_fairness_reads_it(events_run, capsys):
    assert main(["check", str(events_run), "--require-ok", "fused,array"]) == 0
    assert main(["fairness", str(events_run)]) == 0
    out = capsys.readouterr().out
    assert "bouncing_ball" in out and "lorenz_plane" in out and "pk_doses" in out


@pytest.mark.slow
def test_report_and_readme_paragraph_of_an_events_run(events_run, tmp_path, capsys):
    report = (events_run / "report.md").read_text()
    assert "## Events" in report and "events_time_vs_n.png" in report
    assert (events_run / "figures" / "events_time_vs_n.csv").is_file()
    cpu_run, _ = runs_named_in_readme()
    readme = tmp_path / "README.md"
    shutil.copy(Path(__file__).resolve().parents[2] / "README.md", readme)
    assert main(["readme", str(cpu_run), "--companion", str(events_run), "--readme", str(readme)]) == 0
    text = readme.read_text()
    paragraph = next(line for line in text.splitlines() if line.startswith("**Events**"))
    assert events_run.name in paragraph
    for problem in ("bouncing ball", "lorenz plane", "pk doses"):
        assert f"{problem}: array " in paragraph
    assert "x at N=8" in paragraph and "0 trajectories with a wrong event count over 6 timed cells" in paragraph
