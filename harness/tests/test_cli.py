"""The command line: bad input is one line and exit code 2 with nothing written; a run writes a
valid results folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.results.store import read_results
from harness.results.schema import COLUMNS, validate
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]

GOOD_SUITE = """
description = "cli test"
device = "cpu"
repeats = 2
warmups = 0
cell_timeout_s = 30

[[entries]]
problem = "lorenz"
backends = ["fake-ok", "fake-sync"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8, 16]
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _write_bad_files(tmp: Path) -> None:
    (tmp / "malformed.toml").write_text('description = "x"\nentries = [\n')
    (tmp / "unknown_key.toml").write_text('description = "x"\ndevice = "cpu"\nspeed = "max"\n')
    (tmp / "zero_n.toml").write_text('description = "x"\ndevice = "cpu"\n[[entries]]\nproblem = "lorenz"\n'
                                     'backends = ["fused"]\nmethods = ["tsit5"]\nmodes = ["fixed"]\nn = [0]\n')
    (tmp / "a_file").write_text("not a folder")


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, the start of the expected message)."""
    run = ["run", "--suite", "smoke", "--out"]
    return {
        "unknown suite": (["run", "--suite", "nope", "--out", str(tmp / "o")], "error: unknown suite 'nope'; valid choices: "),
        "unknown problem": ([*run, str(tmp / "o"), "--problem", "lorenz,vdp"], "error: unknown problem 'vdp'; valid choices: lorenz, robertson, sir"),
        "unknown backend": ([*run, str(tmp / "o"), "--backend", "julia"], "error: unknown backend 'julia'; valid choices: fused, array"),
        "unknown method": ([*run, str(tmp / "o"), "--method", "euler"], "error: unknown method 'euler'; valid choices: "),
        "unknown mode": ([*run, str(tmp / "o"), "--mode", "implicit"], "error: unknown mode 'implicit'; valid choices: fixed, adaptive"),
        "zero N": ([*run, str(tmp / "o"), "--n", "0"], "error: invalid N '0': N must be a positive integer"),
        "negative N": ([*run, str(tmp / "o"), "--n=-8"], "error: invalid N '-8': N must be a positive integer"),
        "fractional N": ([*run, str(tmp / "o"), "--n", "8,1.5"], "error: invalid N '1.5': N must be a positive integer"),
        "no matching cell": ([*run, str(tmp / "o"), "--n", "7"], "error: no cell of suite 'smoke' matches the filters"),
        "zero repeats": ([*run, str(tmp / "o"), "--repeats", "0"], "error: argument --repeats: invalid value '0': must be a positive integer"),
        "zero threads": ([*run, str(tmp / "o"), "--threads", "1,0"], "error: invalid --threads '0': must be a positive integer"),
        "malformed TOML": (["run", "--suite", str(tmp / "malformed.toml"), "--out", str(tmp / "o")], "error: malformed.toml: malformed TOML"),
        "unknown key": (["run", "--suite", str(tmp / "unknown_key.toml"), "--out", str(tmp / "o")], "error: unknown_key.toml: top level: unknown key 'speed'; valid choices: "),
        "N <= 0 in a suite": (["run", "--suite", str(tmp / "zero_n.toml"), "--out", str(tmp / "o")], "error: zero_n.toml: entries[0].n: must be an integer >= 1, got 0"),
        "unwritable output": ([*run, str(tmp / "a_file" / "o")], "error: cannot create output folder "),
        "no suite": (["run", "--out", str(tmp / "o")], "error: run needs --suite NAME"),
        "resume nothing": (["run", "--resume", str(tmp / "missing")], "error: cannot resume "),
        "unknown command": (["fly"], "error: argument command: invalid choice: 'fly'"),
        "report of nothing": (["report", str(tmp / "missing")], "error: "),
    }


#: Each kind of bad input the brief names, run as a real `python -m harness` process.
SUBPROCESS_CASES = ("unknown suite", "unknown problem", "unknown backend", "unknown method", "zero N",
                    "fractional N", "malformed TOML", "unknown key", "unwritable output")
ALL_CASES = sorted(_bad_inputs(Path("/x")))


@pytest.fixture(scope="module")
def subprocess_outcomes(tmp_path_factory):
    """Every subprocess case, started at once (each spends about a second importing)."""
    outcomes = {}
    procs = {}
    for case in SUBPROCESS_CASES:
        tmp = tmp_path_factory.mktemp(case.replace(" ", "_"))
        _write_bad_files(tmp)
        args, expected = _bad_inputs(tmp)[case]
        before = sorted(p.name for p in tmp.iterdir())
        procs[case] = (subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=tmp, env=_env(),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                       tmp, expected, before)
    for case, (proc, tmp, expected, before) in procs.items():
        out, err = proc.communicate(timeout=120)
        outcomes[case] = (proc.returncode, out, err, expected, before, sorted(p.name for p in tmp.iterdir()))
    return outcomes


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process_is_one_line_exit_2_and_writes_nothing(subprocess_outcomes, case):
    code, out, err, expected, before, after = subprocess_outcomes[case]
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), err  # one line: no traceback
    assert out == ""
    assert after == before  # nothing written (no results/ folder either)


@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case, capsys, monkeypatch):
    _write_bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    args, expected = _bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), captured.err
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_run_writes_a_valid_results_folder(fake_backends, tmp_path, capsys):
    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE)
    out = tmp_path / "run"
    code = main(["run", "--suite", str(suite), "--out", str(out), "--no-isolate", "--quiet",
                 "--backend", "fake-sync", "--repeats", "3"])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(out)  # data in files, only the folder on stdout
    df = validate(read_results(out))
    assert list(df.columns) == list(COLUMNS)
    assert set(df["backend"]) == {"fake-sync"} and sorted(set(df["n"])) == [8, 16]
    assert len(df) == 2 * 3 and (df["time_s"] >= 0.05).all()
    assert (out / "results.parquet").exists()
    env = json.loads((out / "environment.json").read_text())
    for key in ("run_id", "hostname", "cpu", "gpu", "libraries", "environment_variables", "git",
                "suite", "command", "started_at", "finished_at", "request"):
        assert key in env, key
    assert env["suite"]["name"] == "fake" and len(env["suite"]["sha256"]) == 64
    assert env["request"]["filters"] == {"backend": ["fake-sync"]} and env["request"]["repeats"] == 3
    assert set(df["run_id"]) == {env["run_id"]}
    assert not list(out.glob("*.partial"))


def test_threads_option_sweeps_every_cell_and_is_recorded(fake_backends, tmp_path, capsys):
    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--in-process", "--quiet",
                 "--backend", "fake-ok", "--repeats", "2", "--threads", "1,2"]) == 0
    df = validate(read_results(out))
    assert sorted(set(zip(df["threads"], df["n"]))) == [(1, 8), (1, 16), (2, 8), (2, 16)]
    # the column is there; fake-ok's repeats take microseconds, too short for the process clock
    # (clock.MIN_CPU_UTIL_WALL_S), so its value is NaN rather than noise
    assert "cpu_util" in df.columns and df["cpu_util"].isna().all()
    env = json.loads((out / "environment.json").read_text())
    assert env["threads"]["setting"] == [1, 2] and env["request"]["threads"] == [1, 2]
    assert env["threads"]["worker_environment"]["1"]["NUMBA_NUM_THREADS"] == "1"


def test_run_into_a_non_empty_folder_is_refused(fake_backends, tmp_path, capsys):
    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--in-process", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: output folder")


def test_a_run_without_any_timing_fails_loudly(fake_backends, tmp_path, capsys):
    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE.replace('["fake-ok", "fake-sync"]', '["fake-raise"]'))
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--in-process", "--quiet"]) == 1
    assert "no cell of" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "run")]) == 1


def test_check_accepts_a_good_run(fake_backends, tmp_path, capsys):
    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--in-process", "--quiet"]) == 0
    assert main(["check", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "cells by status: ok 4" in out
    # the fakes return the reference rounded to float32: measured, a few tolerance units at most
    assert "max_scaled_err measured in 4 of 4 ok cells" in out
    df = pd.read_csv(tmp_path / "run" / "results.csv")
    scaled = df.loc[df["status"] == "ok", "max_scaled_err"]
    assert scaled.notna().all() and (scaled >= 0).all() and (scaled < 100).all()


def test_check_rejects_a_negative_scaled_error(fake_backends, tmp_path, capsys):
    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--in-process", "--quiet"]) == 0
    path = tmp_path / "run" / "results.csv"
    df = pd.read_csv(path)
    df.loc[0, "max_scaled_err"] = -1.0
    df.to_csv(path, index=False)
    assert main(["check", str(tmp_path / "run")]) == 1
    assert "max_scaled_err must not be negative" in capsys.readouterr().err


def test_env_prints_the_fingerprint(capsys):
    assert main(["env"]) == 0
    fp = json.loads(capsys.readouterr().out)
    assert fp["python"]["version"] and fp["libraries"]["numpy"] and "flags" in fp["cpu"]


def test_default_suite_is_cpu_without_a_gpu(capsys, monkeypatch):
    from harness.measure import environment

    monkeypatch.setattr(environment, "gpu_info", lambda: {"gpus": []})
    assert main(["default-suite"]) == 0
    assert capsys.readouterr().out.strip() == "cpu"



def test_a_run_folder_in_use_is_refused(fake_backends, tmp_path, capsys):
    import fcntl

    suite = tmp_path / "fake.toml"
    suite.write_text(GOOD_SUITE)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--in-process", "--quiet"]) == 0
    capsys.readouterr()
    fd = os.open(out, os.O_RDONLY)  # the lock a running sweep holds on its folder
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["run", "--resume", str(out), "--quiet"]) == 2
    finally:
        os.close(fd)
    assert capsys.readouterr().err.strip() == f"error: run folder {out} is in use by another harness process"
    assert main(["run", "--resume", str(out), "--quiet"]) == 0  # released: resuming works (nothing to do)


def test_check_fails_on_an_empty_results_table(tmp_path, capsys):
    from harness.results.schema import COLUMNS

    run = tmp_path / "run"
    run.mkdir()
    (run / "results.csv").write_text(",".join(COLUMNS) + "\n")  # header, no rows
    assert main(["check", str(run)]) != 0
    assert "error" in capsys.readouterr().err.lower()
