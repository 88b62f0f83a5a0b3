"""README's results block: generated from the run it names; a hand edit fails this test."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.report import readme
from harness.report.inputs import load_results
from harness.report.markdown import headline_markdown
from harness.results.headline import headline_table
from harness.results.paper import load_paper_data

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def named_run():
    import os
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        run, companions = readme.runs_named_in_readme(ROOT / "README.md")
        block = readme.readme_block(run, companions)
    finally:
        os.chdir(old)
    return run, companions, block


def test_readme_block_is_what_the_generator_prints(named_run):
    run, companions, block = named_run
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    _, current, _ = readme.split_block(text)
    assert current == block, (f"README.md's results block was edited by hand or is stale: run "
                              f"`python -m harness readme {readme.readme_command(run, companions)}`")


def test_numbers_outside_the_block_are_not_results():
    """No speedup (×/x ratio) is typed in the README outside the generated block."""
    head, _, tail = readme.split_block((ROOT / "README.md").read_text(encoding="utf-8"))
    outside = (head + tail).replace("20-100x", "")   # the paper's own claim, quoted
    typed = re.findall(r"\b\d+(?:\.\d+)?\s?[×x]\b(?! ?\d)", outside)
    assert not typed, typed


def test_fma_claim_only_with_a_measured_peak(named_run):
    run, _, _ = named_run
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    measured = any((ROOT / run / name).is_file() for name in ("peak.json", "cpu_peak.json"))
    if not measured:
        # a claim like "95% of this CPU's FMA throughput" (instruction counts such as "75 FFMA"
        # in the generated GPU paragraph are machine-code facts, not throughput claims)
        claim = re.search(r"\d+(\.\d+)?\s*%\s+of\s+[^.]*\b(FMA|peak)", text)
        assert claim is None, f"a throughput claim needs a measured peak in the run folder: {claim.group(0)}"


def test_check_detects_a_hand_edit_and_rewrite_restores(tmp_path, named_run):
    run, companions, block = named_run
    companions = tuple(ROOT / c for c in companions)
    copy = tmp_path / "README.md"
    shutil.copyfile(ROOT / "README.md", copy)
    edited = copy.read_text(encoding="utf-8").replace(block, block.replace("×", "x", 1))
    copy.write_text(edited, encoding="utf-8")
    assert readme.write_readme(ROOT / run, companions, copy, check=True) is False
    assert readme.write_readme(ROOT / run, companions, copy) is False      # rewritten
    assert readme.write_readme(ROOT / run, companions, copy, check=True) is True


def test_missing_markers_is_a_one_line_error(tmp_path, capsys, named_run):
    run, _, _ = named_run
    bare = tmp_path / "README.md"
    bare.write_text("# nothing here\n")
    assert main(["readme", str(ROOT / run), "--readme", str(bare)]) == 2
    err = capsys.readouterr().err
    assert "no results block" in err and err.count("\n") == 1
    assert main(["readme", str(tmp_path / "nowhere"), "--readme", str(bare)]) == 2


def test_reference_report_headline_is_generated(named_run):
    """The committed report's headline section is exactly what the data give (no hand edits)."""
    run, _, _ = named_run
    report_md = ROOT / run / "report.md"
    if not report_md.is_file():
        pytest.skip(f"{run} has no report.md yet (python -m harness report {run})")
    text = report_md.read_text(encoding="utf-8")
    expected = headline_markdown(headline_table(load_results(ROOT / run), load_paper_data()))
    assert expected.strip() in text, f"{run}/report.md's headline differs: run `python -m harness report {run}`"


def test_paragraphs_from_another_cpu_say_so(named_run, tmp_path):
    """A companion run measured on another CPU than the reference run names both CPUs in its
    README paragraph (its "this CPU" is not the reference run's)."""
    run, companions, block = named_run
    ref = readme.cpu_words(ROOT / run)
    assert re.fullmatch(r"[\w-]+, (avx512|avx2|avx|sse)", ref), ref
    assert f"Measured on another CPU, {ref}," not in block  # never for a run on the same CPU
    other = {readme.cpu_words(ROOT / c) for c in companions} - {ref}
    if other:  # at least one of them has a paragraph, and it names both CPUs
        assert any(f"Measured on another CPU, {cpu}, than the reference run above, {ref}." in block
                   for cpu in other), other
    (tmp_path / "environment.json").write_text("{}")
    assert readme.cpu_words(tmp_path) == "CPU not recorded, ISA not recorded"
