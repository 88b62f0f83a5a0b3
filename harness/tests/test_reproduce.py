"""`make reproduce` leaves the tracked tree as it found it: a run writes only into its own
results/<run_id>/ (figures and report included) and says where its report is; only
`make figures` / `make readme` write the top-level figures/ and README block, from the reference
run the README's block names."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cli import main
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]

SUITE = """
description = "reproduce test"
device = "cpu"
repeats = 2
warmups = 0
cell_timeout_s = 60

[[entries]]
problem = "lorenz"
backends = ["fused", "fake-ok"]  # the report needs the fused kernel's rows
methods = ["tsit5"]
modes = ["fixed"]
n = [8]
"""


def _recipe(target: str, *args: str) -> str:
    """The commands `make` would run for ``target`` (``make -n``: nothing is run)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "--no-print-directory", target, *args], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_make_reproduce_draws_no_top_level_figures_and_touches_no_readme():
    recipe = _recipe("reproduce", "SUITE=cpu")
    assert "-m harness run --suite" in recipe and "--report" in recipe
    assert "-m harness figures" not in recipe and "-m harness readme" not in recipe
    assert "report:" in recipe  # it says where the report is
    # the targets that do write them still do, from the reference run by default
    assert "-m harness figures" in _recipe("figures")
    assert "-m harness readme" in _recipe("readme")


def test_a_run_with_its_report_writes_only_into_its_own_folder(fake_backends, tmp_path, capsys,
                                                               monkeypatch):
    # a fresh working folder holding only the suite: whatever the run writes is visible
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "figures").mkdir()  # as in the checkout: must stay empty
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--suite", "suite.toml", "--no-isolate", "--quiet", "--report"]) == 0
    lines = capsys.readouterr().out.split()
    run_dir, report = Path(lines[0]), Path(lines[-1])
    assert run_dir.parent == Path("results") and run_dir.is_dir()
    assert report.is_file() and run_dir.resolve() in report.resolve().parents
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    outside = {p for p in written if Path("results") / run_dir.name not in p.parents}
    assert outside == {Path("suite.toml")}, sorted(map(str, outside))
    assert not any((tmp_path / "figures").iterdir())


def test_the_figures_command_defaults_to_the_reference_run_named_in_the_readme():
    from harness.report.readme import FIGURES_DIR, runs_named_in_readme

    cwd = os.getcwd()
    try:
        os.chdir(REPO)
        run = runs_named_in_readme()[0]
    finally:
        os.chdir(cwd)
    assert (REPO / run / "results.csv").is_file()  # a committed run
    assert FIGURES_DIR == Path("figures")
