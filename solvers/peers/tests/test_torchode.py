"""torchode backend: accuracy, per-sample statistics, statuses, and a missing torchode."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from solvers.base import SolveSpec, Status, UnsupportedError
from solvers.peers.tests.helpers import mixed_error, relative_error, solve

LORENZ_FIXED = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8)
needs_torchode = pytest.mark.skipif(importlib.util.find_spec("torchode") is None,
                                    reason="torchode is not installed")

ADAPTIVE = SolveSpec(problem="lorenz", method="tsit5", mode="adaptive", dtype="float64", n=8,
                     rtol=1e-6, atol=1e-6)


def _backend():
    # A fresh instance: the registry may hold a stand-in if torchode was missing earlier.
    from solvers.peers.torchode_backend import TorchodeBackend

    return TorchodeBackend()


def test_missing_torchode_makes_only_torchode_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchode", None)  # `import torchode` now raises ImportError
    b = _backend()
    ok, reason = b.available("cpu")
    assert not ok and "torchode is not importable" in reason
    assert b.check(LORENZ_FIXED) == reason
    with pytest.raises(UnsupportedError, match="torchode is not importable"):
        b.prepare(LORENZ_FIXED)
    # Everything else is untouched.
    from solvers.peers.torchdiffeq_backend import TorchdiffeqBackend

    assert TorchdiffeqBackend().available("cpu")[0]


@needs_torchode
def test_fixed_lorenz_float32():
    res = solve("torchode", LORENZ_FIXED)
    assert res.u_final.dtype == np.float32
    assert relative_error(res, LORENZ_FIXED) < 1e-4
    assert np.all(res.accepted == 1000) and np.all(res.rejected == 0)
    assert np.all(res.status == Status.SUCCESS)


@needs_torchode
def test_adaptive_lorenz_per_sample_statistics():
    res = solve("torchode", ADAPTIVE)
    assert mixed_error(res, ADAPTIVE) < 1e-5
    assert np.all(res.status == Status.SUCCESS)
    # Each sample has its own step size, hence its own step count...
    assert len(set(res.accepted.tolist())) > 1 and np.all(res.accepted > 0)
    # ...but the batch iterates until the slowest is done, evaluating every sample each time.
    steps = res.accepted + res.rejected
    assert res.notes["lockstep_rhs_evals"] == 1 + 6 * int(steps.max())
    np.testing.assert_array_equal(res.rhs_evals, 1 + 6 * steps)


@needs_torchode
def test_sir_adaptive_float32():
    spec = SolveSpec(problem="sir", method="tsit5", mode="adaptive", dtype="float32", n=8,
                     rtol=1e-6, atol=1e-6)
    res = solve("torchode", spec)
    assert relative_error(res, spec) < 1e-4


@needs_torchode
def test_max_steps_is_a_status():
    res = solve("torchode", ADAPTIVE.with_(max_steps=3))
    assert np.all(res.status == Status.MAX_STEPS)


@needs_torchode
def test_stiff_problem_and_unknown_method_give_reasons():
    b = _backend()
    robertson = SolveSpec(problem="robertson", method="tsit5", mode="adaptive", dtype="float64", n=2)
    assert "no stiff solver" in b.check(robertson)
    assert "rk4_38" in b.check(LORENZ_FIXED.with_(method="rk4_38"))


@needs_torchode
def test_settings_record_controller_and_lockstep():
    s = _backend().settings(ADAPTIVE)
    ctrl = s["stepsize_controller"]
    assert ctrl["class"] == "PIDController"
    assert ctrl["pcoeff"] == pytest.approx(0.4) and ctrl["icoeff"] == pytest.approx(0.3)
    assert s["step_control"] == "lockstep" and s["max_steps"] == ADAPTIVE.max_steps
    default = _backend().settings(ADAPTIVE.with_(controller="default"))["stepsize_controller"]
    assert default["pcoeff"] == pytest.approx(0.2) and default["icoeff"] == pytest.approx(0.5)


@pytest.mark.slow
@needs_torchode
def test_compiled_variant_matches_eager():
    # dt = 0.01 keeps the solve short; torch.compile's one-off compilation dominates (~20 s).
    spec = LORENZ_FIXED.with_(dt=0.01)
    eager = solve("torchode", spec)
    compiled = solve("torchode", spec.with_(variant="compiled"))
    np.testing.assert_allclose(compiled.u_final, eager.u_final, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(compiled.accepted, eager.accepted)


@needs_torchode
@pytest.mark.parametrize("problem", ["lorenz", "sir", "robertson"])
def test_generated_torchscript_rhs_equals_the_problem_rhs(problem):
    import torch

    from problems.registry import get_problem
    from solvers.peers._torchscript import generated_rhs_class

    prob = get_problem(problem)
    u, p = prob.ensemble(16, "float64")
    u = u + np.linspace(0.1, 0.9, u.size).reshape(u.shape)  # away from the initial state
    module = torch.jit.script(generated_rhs_class(prob)(torch.as_tensor(p)))
    got = module(torch.zeros(16, dtype=torch.float64), torch.as_tensor(u)).numpy()
    np.testing.assert_allclose(got, prob.rhs_numpy(u, p), rtol=1e-13, atol=1e-300)


@needs_torchode
@pytest.mark.parametrize("spec", [LORENZ_FIXED, ADAPTIVE], ids=["fixed", "adaptive"])
def test_jit_variant_matches_reference_or_is_refused_with_torchscripts_error(spec):
    spec = spec.with_(variant="jit")
    reason = _backend().check(spec)
    if reason is not None:
        # torch 2.13 cannot script torchode 1.0.1's AutoDiffAdjoint (seen 2026-12-01): the cell
        # becomes a row with this reason instead of running eagerly under the "jit" name.
        assert reason.startswith("torch.jit.script of torchode's AutoDiffAdjoint fails")
        with pytest.raises(UnsupportedError):
            _backend().prepare(spec)
        return
    res = solve("torchode", spec)
    if spec.mode == "fixed":
        assert relative_error(res, spec) < 1e-4
    else:
        assert mixed_error(res, spec) < 1e-5
