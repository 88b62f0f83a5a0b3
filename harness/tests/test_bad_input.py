"""Bad input is one line, exit 2, and leaves the file system as it was (issue 26): every case is
run against a working folder whose listing (paths, sizes, bytes' hashes) is compared before and
after. Cases that start a real cluster or need a whole process run the command as a subprocess;
the rest call ``harness.cli.main``. A full disk during a run closes the row and the session."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.tests.fakes import fake_backends  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
description = "bad-input test"
device = "cpu"
repeats = 2
warmups = 0
cell_timeout_s = 30

[[entries]]
problem = "lorenz"
backends = ["fake-ok"]
methods = ["tsit5"]
modes = ["fixed"]
n = [8, 16]
"""


def listing(top: Path) -> dict[str, str]:
    """Every path under ``top`` with a hash of its bytes (folders: "dir")."""
    out = {}
    for p in sorted(top.rglob("*")):
        out[str(p.relative_to(top))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def work(tmp_path, fake_backends):
    """A folder with a suite file and one finished run of it (run/), to resume or report."""
    (tmp_path / "fake.toml").write_text(SUITE)
    assert main(["run", "--suite", str(tmp_path / "fake.toml"), "--out", str(tmp_path / "run"),
                 "--in-process", "--quiet"]) == 0
    return tmp_path


#: What a run prints on stderr besides its errors: its banner, and the busy-machine warning
#: when the machine is loaded (harness.measure.load), which these tests do not control.
RUN_NOTES = ("run ", "warning: this machine is busy")


def one_line_exit_2(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    return err[0]


def _resume_edit(edit):
    def apply(work: Path) -> list[str]:
        edit(work / "run")
        return ["run", "--resume", str(work / "run"), "--quiet", "--in-process"]
    return apply


def _edit_env(**changes):
    def edit(run: Path) -> None:
        env = json.loads((run / "environment.json").read_text())
        for k, v in changes.items():
            env[k] = v(env[k]) if callable(v) else v
        (run / "environment.json").write_text(json.dumps(env))
    return edit


def _other_suite(work: Path) -> list[str]:
    other = work / "other.toml"
    other.write_text(SUITE.replace('"bad-input test"', '"another"'))
    return ["run", "--resume", str(work / "run"), "--suite", str(other), "--quiet", "--in-process"]


def _suite_with(text: str):
    def apply(work: Path) -> list[str]:
        (work / "bad.toml").write_text(SUITE + text)
        return ["run", "--suite", str(work / "bad.toml"), "--out", str(work / "new"), "--quiet", "--in-process"]
    return apply


def _file(name: str, text: str, argv):
    def apply(work: Path) -> list[str]:
        (work / name).write_text(text)
        return [a.replace("{work}", str(work)) for a in argv]
    return apply


RUN = ["run", "--suite", "{work}/fake.toml", "--out", "{work}/new", "--quiet", "--in-process"]

# name -> (argv, or a function of the working folder that prepares it and returns argv;
#          a substring of the error line)
CASES = {
    "--threads above the usable cores": ([*RUN, "--threads", "999"], "usable cores"),
    "empty --problem": ([*RUN, "--problem", ""], "empty --problem"),
    "empty --n": ([*RUN, "--n", ","], "empty --n"),
    "--out is a file": (_file("afile", "x", [*RUN[:3], "--out", "{work}/afile", "--quiet"]), "is a file"),
    "malformed --preflight": (_file("pre.json", "{not json", [*RUN, "--preflight", "{work}/pre.json"]),
                              "pre-flight file"),
    "--preflight of another JSON": (_file("pre.json", "[1, 2]", [*RUN, "--preflight", "{work}/pre.json"]),
                                    "not a preflight.json"),
    "--shards above every N": ([*RUN, "--shards", "1000"], "more shards than trajectories"),
    "unknown controller": (_suite_with('controller = "bogus"\n'), "unknown controller"),
    "controller in a fixed-step entry": (_suite_with('controller = "diffeqgpu"\n'), "needs mode adaptive"),
    "--resume with another suite": (_other_suite, "is a run of suite"),
    "--resume of another schema version": (_resume_edit(_edit_env(schema_version=2)), "schema version"),
    "--resume of a CSV with other columns": (
        _resume_edit(lambda run: (run / "results.csv").write_text("a,b\n1,2\n")), "other columns"),
    "--resume of garbage": (
        _resume_edit(lambda run: (run / "results.csv").write_bytes(b"\x00\xff\xfe garbage")), "cannot resume"),
    "refs --n 0": (["refs", "--suite", "{work}/fake.toml", "--n", "0"], "invalid --n"),
    "refs --n matching no cell": (["refs", "--suite", "{work}/fake.toml", "--n", "3"], "matches no cell"),
    "gpu-profile --dtype float8": (["gpu-profile", "--out", "{work}/prof", "--dtype", "float8"], "invalid --dtype"),
    "gpu-profile --problem bogus": (["gpu-profile", "--out", "{work}/prof", "--problem", "bogus"], "unknown --problem"),
    "gpu-profile --ptx not PTX": (_file("k.ptx", "not ptx at all", ["gpu-profile", "--out", "{work}/prof",
                                                                  "--ptx", "{work}/k.ptx"]), "is not PTX"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(work, capsys, case):
    make, needle = CASES[case]
    argv = make(work) if callable(make) else [a.replace("{work}", str(work)) for a in make]
    before = listing(work)
    line = one_line_exit_2(capsys, argv)
    assert needle in line
    assert listing(work) == before


def test_read_only_report_and_readme_destinations_are_one_line(work, capsys, monkeypatch):
    # as root nothing is read-only: the write fails as it would on a read-only folder or file
    pytest.importorskip("matplotlib")
    from harness import cli

    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(cli, "write_report", refuse)
    assert "Permission denied" in one_line_exit_2(capsys, ["report", str(work / "run")])
    readme = work / "README.md"
    readme.write_text("# x\n<!-- results:begin -->\n<!-- results:end -->\n")
    monkeypatch.setattr(Path, "write_text", refuse)
    line = one_line_exit_2(capsys, ["readme", str(work / "run"), "--readme", str(readme)])
    assert "Permission denied" in line or "README" in line


def _subprocess(argv: list[str], cwd: Path, timeout: float = 120) -> tuple[int, list[str], float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stderr.splitlines(), time.monotonic() - started


def test_an_unreachable_cluster_fails_in_seconds_and_leaves_no_folder(tmp_path):
    pytest.importorskip("distributed")
    code, err, took = _subprocess(["run", "--suite", "smoke", "--backend", "fused", "--cluster",
                                   "tcp://127.0.0.1:1", "--out", str(tmp_path / "run"), "--quiet"], tmp_path)
    assert code == 2 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0], err
    assert not (tmp_path / "run").exists() and took < 30


def test_shards_above_the_cores_are_refused_before_a_cluster_starts(tmp_path):
    pytest.importorskip("distributed")
    k = len(os.sched_getaffinity(0)) + 1
    code, err, _ = _subprocess(["run", "--suite", "cpu", "--backend", "fused", "--problem", "lorenz",
                                "--n", "524288", "--shards", str(k), "--out", str(tmp_path / "run"),
                                "--quiet"], tmp_path)
    assert code == 2 and len(err) == 1 and "usable cores" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_closes_the_row_and_the_session(work, capsys, monkeypatch):
    """ENOSPC in the middle of the second cell's rows: the half row is cut off again, the session
    is closed as interrupted with the error, one line; --resume then completes the run."""
    real_write, calls = os.write, []

    def full_disk(fd, data):
        if b"fake-ok" in bytes(data):
            calls.append(1)
            if len(calls) == 2:
                real_write(fd, bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    capsys.readouterr()
    with monkeypatch.context() as patched:  # (monkeypatch.undo would also drop the fake backends)
        patched.setattr(os, "write", full_disk)
        code = main(["run", "--suite", str(work / "fake.toml"), "--out", str(work / "full"), "--in-process", "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(RUN_NOTES)]
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0], err
    data = (work / "full" / "results.csv").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1 + 2  # the header and the first cell's rows
    session = json.loads((work / "full" / "environment.json").read_text())["sessions"][-1]
    assert session["interrupted"] is True and "No space left" in session["error"]
    assert main(["check", str(work / "full")]) == 1       # unfinished
    assert main(["check", "--partial", str(work / "full")]) == 0
    assert main(["run", "--resume", str(work / "full"), "--in-process", "--quiet"]) == 0
    assert main(["check", str(work / "full")]) == 0


def test_a_cluster_that_fails_to_start_leaves_no_folder(work, capsys, monkeypatch):
    """The run folder is created before the cluster starts; a failure there removes it again."""
    pytest.importorskip("distributed")
    import harness.run.session as session

    class NoWorkers:
        @classmethod
        def for_cells(cls, address, cells):
            return cls()

        def start(self):
            raise session.UsageError("the Dask cluster local has no workers")

    monkeypatch.setattr(session, "Cluster", NoWorkers)
    before = listing(work)
    capsys.readouterr()
    code = main(["run", "--suite", str(work / "fake.toml"), "--out", str(work / "a" / "b"), "--cluster", "local",
                 "--quiet"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(RUN_NOTES)]  # its banner
    assert code == 2 and err == ["error: the Dask cluster local has no workers"]
    assert listing(work) == before
