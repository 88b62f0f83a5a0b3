"""Fused and array-style particle swarms: same random stream -> same trajectory (float64), the
FitzHugh-Nagumo fit recovers its parameters, the CUDA kernels compile (PTX) and run (simulator)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from problems.pso_core import rosenbrock
from problems.registry import get_problem
from solvers.base import SolveSpec
from solvers.registry import get_backend

ROOT = Path(__file__).resolve().parents[3]


def solve(backend, problem, method, n, iters, dtype="float64", seed=0):
    spec = SolveSpec(problem, method, "fixed", dtype, n, max_steps=iters, seed=seed)
    assert get_backend(backend).check(spec) is None
    prep = get_backend(backend).prepare(spec)
    out = prep.run()
    prep.sync(out)
    first = prep.fetch(out)
    second = prep.fetch(prep.run())  # every run starts the swarm afresh
    prep.close()
    np.testing.assert_array_equal(first.u_final, second.u_final)
    return first, spec


@pytest.mark.parametrize("method", ["pso", "pso-async"])
def test_fused_and_array_take_the_same_trajectory_rosenbrock(method):
    """No fast-math in the swarm kernels: the same IEEE operations in the same order, bit for bit."""
    for iters in (1, 7, 40):
        f, _ = solve("fused", "pso_rosenbrock", method, 64, iters)
        a, _ = solve("array", "pso_rosenbrock", method, 64, iters)
        np.testing.assert_array_equal(f.u_final, a.u_final)
        assert f.notes["best_cost"] == a.notes["best_cost"]


@pytest.mark.slow  # the FitzHugh-Nagumo fit: 13 s; the Rosenbrock swarm checks the same path
def test_fused_and_array_take_the_same_trajectory_fhn():
    """The ODE solves differ in the last bits (the fused ODE kernel contracts a*b+c into fma):
    the swarms agree to rounding."""
    f, _ = solve("fused", "pso_fitzhugh_nagumo", "pso", 48, 8)
    a, _ = solve("array", "pso_fitzhugh_nagumo", "pso", 48, 8)
    np.testing.assert_allclose(f.u_final, a.u_final, rtol=1e-12, atol=1e-14)
    assert abs(f.notes["best_cost"] - a.notes["best_cost"]) <= 1e-9 * a.notes["best_cost"]


def test_rosenbrock_objective_is_written_once():
    x = np.random.default_rng(1).uniform(-1, 2, size=(10, 5))
    p = np.array([1.0, 100.0])
    want = np.array([sum(100 * (c[d + 1] - c[d] ** 2) ** 2 + (1 - c[d]) ** 2 for d in range(9)) for c in x.T])
    np.testing.assert_allclose(rosenbrock(x, slice(None), p), want, rtol=1e-13)
    assert rosenbrock(np.ones((10, 1)), 0, p) == 0.0


def test_swarm_improves_and_reports_iterations():
    f, spec = solve("fused", "pso_rosenbrock", "pso", 256, 60, dtype="float32")
    assert f.accepted[0] == 60 and f.status[0] == 0
    short, _ = solve("fused", "pso_rosenbrock", "pso", 256, 5, dtype="float32")
    assert f.notes["best_cost"] < short.notes["best_cost"]
    err, note = spec.prob.reference_for(spec).accuracy(f)
    assert np.isfinite(err) and "best objective" in note


#: Stated tolerance of the recovery test: every fitted parameter within 5% of the truth, the
#: well-determined input current l within 0.1%. On t in [0, 3] the slow variable w barely moves,
#: so (a, b, tau_inv) enter the data mostly through tau_inv (a - b w) with w ~ 1: a flat valley
#: the swarm stops in (measured, seed 0: a = 0.670, b = 0.796, tau_inv = 0.0822, l = 0.49998,
#: loss 7.4e-7; more iterations do not move it).
FHN_RECOVERY_RTOL = 5e-2
FHN_CURRENT_RTOL = 1e-3


@pytest.mark.slow
def test_pso_recovers_fitzhugh_nagumo_parameters():
    """Noiseless data, fixed seed, the protocol's swarm (10,000 particles, 100 iterations): the
    fused swarm (Tsit5 per particle per iteration) recovers (a, b, tau_inv, l) = (0.7, 0.8, 0.08, 0.5)."""
    f, spec = solve("fused", "pso_fitzhugh_nagumo", "pso", 10_000, 100, dtype="float32", seed=0)
    x = f.u_final[0].astype(np.float64)
    truth = np.array(get_problem("pso_fitzhugh_nagumo").optimum)
    rel = np.abs(x - truth) / truth
    assert rel.max() <= FHN_RECOVERY_RTOL and rel[3] <= FHN_CURRENT_RTOL, (x, f.notes["best_cost"])
    assert f.notes["best_cost"] < 1e-5


def test_unsupported_combinations_are_refused():
    fused = get_backend("fused")
    assert "pso-async" in fused.check(SolveSpec("pso_fitzhugh_nagumo", "pso-async", "fixed", "float32", 8))
    assert "no pso method 'tsit5'" in fused.check(SolveSpec("pso_rosenbrock", "tsit5", "fixed", "float32", 8))
    assert "no ode method 'pso'" in fused.check(SolveSpec("lorenz", "pso", "fixed", "float32", 8))
    assert "variant" in fused.check(SolveSpec("pso_rosenbrock", "pso", "fixed", "float32", 8, variant="serial"))


class _FakeDevice:
    compute_capability = (9, 0)


def test_cuda_kernels_compile_to_ptx_without_f64(monkeypatch):
    pytest.importorskip("numba.cuda")
    import numba
    import numba.cuda.dispatcher as cuda_dispatcher
    from numba import cuda

    from solvers.fused.pso import make_kernels

    monkeypatch.setattr(cuda_dispatcher, "get_current_device", lambda: _FakeDevice())
    f32, i64 = numba.float32, numba.int64
    a2, a1 = f32[:, ::1], f32[::1]
    kern = make_kernels(rosenbrock, "float32", "cuda")
    sigs = {"step": (a2, a2, a2, a1, a2, a1, i64, i64, f32, f32, f32, f32, f32),
            "run_async": (a2, a2, a2, a1, a2, a1, a1, i64, i64, f32, f32, f32, f32, f32)}
    for name, sig in sigs.items():
        ptx, _ = cuda.compile_ptx(kern[name].py_func, sig, cc=(9, 0))
        assert ".entry" in ptx
        f64 = [l for l in ptx.splitlines() if not l.strip().startswith("//") and (".f64" in l or "%fd" in l)]
        assert not f64, (name, f64[:5])
    fit = make_kernels(None, "float32", "cuda")
    a3 = f32[:, :, ::1]
    ptx, _ = cuda.compile_ptx(fit["loss"].py_func, (f32[:, :], a2, a1, a3, a2), cc=(9, 0))
    assert ".entry" in ptx and "%fd" not in ptx


@pytest.mark.cudasim
@pytest.mark.slow
def test_simulated_cuda_swarm_matches_array_replica():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "solvers.fused.tests.pso_cudasim_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rosenbrock-sync"]["max_abs_position"] == 0.0, report
    assert report["rosenbrock-async"]["max_abs_position"] == 0.0, report
    assert report["fhn-sync"]["max_abs_position"] <= 1e-12 and report["fhn-sync"]["finite"], report


def test_fused_fit_loss_is_the_loss_of_its_position():
    """The fused ODE kernel inside the loss: the reported best cost equals the float64 SciPy loss of
    the reported position to Tsit5's error at dt = 0.01."""
    f, spec = solve("fused", "pso_fitzhugh_nagumo", "pso", 16, 2)
    want = spec.prob.fit.loss(f.u_final)[0]
    assert abs(f.notes["best_cost"] - want) <= 1e-6 * want + 1e-12
