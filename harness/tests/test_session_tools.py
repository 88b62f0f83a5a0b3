"""Accuracy bounds in `harness check`, shipped references, pre-flight, SIGTERM closing a run."""
from __future__ import annotations

import importlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.measure.accuracy import accuracy_violations, rel_bound, violation
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture
from problems.registry import get_problem

refmod = importlib.import_module("problems.reference")  # `problems` re-exports a function of that name

ROOT = Path(__file__).resolve().parents[2]


def row(**kw):
    base = dict(problem="lorenz", backend="fused", variant="", method="tsit5", mode="adaptive",
                dtype="float32", n=8, rtol=1e-6, max_rel_err=1e-4, failed_trajectories=0.0,
                status="ok", repeat=0)
    base.update(kw)
    return base


def test_bounds_pass_measured_errors_and_fail_wrong_ones():
    assert violation(row()) is None                                   # Tsit5 1e-6: 4.7e-4 measured
    assert violation(row(rtol=1e-8, max_rel_err=8e-6)) is None        # below float32 rounding
    assert violation(row(mode="fixed", rtol=math.nan, max_rel_err=1e-5)) is None
    assert "bound" in violation(row(max_rel_err=0.5))
    assert "failed trajectories" in violation(row(failed_trajectories=3.0))
    assert violation(row(max_rel_err=math.nan)) is None               # not measured: reason says why
    assert violation(row(max_scaled_err=50.0, max_rel_err=1e-2)) is None  # scaled column wins
    assert "max_scaled_err" in violation(row(max_scaled_err=1e5, max_rel_err=1e-2))
    assert rel_bound("rodas5p", "adaptive", "float64", 1e-8) == pytest.approx(1e-5)


def test_check_fails_a_run_whose_ok_rows_exceed_their_bound(tmp_path):
    import pandas as pd

    df = pd.DataFrame([row(), row(backend="array", max_rel_err=0.3), row(status="error", repeat=-1, max_rel_err=9.0)])
    bad = accuracy_violations(df)
    assert len(bad) == 1 and bad[0].startswith("lorenz array tsit5 adaptive float32 N=8")


def test_shipped_reference_is_read_before_computing(tmp_path, monkeypatch):
    prob = get_problem("lorenz")
    name = refmod.reference_file_name(prob, 8, "float32")
    assert refmod.is_shipped(prob, 8, "float32")  # committed for gpu-quick
    monkeypatch.setenv(refmod.POLICY_ENV, "shipped")
    r = refmod.reference(prob, 8, "float32", cache_dir=tmp_path)  # empty cache: must come from problems/refs
    assert r.u_final.shape == (8, 3) and not any(tmp_path.iterdir())
    assert name.startswith("lorenz-")


def test_missing_reference_is_not_computed_when_shipped_only(tmp_path, monkeypatch):
    monkeypatch.setenv(refmod.POLICY_ENV, "shipped")
    solved = []
    monkeypatch.setattr(refmod, "solve_one", lambda *a, **k: solved.append(a))  # would compute
    with pytest.raises(refmod.ReferenceMissing, match="harness refs"):
        refmod.reference(get_problem("lorenz"), 24, "float32", cache_dir=tmp_path)
    assert not solved and not any(tmp_path.iterdir())  # refused before any solve, nothing cached


def test_missing_reference_leaves_accuracy_empty_with_a_reason(monkeypatch, tmp_path):
    from harness.measure.execute import load_reference
    from harness.measure.execute import Cell
    from solvers.base import SolveSpec

    monkeypatch.setenv(refmod.POLICY_ENV, "shipped")
    monkeypatch.setenv("ODEBENCH_CACHE", str(tmp_path))  # an empty cache: earlier tests may have filled the default one
    cell = Cell("fused", SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=24),
                repeats=1, warmups=0, timeout_s=10)
    ref, why = load_reference(cell)
    assert ref is None and why.startswith("accuracy not measured: ReferenceMissing")


def _cli(*args, env=None, timeout=120):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


def test_preflight_names_every_gpu_check_skipped_without_a_gpu(tmp_path):
    out = tmp_path / "preflight.json"
    proc = _cli("preflight", "--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    for name in ("fused-cuda-kernel", "cupy", "torch", "jax", "pallas", "launch-counting"):
        assert data["checks"][name]["status"] == "skipped" and data["checks"][name]["reason"]
    assert data["checks"]["references"]["status"] == "ok"
    assert data["imports"]["numpy"]["required"] and not data["imports"]["cupy"]["required"]
    # every backend passes, except one whose optional package is not installed here (the GPU
    # box has no torchode): that one says which
    for name, v in data["backends"].items():
        absent = [m for m, i in data["imports"].items() if not i["found"]]
        assert v["ok"] or set(v["reason"].split("; ")) <= {f"{m} not importable" for m in absent}, (name, v)


def test_sigterm_closes_a_run_like_ctrl_c(tmp_path):
    run_dir = tmp_path / "run"
    e = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--suite", "smoke", "--backend", "fused",
                             "--out", str(run_dir), "--quiet", "--cell-timeout", "600"],
                            cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "environment.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["sessions"][-1]["interrupted"] is True and env["finished_at"]


def test_check_require_ok_names_a_backend_without_ok_cells(fake_backends, tmp_path, capsys):
    from harness.cli import main

    suite = tmp_path / "one.toml"
    suite.write_text('description = "one cell"\ndevice = "cpu"\nrepeats = 1\nwarmups = 0\n'
                     'cell_timeout_s = 30\n[[entries]]\nproblem = "lorenz"\nbackends = ["fake-ok"]\n'
                     'methods = ["tsit5"]\nmodes = ["fixed"]\nn = [8]\n')
    run = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(run), "--in-process", "--quiet"]) == 0
    assert main(["check", str(run), "--require-ok", "fake-ok"]) == 0
    assert main(["check", str(run), "--require-ok", "fake-ok,fake-raise"]) == 1
    assert "backend fake-raise has no ok cell" in capsys.readouterr().err
