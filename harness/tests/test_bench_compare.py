"""The nightly regression check: flags a synthetic 2x slowdown, passes an unchanged run,
ignores a machine that is uniformly slower, and refuses empty or malformed input."""
import json

import pytest

from harness.bench_compare import REFERENCE_NAME, BenchmarkFileError, compare, load_medians, main


def write(path, medians):
    path.write_text(json.dumps({"benchmarks": [
        {"name": k, "stats": {"median": v, "min": v}} for k, v in medians.items()]}))
    return path


BASE = {REFERENCE_NAME: 0.010, "test_fused_cpu[8192]": 0.002, "test_diffrax[8]": 0.050}


def test_unchanged_run_passes(tmp_path, capsys):
    b = write(tmp_path / "b.json", BASE)
    c = write(tmp_path / "c.json", BASE)
    assert main(str(c), str(b)) == 0
    assert "no regression" in capsys.readouterr().out


def test_synthetic_2x_slowdown_is_flagged(tmp_path, capsys):
    b = write(tmp_path / "b.json", BASE)
    slow = dict(BASE, **{"test_fused_cpu[8192]": 0.004})
    c = write(tmp_path / "c.json", slow)
    assert main(str(c), str(b)) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "test_fused_cpu[8192]" in out


def test_uniformly_slower_machine_is_not_a_regression():
    slower = {k: 3 * v for k, v in BASE.items()}
    rows = compare(slower, BASE)
    assert all(r.verdict == "ok" for r in rows)


def test_new_and_missing_cells_are_reported():
    cur = {REFERENCE_NAME: 0.01, "test_new": 1.0}
    rows = {r.name: r.verdict for r in compare(cur, BASE)}
    assert rows["test_new"] == "new" and rows["test_diffrax[8]"] == "missing"


@pytest.mark.parametrize("current", [
    {k: v for k, v in BASE.items() if k != "test_diffrax[8]"},   # a crashed benchmark
    dict(BASE, test_extra=0.001),                                 # one the baseline lacks
    dict(BASE, **{"test_diffrax[8]": float("nan")}),              # a NaN median
])
def test_missing_extra_or_nan_benchmark_fails(tmp_path, capsys, current):
    b = write(tmp_path / "b.json", BASE)
    c = write(tmp_path / "c.json", current)
    assert main(str(c), str(b)) == 1
    assert "FAILED" in capsys.readouterr().out


def test_empty_or_malformed_input_fails(tmp_path):
    (tmp_path / "empty.json").write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(BenchmarkFileError, match="no benchmark results"):
        load_medians(tmp_path / "empty.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BenchmarkFileError, match="not a benchmark JSON"):
        load_medians(tmp_path / "bad.json")
    write(tmp_path / "noref.json", {"test_x": 1.0})
    with pytest.raises(BenchmarkFileError, match="reference cell"):
        load_medians(tmp_path / "noref.json")
    with pytest.raises(BenchmarkFileError, match="no such file"):
        load_medians(tmp_path / "absent.json")
