"""Bring your own ensemble (issue 31): per-trajectory inputs on every backend, the Python API,
registration checks, the recipe of README's "Adding a problem" end to end, and the examples."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import UsageError
from harness.measure.ensemble import benchmark_ensemble
from harness.results.headline import headline_table
from harness.run.default_suite import problem_entries
from harness.run.suites import load_suite
from problems import EnsembleInputs, Problem, Sweep, get_problem, register
from problems.reference import reference, solve_one
from problems.registry import PLUGINS_ENV, PROBLEMS
from problems.rhs_check import RhsError, check_problem
from solvers import parameter_grid, random_initial_conditions, solve_ensemble
from solvers.base import SolveSpec
from solvers.registry import MANIFEST, load_backend

ROOT = Path(__file__).resolve().parents[2]

#: Each ODE backend with a method it has in adaptive mode.
ODE_METHODS = {"fused": "tsit5", "array": "tsit5", "diffrax": "tsit5", "torchdiffeq": "dopri5",
               "torchode": "tsit5", "scipy": "dop853", "jax-handwritten": "tsit5",
               "torch-handwritten": "tsit5", "pallas": "tsit5", "cuda-cpp": "tsit5"}
FAST = ("fused", "array", "scipy")


@pytest.fixture(autouse=True)
def _registry_restored():
    """Problems registered by a test leave the registry with it (other tests loop over the zoo)."""
    before = dict(PROBLEMS)
    yield
    PROBLEMS.clear()
    PROBLEMS.update(before)


def test_every_ode_backend_is_listed():
    assert set(ODE_METHODS) == {b for b, m in MANIFEST.items() if "ode" in m["kinds"]}


def _available(backend: str) -> bool:
    b, _ = load_backend(backend)
    return b is not None and b.available("cpu")[0]


# ---- right-hand sides of the tests (module level: their source is read by the checks) -------

def oscillator(u, p, t):
    x, v = u
    k, c = p
    return (v, -k * x - c * v)


def decay(u, p, t):
    x, = u
    k, = p
    return (-k * x,)


def with_float(u, p, t):
    x, y = u
    a, b = p
    return (y, -a * x * 0.5)


def with_unknown_call(u, p, t):
    x, y = u
    a, b = p
    return (y, m_erf(x))  # noqa: F821 - never called: the check refuses it


def with_wrong_length(u, p, t):
    x, y = u
    a, b = p
    return (y, -a * x, b)


def with_branch(u, p, t):
    x, y = u
    a, b = p
    return (y, a if x > b else b)


def _problem(rhs, name: str, n_states: int = 2, n_params: int = 2) -> Problem:
    return Problem(name=name, rhs=rhs, state_names=tuple(f"x{i}" for i in range(n_states)),
                   param_names=tuple(f"a{i}" for i in range(n_params)), u0=(1.0,) * n_states,
                   params=(1.0,) * n_params, tspan=(0.0, 1.0), sweep=Sweep("a0", 0.5, 1.0), stiff=False,
                   default_dtype="float64", dt=1e-2, rtol=1e-6, atol=1e-6)


# ---- per-trajectory inputs ---------------------------------------------------------------------

@pytest.mark.parametrize("backend", [pytest.param(b, marks=() if b in FAST else pytest.mark.slow)
                                     for b in ODE_METHODS])
def test_random_inputs_match_scipy_per_trajectory(backend):
    if not _available(backend):
        pytest.skip(f"{backend} is not available here")
    n = 8
    rng = np.random.default_rng(5)
    u0 = rng.normal(size=(n, 2))
    p = np.column_stack([rng.uniform(0.5, 4.0, n), rng.uniform(0.0, 0.5, n)])
    sol = solve_ensemble(oscillator, u0, p, (0.0, 3.0), method=ODE_METHODS[backend], backend=backend,
                         dtype="float64", rtol=1e-8, atol=1e-8)
    prob = get_problem(sol.problem)
    ref = np.stack([solve_one(prob, u0[i], p[i])[0] for i in range(n)])
    assert sol.u.shape == (n, 1, 2) and sol.u.dtype == np.float64 and sol.t.tolist() == [3.0]
    assert sol.status.tolist() == [0] * n and sol.steps.shape == (n,)
    err = np.max(np.abs(sol.u_final - ref) / (1e-8 + 1e-8 * np.abs(ref)))
    assert err < 1000, f"{backend}: {err:.3g} tolerance units off SciPy's float64 solution"


def test_solution_layout_and_dtype_are_the_backends_shared_ones():
    u0 = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    p = np.array([[1.0, 0.1], [2.0, 0.2], [3.0, 0.3]])
    saveat = (0.0, 0.5, 1.0)
    a = solve_ensemble(oscillator, u0, p, (0.0, 1.0), saveat=saveat, rtol=1e-6, atol=1e-6)
    b = solve_ensemble(oscillator, u0, p, (0.0, 1.0), saveat=saveat, rtol=1e-6, atol=1e-6, backend="array")
    for s in (a, b):
        assert s.u.shape == (3, 3, 2) and s.u.dtype == np.float32 and s.t.dtype == np.float32
        assert s.steps.dtype == np.int64 and s.status.dtype == np.int64
    np.testing.assert_allclose(a.u, b.u, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.u[:, 0], u0, rtol=1e-6)


def test_cpp_arm_runs_a_one_parameter_one_state_problem():
    if not _available("cuda-cpp"):
        pytest.skip("no C++ compiler here")
    k = np.linspace(0.5, 2.0, 4)[:, None]
    sol = solve_ensemble(decay, np.ones((4, 1)), k, (0.0, 1.0), backend="cuda-cpp", dtype="float64",
                         rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sol.u_final[:, 0], np.exp(-k[:, 0]), rtol=1e-7)


def test_backend_that_cannot_run_names_itself():
    with pytest.raises(ValueError, match="backend 'scipy'.*tsit5"):
        solve_ensemble(oscillator, np.ones((2, 2)), np.ones((2, 2)), (0.0, 1.0), backend="scipy")


def test_inputs_validate_and_hash():
    with pytest.raises(ValueError, match="inputs must be u0"):
        SolveSpec("lorenz", "tsit5", "adaptive", "float32", 4, inputs=EnsembleInputs(np.ones((4, 2)), np.ones((4, 3))))
    with pytest.raises(ValueError, match="no explicit per-trajectory inputs"):
        SolveSpec("linear_sde", "em", "fixed", "float32", 4, inputs=EnsembleInputs(np.ones((4, 3)), np.ones((4, 2))))
    with pytest.raises(ValueError, match="same number"):
        EnsembleInputs(np.ones((4, 3)), np.ones((5, 3)))
    inp = random_initial_conditions("lorenz", 6, seed=2)
    spec = SolveSpec("lorenz", "tsit5", "adaptive", "float32", 6, inputs=inp)
    assert hash(spec) == hash(spec.with_(inputs=random_initial_conditions("lorenz", 6, seed=2)))
    assert spec.as_dict()["inputs"]["digest"] == inp.digest
    assert "inputs" not in spec.with_(inputs=None).as_dict()  # rows of the sweep keep their settings
    u0, p = spec.ensemble()
    assert u0.dtype == np.float32 and np.allclose(u0, inp.u0, rtol=1e-6)
    shard = spec.with_(n=2, shard_of=(3, 6))
    np.testing.assert_array_equal(shard.ensemble()[0], u0[3:5])


def test_parameter_grid_and_reference_key():
    lorenz = get_problem("lorenz")
    grid = parameter_grid("lorenz", "rho", np.linspace(0.0, 21.0, 5))
    u0, p = lorenz.ensemble(5, "float64")
    np.testing.assert_array_equal(grid.u0, u0)
    np.testing.assert_array_equal(grid.p, p)  # the sweep, as explicit inputs
    other = random_initial_conditions(lorenz, 5, seed=0, scale=1.0)
    a = reference(lorenz, 5, "float64")
    b = reference(lorenz, 5, "float64", inputs=other)
    assert not np.allclose(a.u_final, b.u_final)  # never the sweep's cached reference
    ic = other.u0[2]
    np.testing.assert_allclose(b.u_final[2], solve_one(lorenz, ic, other.p[2])[0], rtol=1e-9)


def test_benchmark_ensemble_returns_a_row():
    row = benchmark_ensemble("lorenz", random_initial_conditions("lorenz", 16, seed=3), backend="array",
                             dtype="float64", rtol=1e-6, atol=1e-6, repeats=2, warmups=0)
    assert row["status"] == "ok" and row["n"] == 16 and len(row["time_samples"]) == 2
    assert row["time_s"] > 0 and row["max_rel_err"] < 1e-3
    assert row["settings"]["inputs"]["label"].startswith("random u0")


# ---- registration checks -------------------------------------------------------------------------

@pytest.mark.parametrize("rhs, what", [
    (with_float, "float literal 0.5"), (with_unknown_call, "call to m_erf"),
    (with_wrong_length, "returns 3 entries; the problem has 2 states"), (with_branch, "`if`"),
])
def test_register_refuses_a_bad_rhs_naming_problem_and_line(rhs, what):
    name = f"bad_{rhs.__name__}"
    with pytest.raises(RhsError) as info:
        register(_problem(rhs, name))
    msg = str(info.value)
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if text.strip().startswith("return") and i > rhs.__code__.co_firstlineno)
    assert f"problem {name!r}" in msg and what in msg and f"test_api.py:{line}" in msg
    assert name not in PROBLEMS


def test_register_is_idempotent_and_refuses_a_clash():
    a = register(_problem(oscillator, "api_osc"))
    assert register(_problem(oscillator, "api_osc")) is a
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(_problem(oscillator, "api_osc"), tspan=(0.0, 2.0), _cache={}))


def test_every_zoo_rhs_passes_the_checks():
    for name in list(PROBLEMS) + ["lorenz96-8"]:
        check_problem(get_problem(name))


# ---- the recipe: README's van der Pol, `run --problem vdp` with no suite -------------------------

def _readme_vdp(tmp_path: Path) -> Path:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Adding a problem"):]
    block = re.search(r"```python\n(# vdp\.py.*?)```", section, re.S).group(1)
    path = tmp_path / "vdp.py"
    path.write_text(block)
    return path


def _run(args: list[str], cwd: Path, env_extra: dict, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _recipe(tmp_path: Path, backends: list[str], report: bool, timeout: int):
    vdp = _readme_vdp(tmp_path)
    out = tmp_path / "run"
    args = ["-m", "harness", "run", "--problem", "vdp", "--backend", ",".join(backends), "--n", "8,64",
            "--repeats", "1", "--warmups", "0", "--out", str(out)] + (["--report"] if report else [])
    proc = _run(args, tmp_path, {PLUGINS_ENV: str(vdp)}, timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = pd.read_csv(out / "results.csv")
    return out, results


def test_recipe_runs_vdp_without_a_suite(tmp_path):
    out, results = _recipe(tmp_path, ["fused", "array"], report=False, timeout=600)
    assert set(results["status"]) == {"ok"} and set(results["problem"]) == {"vdp"}
    assert set(results["backend"]) == {"fused", "array"} and set(results["mode"]) == {"fixed", "adaptive"}
    head = headline_table(results)
    assert not head.empty and head["setting"].str.startswith("vdp").all()


@pytest.mark.slow
def test_recipe_runs_vdp_on_every_ode_backend_with_a_headline(tmp_path):
    here = [b for b in ODE_METHODS if _available(b)]
    out, results = _recipe(tmp_path, here, report=True, timeout=1800)
    ok = results[results["status"] == "ok"]
    assert set(ok["backend"]) == set(here), results[results["status"] != "ok"][["backend", "reason"]]
    report = (out / "report.md").read_text()
    assert "## Headline" in report and "### vdp fixed step" in report


def test_default_suite_and_bad_plugin(tmp_path):
    robertson = {(e["backends"][0], e["methods"][0]) for e in problem_entries("robertson")}
    assert ("fused", "rodas5p") in robertson and all(m != "tsit5" for _, m in robertson)
    assert load_suite("problem:lorenz").name == "problem-lorenz"
    with pytest.raises(UsageError, match="unknown problem 'nope'"):
        load_suite("problem:nope")
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""
        from problems import Problem, Sweep, register

        def f(u, p, t):
            x, = u
            a, = p
            return (-a * x * 2.0,)

        register(Problem(name="badf", rhs=f, state_names=("x",), param_names=("a",), u0=(1.0,),
                         params=(1.0,), tspan=(0.0, 1.0), sweep=Sweep("a", 1.0, 2.0), stiff=False,
                         default_dtype="float32", dt=0.1, rtol=1e-6, atol=1e-6))
    """))
    proc = _run(["-m", "harness", "run", "--problem", "badf", "--out", str(tmp_path / "o")], tmp_path,
                {PLUGINS_ENV: str(bad)}, 300)
    assert proc.returncode == 2 and "float literal 2.0" in proc.stderr and "bad.py:7" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


# ---- the examples ------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["own_ode_fused.py", "monte_carlo_backends.py", "sde_ensemble.py"])
def test_example_runs(script, tmp_path):
    proc = _run([str(ROOT / "examples" / script), "16"], tmp_path, {}, 900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() and "nan" not in proc.stdout


def test_suite_entry_names_an_input_generator(tmp_path):
    suite = tmp_path / "mc.toml"
    suite.write_text(textwrap.dedent("""
        description = "Monte-Carlo Lorenz"
        device = "cpu"
        [[entries]]
        problem = "lorenz"
        backends = ["fused", "array"]
        methods = ["tsit5"]
        modes = ["adaptive"]
        n = [8, 16]
        inputs = { generator = "random", seed = 3, scale = 1.0, param = "rho", lo = 10.0, hi = 28.0 }
    """))
    cells = load_suite(str(suite)).cells
    assert len(cells) == 4 and all(c.spec.inputs is not None for c in cells)
    a, b = (c.spec.inputs for c in cells if c.spec.n == 8)
    assert a == b and "seed 3" in a.label and np.all((a.p[:, 1] >= 10) & (a.p[:, 1] <= 28))
    assert cells[0].spec.as_dict()["inputs"]["digest"] == a.digest   # what the row's settings record
    suite.write_text(suite.read_text().replace('generator = "random"', 'generator = "sobol"'))
    with pytest.raises(UsageError, match=r"mc.toml: entries\[0\].inputs: unknown generator 'sobol'"):
        load_suite(str(suite))


def test_inputs_from_torch_and_jax_arrays():
    torch = pytest.importorskip("torch")
    jnp = pytest.importorskip("jax.numpy")
    u0 = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = np.array([[1.0, 0.25], [2.0, 0.5]])  # exact in float32 (JAX's default)
    a = solve_ensemble(oscillator, torch.tensor(u0), jnp.asarray(p), (0.0, 1.0), backend="array", dtype="float64",
                       rtol=1e-8, atol=1e-8)
    b = solve_ensemble(oscillator, u0, p, (0.0, 1.0), backend="array", dtype="float64", rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(a.u_final, b.u_final)
