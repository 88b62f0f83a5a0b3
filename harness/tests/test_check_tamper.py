"""`harness check` as an integrity gate: each kind of damage to a copy of a committed run folder
makes it fail with a line naming the rule (harness.results.integrity); the unedited copy passes.

A case marked ``rehash`` re-records the table's SHA-256 after the edit, as a careful forger
would, so that the rule itself (not only the checksum) is shown to catch it.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.store import table_sha256
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "results" / "20261207T041138Z-scaling-vm"  # 9 cells of 3 repeats (Lorenz, fixed step)


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def _set(col: str, value, where=lambda i, r: i == 0):
    """An edit: ``col`` of the rows ``where(index, row)`` selects becomes ``value(old)`` (or ``value``)."""
    def edit(header, rows):
        c = header.index(col)
        for i, r in enumerate(rows):
            if where(i, r):
                r[c] = str(value(r[c]) if callable(value) else value)
        return rows
    return edit


FIRST_CELL = lambda i, r: i < 3  # noqa: E731 - the first cell's three repeat rows


def _scale_first_cell(factor):
    return _set("time_s", lambda v: float(v) * factor, FIRST_CELL)


def _accuracy_off(header, rows):
    for col in ("max_rel_err", "max_scaled_err", "reason"):
        rows[0][header.index(col)] = "nan" if col != "reason" else ""
    return rows


# (edit of (header, rows) -> rows, the rule named, re-record the checksum after the edit)
CASES = {
    "time x100": (_scale_first_cell(100), "checksum", False),
    "time /100": (_scale_first_cell(0.01), "checksum", False),
    "time /10": (_scale_first_cell(0.1), "checksum", False),
    "time inf": (_set("time_s", "inf"), "time", True),
    "repeat row deleted": (lambda h, rows: rows[:1] + rows[2:], "repeats", True),
    "repeat 0 deleted": (lambda h, rows: rows[1:], "repeats", True),
    "whole cell deleted": (lambda h, rows: rows[3:], "planned", True),
    "row duplicated": (lambda h, rows: rows[:1] + rows, "duplicate", True),
    "repeat 99": (_set("repeat", 99, lambda i, r: i == 2), "repeats", True),
    "NaN accuracy without reason": (_accuracy_off, "accuracy-nan", True),
    "accuracy violated in repeat 1 only": (_set("max_rel_err", 0.5, lambda i, r: i == 1), "accuracy", True),
    "one repeat's n changed": (_set("n", 1000, lambda i, r: i == 1), "repeats", True),
    "steps_mean -5": (_set("steps_mean", -5.0), "counts", True),
    "cpu_util 50 on 1 thread": (_set("cpu_util", 50.0), "cpu-util", True),
    "run_id changed": (_set("run_id", "20261201T000000Z-other-vm", lambda i, r: i == 1), "run-id", True),
    "threads changed": (_set("threads", 2, lambda i, r: i == 1), "threads", True),
}


@pytest.fixture
def run(tmp_path):
    dest = tmp_path / RUN.name
    shutil.copytree(RUN, dest)
    return dest


def _rehash(run: Path) -> None:
    env_path = run / "environment.json"
    env = json.loads(env_path.read_text())
    env["results_sha256"] = table_sha256(run / "results.csv")
    env_path.write_text(json.dumps(env, indent=2) + "\n")


def _check(run: Path, capsys, *extra) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["check", str(run), *extra])
    return code, capsys.readouterr().err.splitlines()


def test_the_unedited_copy_passes(run, capsys):
    header, rows = _rows(run / "results.csv")
    _write(run / "results.csv", header, rows)  # rewriting unchanged rows keeps the bytes
    assert _check(run, capsys) == (0, [])


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_caught_and_named(run, capsys, case):
    edit, rule, rehash = CASES[case]
    header, rows = _rows(run / "results.csv")
    _write(run / "results.csv", header, edit(header, rows))
    if rehash:
        _rehash(run)
    code, err = _check(run, capsys)
    assert code == 1
    assert any(f": {rule}:" in line for line in err), err
    assert all(line.startswith("error: ") for line in err)


def test_a_cut_last_line_is_refused_by_check_and_report(run, capsys):
    path = run / "results.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-150])  # mid-field, as a kill or a full disk leaves it
    _rehash(run)
    code, err = _check(run, capsys)
    assert code == 1 and any(": cut-line:" in line for line in err)
    pytest.importorskip("matplotlib")
    assert main(["report", str(run)]) == 1
    assert "last line is cut" in capsys.readouterr().err


def test_a_killed_run_is_unfinished_and_incomplete(run, capsys):
    header, rows = _rows(run / "results.csv")
    _write(run / "results.csv", header, rows[:6])  # killed after 2 of 9 cells
    env = json.loads((run / "environment.json").read_text())
    env["sessions"][-1].pop("finished_at")  # a SIGKILL never closes the session
    env["sessions"][-1].pop("interrupted")
    env.pop("results_sha256")
    (run / "environment.json").write_text(json.dumps(env))
    code, err = _check(run, capsys)
    assert code == 1
    assert any(": unfinished:" in line for line in err) and any(": planned:" in line for line in err)
    # --partial accepts an unfinished run but still wants its checksum
    code, err = _check(run, capsys, "--partial")
    assert code == 1 and [line.split(": ")[3] for line in err] == ["checksum"]


def test_a_new_run_is_checked_against_the_cells_its_sessions_planned(fake_backends, tmp_path, capsys):
    """A run written now records its planned cells (environment.json, sessions[].cells_planned):
    a missing cell and a cell no session selected are named even with the checksum re-recorded."""
    suite = tmp_path / "fake.toml"
    suite.write_text('description = "plan"\ndevice = "cpu"\nrepeats = 2\nwarmups = 0\ncell_timeout_s = 30\n'
                     '[[entries]]\nproblem = "lorenz"\nbackends = ["fake-ok"]\nmethods = ["tsit5"]\n'
                     'modes = ["fixed"]\nn = [8, 16]\n')
    run = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(run), "--in-process", "--quiet"]) == 0
    assert _check(run, capsys)[0] == 0
    header, rows = _rows(run / "results.csv")
    n = header.index("n")
    _write(run / "results.csv", header, [r[:n] + ["32"] + r[n + 1:] if r[n] == "16" else r for r in rows])
    _rehash(run)
    code, err = _check(run, capsys)
    assert code == 1
    assert any("N=32" in line and ": planned: no session selected" in line for line in err), err
    assert any(": planned: the planned cell" in line and "16" in line for line in err), err
