"""The hand-written C++ solver (backend "cuda-cpp") on the CPU build: accuracy against the float64
references, exactly the fused Numba kernel's steps in float64, statuses, threads, vectorisation,
the SymPy translation of right-hand sides, and "unavailable" reasons."""
import functools
import re

import numpy as np
import pytest
import sympy as sp

from problems.reference import max_relative_error, reference
from problems.registry import get_problem
from solvers.base import SolveSpec, Status, UnsupportedError
from solvers.cpp import build
from solvers.cpp.backend import CppBackend
from solvers.cpp.source import _RealPrinter, rhs_source, translation_unit
from solvers.registry import get_backend

BACKEND = CppBackend()
N = 64


@functools.lru_cache(maxsize=None)
def solve(backend: str, problem: str, method: str, mode: str, dtype: str, n: int = N, **kw):
    spec = SolveSpec(problem=problem, method=method, mode=mode, dtype=dtype, n=n, **kw)
    prep = get_backend(backend).prepare(spec)
    first = prep.fetch(prep.run())
    out = prep.run()
    prep.sync(out)
    res = prep.fetch(out)
    prep.close()
    np.testing.assert_array_equal(first.u_final, res.u_final)  # a second run reproduces the first
    return res


# Bounds as the fused kernel's accuracy test: float32 rounding accumulates to ~1e-5 over 1000
# steps; float64 Lorenz adaptive at the default rtol = 1e-8: global error 5.3e-6 (the fused
# kernel's too, to the last digit); float64 fixed:
# truncation ~1e-10.
@pytest.mark.parametrize("problem,method,mode,dtype,bound", [
    ("lorenz", "tsit5", "fixed", "float32", 3e-5),
    ("lorenz", "tsit5", "adaptive", "float32", 3e-5),
    ("lorenz", "rk4", "fixed", "float32", 3e-5),
    ("lorenz", "rk4_38", "fixed", "float32", 3e-5),
    ("lorenz", "tsit5", "fixed", "float64", 1e-9),
    ("lorenz", "tsit5", "adaptive", "float64", 1e-5),
    ("sir", "tsit5", "adaptive", "float32", 1e-5),
], ids=str)
def test_against_reference(problem, method, mode, dtype, bound):
    prob = get_problem(problem)
    res = solve("cuda-cpp", problem, method, mode, dtype)
    assert res.u_final.dtype == np.dtype(dtype)
    assert np.all(res.status == Status.SUCCESS)
    err = max_relative_error(res.u_final, reference(prob, N, dtype))
    assert err <= bound, f"max relative error {err:.3g} > {bound:g}"
    if mode == "fixed":
        steps = round((prob.tspan[1] - prob.tspan[0]) / prob.dt)
        assert np.all(res.accepted == steps) and np.all(res.rejected == 0)
        evals = 6 if method == "tsit5" else 4
        assert np.all(res.rhs_evals == steps * evals)
    else:
        assert np.all(res.rhs_evals == 1 + 6 * (res.accepted + res.rejected))


@pytest.mark.parametrize("problem,rtol", [("lorenz", 1e-6), ("lorenz", 1e-8), ("sir", 1e-6)])
def test_float64_same_steps_as_fused(problem, rtol):
    """Same tableau, controller and norm as the Numba kernel: in float64 every trajectory takes
    exactly the same accepted and rejected steps, and ends at the same state to rounding."""
    a = solve("cuda-cpp", problem, "tsit5", "adaptive", "float64", rtol=rtol, atol=rtol)
    f = solve("fused", problem, "tsit5", "adaptive", "float64", rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(a.accepted, f.accepted)
    np.testing.assert_array_equal(a.rejected, f.rejected)
    np.testing.assert_array_equal(a.status, f.status)
    np.testing.assert_allclose(a.u_final, f.u_final, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("method", ["tsit5", "rk4", "rk4_38"])
def test_float64_fixed_matches_fused(method):
    a = solve("cuda-cpp", "lorenz", method, "fixed", "float64")
    f = solve("fused", "lorenz", method, "fixed", "float64")
    np.testing.assert_allclose(a.u_final, f.u_final, rtol=1e-12, atol=1e-12)


def test_max_steps_status():
    res = solve("cuda-cpp", "lorenz", "tsit5", "adaptive", "float32", max_steps=5)
    assert np.all(res.status == Status.MAX_STEPS)
    assert np.all(res.accepted + res.rejected == 5)


def test_threads_do_not_change_results():
    one = solve("cuda-cpp", "lorenz", "tsit5", "adaptive", "float32", n=100, threads=1)
    two = solve("cuda-cpp", "lorenz", "tsit5", "adaptive", "float32", n=100, threads=2)
    np.testing.assert_array_equal(one.u_final, two.u_final)
    np.testing.assert_array_equal(one.accepted, two.accepted)
    assert BACKEND.settings(SolveSpec("lorenz", "tsit5", "fixed", "float32", 8, threads=3))["threads"] == 3


def test_partial_lane_block():
    """N not a multiple of the lane block: the spare lanes are computed, never written."""
    res = solve("cuda-cpp", "lorenz", "tsit5", "adaptive", "float32", n=37)
    ref = solve("cuda-cpp", "lorenz", "tsit5", "adaptive", "float32", n=37, threads=1)
    assert res.u_final.shape == (37, 3) and np.all(res.status == Status.SUCCESS)
    np.testing.assert_array_equal(res.u_final, ref.u_final)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lane_loops_vectorised(dtype):
    """g++'s report says the lane loops of both block drivers are vectorised (the adaptive one
    was not, silently, until its masks became lane_int and its int<->real conversions integer
    adds: this test is what caught it)."""
    src = translation_unit("lorenz", dtype)
    report = build.build_host(src).report.read_text()
    for function in ("block_fixed", "block_adaptive"):
        assert build.lane_loop_vectorised(report, src, function), f"{function}: lane loop not vectorised"


def test_float32_host_build_has_no_double_arithmetic():
    """Every literal typed: the float32 library does no double arithmetic (the float64 one does,
    which shows the pattern can match)."""
    f32 = build.host_assembly(translation_unit("lorenz", "float32"))
    hits = [ln for ln in f32.splitlines() if build.X86_FP64.search(ln)]
    assert not hits, hits[:5]
    f64 = build.host_assembly(translation_unit("lorenz", "float64"))
    assert any(build.X86_FP64.search(ln) for ln in f64.splitlines())


def test_dispatch_and_registry():
    assert get_backend("cuda-cpp").name == "cuda-cpp"
    spec = SolveSpec("lorenz", "tsit5", "fixed", "float32", 8)
    assert type(BACKEND.prepare(spec)).dispatch == "kernel"


# ---- translation of the right-hand side --------------------------------------------------------

def test_rhs_translation_types_every_literal():
    x, y = sp.symbols("x y", real=True)
    expr = sp.Rational(1, 3) * x**2 + sp.Float(2.5) * y - 4 * x / y**2 + sp.exp(x)
    f32 = _RealPrinter("float32").doprint(expr)
    f64 = _RealPrinter("float64").doprint(expr)
    assert "expf(x)" in f32 and "((x)*(x))" in f32 and "2.5f" in f32 and "(1.0f/3.0f)" in f32
    # every numeric literal of the float kernel carries the f suffix
    numbers = re.findall(r"(?<![\w.])(\d+\.\d*(?:e[-+]?\d+)?f?)", f32)
    assert numbers and all(n.endswith("f") for n in numbers), f32
    assert "exp(x)" in f64 and "(1.0/3.0)" in f64 and "2.5*y" in f64 and "f" not in f64


def test_lorenz_rhs_source():
    src = rhs_source("lorenz", "float32")
    assert "du[0] = p_0*(-u_0 + u_1);" in src
    tu = translation_unit("lorenz", "float32")
    for line in tu.splitlines():
        if line.startswith("constexpr real"):
            value = line.split("//")[0].strip().rstrip(";").split("=")[1].strip()
            assert value.endswith("f"), line


# ---- bad input and missing tools ---------------------------------------------------------------

def test_unsupported_combinations_have_reasons():
    assert "no adaptive mode" in BACKEND.check(SolveSpec("lorenz", "rk4", "adaptive", "float32", 8))
    assert "saveat" in BACKEND.check(SolveSpec("lorenz", "tsit5", "fixed", "float32", 8, saveat=(0.5,)))
    assert "no method" in BACKEND.check(SolveSpec("robertson", "rodas5p", "adaptive", "float64", 8))
    with pytest.raises(UnsupportedError):
        BACKEND.prepare(SolveSpec("lorenz", "rk4", "adaptive", "float32", 8))


def test_missing_compiler_is_unavailable(monkeypatch):
    monkeypatch.setenv("ODEBENCH_CXX", "/nonexistent/g++")
    ok, why = BACKEND.available("cpu")
    assert not ok and "no C++ compiler" in why
    with pytest.raises(UnsupportedError, match="no C\\+\\+ compiler"):
        BACKEND.prepare(SolveSpec("lorenz", "tsit5", "fixed", "float32", 8))


def test_compiler_error_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("ODEBENCH_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="failed"):
        build.build_host("this is not C++;")


def test_gpu_unavailable_has_reason():
    ok, why = BACKEND.available("gpu")
    if not ok:  # this machine: no driver
        assert why
        with pytest.raises(UnsupportedError):
            BACKEND.prepare(SolveSpec("lorenz", "tsit5", "fixed", "float32", 8, device="gpu"))


# ---- report section ----------------------------------------------------------------------------

def _rows(backend, mode, n, time_s, steps, rtol=float("nan")):
    return [{"problem": "lorenz", "backend": backend, "variant": "", "method": "tsit5", "mode": mode,
             "dtype": "float32", "n": n, "device": "cpu", "dt": 1e-3, "rtol": rtol, "atol": rtol,
             "status": "ok", "time_s": t, "steps_mean": steps, "rejected_mean": 0.0}
            for t in time_s]


def test_report_section_ratio_and_verdict(tmp_path):
    import pandas as pd

    from harness.report.sections.cpp import report_section

    df = pd.DataFrame(
        _rows("fused", "fixed", 1024, [1.0, 1.2, 1.1], 1000) + _rows("cuda-cpp", "fixed", 1024, [0.5, 0.5], 1000)
        + _rows("fused", "adaptive", 1024, [1.0], 50, 1e-6) + _rows("cuda-cpp", "adaptive", 1024, [1.05], 50, 1e-6)
        + [{**_rows("cuda-cpp", "fixed", 4096, [1.0], 1000)[0], "status": "error", "time_s": float("nan")}])
    from harness.results.cells import cell_table

    text = report_section(cell_table(df))
    assert "| cpu | lorenz | tsit5 | fixed | float32 |  |" in text and "| 0.45 | yes |" in text
    assert "fixed float32" in text and "C++ time / fused time is 0.45x" in text
    assert "takes 120% more time than the C++ kernel" in text
    assert "C++ time / fused time is 1.05x: the Numba kernel is within 10% of the C++ kernel" in text
    assert report_section(cell_table(df[df["backend"] == "fused"])) is None


def test_cpp_closeness_words_come_from_the_number():
    from harness.report.sections.cpp import closeness

    assert closeness(0.74) == "takes 35% more time than the C++ kernel"      # 0.74x is not "within 10%"
    assert closeness(1 / 0.74) == "takes 26% less time than the C++ kernel"
    assert closeness(1.0) == "is within 10% of the C++ kernel"

