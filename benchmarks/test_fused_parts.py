"""The adaptive-step decomposition script (benchmarks.variants.fused_parts): its edits of the
generated kernel, its argument checking and one small run (no timing is asserted)."""
from __future__ import annotations

import ast

import pytest

from benchmarks.variants import fused_parts as parts
from solvers.base import SolveSpec
from solvers.fused import codegen
from solvers.fused.backend import FusedBackend


@pytest.fixture(scope="module")
def adaptive_source() -> str:
    spec = SolveSpec(problem="lorenz", method="tsit5", dtype="float32", n=64, mode="adaptive", rtol=1e-6, atol=1e-6)
    return codegen.generate_source(FusedBackend(lanes=32).kernel_key(spec))


def _block(source: str) -> str:
    """The lane block function's source (the kernel the script times)."""
    start = source.index("def _block(")
    return source[start:source.index("\n@", start)]


def test_no_log_exp_replaces_every_controller_law_and_leaves_valid_python(adaptive_source):
    edited = parts.without_log_exp(adaptive_source)
    ast.parse(edited)
    block = _block(edited)
    laws = [v for v in block.split("\n") if "dta" in v and " = (" in v]
    assert laws and all("_T(1.2)" in v and "_T(0.5)" in v for v in laws)
    assert len(laws) == len([v for v in _block(adaptive_source).split("\n") if "dta" in v and " = (" in v])


def test_no_norm_removes_the_error_norm_and_defines_eest(adaptive_source):
    edited = parts.EDITS["no-log-exp-no-norm"](adaptive_source)
    ast.parse(edited)
    block = _block(edited)
    assert "_err0" in _block(adaptive_source) and "_err0" not in block and "_sc0" not in block
    eest = [v for v in block.split("\n") if "_ssq" in v and "= abs(" in v]
    assert eest and all("_yn0" in v and "_T(3.0)" in v for v in eest)


def test_an_edit_that_matches_nothing_fails_loudly():
    with pytest.raises(RuntimeError, match="matched no line"):
        parts.without_log_exp("def f():\n    return 1\n")


@pytest.mark.parametrize("argv,message", [
    (["--threads", "0"], "--threads"),
    (["--n", "0"], "--n"),
    (["--lanes", "0"], "--lanes"),
    (["--rounds", "0"], "--rounds"),
    (["--tol", "2"], "--tol"),
])
def test_bad_arguments_are_refused(argv, message, refused):
    assert message in refused(parts.main, argv)


@pytest.mark.slow
def test_a_small_run_prints_every_kernel_with_its_steps(capsys):
    assert parts.main(["--n", "64", "--rounds", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {v.split()[0]: v.split() for v in out[2:]}
    assert set(rows) == {"full", "no-log-exp", "no-log-exp-no-norm", "fixed"}
    assert float(rows["fixed"][3]) == 1000.0  # steps per trajectory of the fixed kernel
    assert all(float(r[1]) > 0 and 10 < float(r[3]) < 10_000 for r in rows.values())
    assert rows["fixed"][4] == "1.00x"
