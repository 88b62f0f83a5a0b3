"""The red-team check ``python -m harness fairness``: the fastest variant per library and N, and
the variants the run holds elsewhere but not at that N (issue 33, item 7)."""
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.results.fairness import fairness_table, render

RESULTS = Path(__file__).resolve().parents[2] / "results"


def _cell(backend, variant, n, time, status="ok", reason="", mode="fixed", threads=2):
    return {"problem": "lorenz", "method": "tsit5", "mode": mode, "rtol": 0.0 if mode == "fixed" else 1e-6,
            "threads": threads, "n": n, "backend": backend, "variant": variant, "status": status,
            "reason": reason, "time_median_s": time if status == "ok" else float("nan")}


def test_fastest_variant_and_the_missing_ones():
    cells = pd.DataFrame([
        _cell("torch-handwritten", "", 8, 0.5), _cell("torch-handwritten", "compiled", 8, 0.05),
        _cell("torch-handwritten", "", 32768, 2.0),                      # compiled missing here
        _cell("torch-handwritten", "compiled", 2048, 0.1, status="failed", reason="boom"),
        _cell("torch-handwritten", "", 2048, 0.9),
        _cell("fused", "", 8, 0.001), _cell("fused", "", 32768, 0.01), _cell("fused", "", 2048, 0.003),
    ])
    t = fairness_table(cells).set_index(["backend", "n"])
    assert t.loc[("torch-handwritten", 8), "fastest"] == "compiled"
    assert t.loc[("torch-handwritten", 8), "not_run"] == ""
    assert t.loc[("torch-handwritten", 32768), "fastest"] == "default"
    assert t.loc[("torch-handwritten", 32768), "not_run"] == "compiled"
    assert t.loc[("torch-handwritten", 2048), "not_run"] == "compiled (boom)"
    assert t.loc[("fused", 32768), "not_run"] == ""
    text = render(fairness_table(cells), {"torchode": ["jit"]})
    assert "NOT RUN: compiled" in text and "torchode: jit" in text
    assert text.strip().endswith("2 of 6 library cells miss a variant the run holds elsewhere")
    only = render(fairness_table(cells), only_missing=True)
    assert "fused" not in only


def test_command_on_a_committed_run(capsys):
    runs = sorted(p for p in RESULTS.glob("*-cpu-*") if (p / "results.csv").is_file())
    if not runs:
        pytest.skip("no committed cpu run here")
    assert main(["fairness", str(runs[-1]), "--missing"]) == 0
    out = capsys.readouterr().out
    assert "library cells miss a variant" in out
