"""torchdiffeq backend: rk4 (3/8 rule) and dopri5 against the reference, counts, reasons."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.base import SolveSpec, Status, UnsupportedError
from solvers.peers.tests.helpers import mixed_error, relative_error, solve
from solvers.registry import get_backend

pytest.importorskip("torchdiffeq")

RK4_FIXED = SolveSpec(problem="lorenz", method="rk4_38", mode="fixed", dtype="float32", n=8)
DOPRI5 = SolveSpec(problem="lorenz", method="dopri5", mode="adaptive", dtype="float64", n=8,
                   rtol=1e-6, atol=1e-6)


def test_rk4_38_fixed_lorenz_float32():
    res = solve("torchdiffeq", RK4_FIXED)
    assert res.u_final.dtype == np.float32
    assert relative_error(res, RK4_FIXED) < 1e-4
    assert np.all(res.accepted == 1000)
    # Four stages per step, no FSAL: every counted batched rhs call is a stage.
    assert np.all(res.rhs_evals == 4 * 1000)


def test_rk4_38_fixed_sir_float32():
    spec = RK4_FIXED.with_(problem="sir")
    res = solve("torchdiffeq", spec)
    assert relative_error(res, spec) < 1e-4
    assert np.all(res.accepted == spec.n_steps)


def test_dopri5_adaptive_lorenz_shares_one_step_sequence():
    res = solve("torchdiffeq", DOPRI5)
    assert mixed_error(res, DOPRI5) < 1e-5
    assert np.all(res.status == Status.SUCCESS)
    # One shared step size: every trajectory has the same counts.
    assert len(set(res.accepted.tolist())) == 1 and res.accepted[0] > 0
    # The callbacks and the rhs counter agree: f(t0) once, then 6 new stages per attempt (FSAL).
    assert res.rhs_evals[0] == 1 + 6 * (res.accepted[0] + res.rejected[0])
    assert res.notes["step_scope"] == "shared"


def test_max_norm_variant_is_at_least_as_strict():
    default = solve("torchdiffeq", DOPRI5)
    strict = solve("torchdiffeq", DOPRI5.with_(variant="max-norm"))
    assert strict.accepted[0] >= default.accepted[0]
    assert mixed_error(strict, DOPRI5) < 1e-5


def test_max_steps_stops_the_batch_with_a_status():
    spec = DOPRI5.with_(max_steps=3)
    res = solve("torchdiffeq", spec)
    assert np.all(res.status == Status.MAX_STEPS)
    assert np.all(np.isnan(res.u_final))
    assert "max_num_steps" in res.notes["failure"]


def test_unsupported_combinations_give_reasons():
    b = get_backend("torchdiffeq")
    assert "no Tsit5" in b.check(RK4_FIXED.with_(method="tsit5"))
    assert "3/8" in b.check(RK4_FIXED.with_(method="rk4"))
    robertson = SolveSpec(problem="robertson", method="dopri5", mode="adaptive", dtype="float64", n=2)
    assert "no stiff solver" in b.check(robertson)
    with pytest.raises(UnsupportedError, match="no stiff solver"):
        b.prepare(robertson)
    assert "adaptive" in b.check(RK4_FIXED.with_(variant="max-norm"))


def test_vmap_variant_runs_or_reports_the_exception():
    b = get_backend("torchdiffeq")
    spec = RK4_FIXED.with_(variant="vmap")
    reason = b.check(spec)
    if reason is None:  # a torchdiffeq that supports vmap: then it must compute the right thing
        res = solve("torchdiffeq", spec)
        assert relative_error(res, spec) < 1e-4
        return
    assert reason.startswith("torch.func.vmap over upstream torchdiffeq.odeint")
    assert "Error" in reason  # the exception's type and text, e.g. RuntimeError: vmap: ...
    with pytest.raises(UnsupportedError) as info:
        b.prepare(spec)
    assert str(info.value) == reason


def test_settings_name_every_choice():
    s = get_backend("torchdiffeq").settings(DOPRI5)
    assert s["options"]["safety"] == pytest.approx(0.9)
    assert s["options"]["ifactor"] == pytest.approx(10.0)
    assert s["options"]["dfactor"] == pytest.approx(0.2)
    assert s["options"]["first_step"] == DOPRI5.step
    assert s["step_control"] == "shared" and "RMS over all" in s["error_norm"]
    fixed = get_backend("torchdiffeq").settings(RK4_FIXED)
    assert fixed["torchdiffeq_method"] == "rk4" and "3/8" in fixed["method_note"]
    assert fixed["options"] == {"step_size": 1e-3}


def test_saveat_including_t0_keeps_outputs_aligned():
    from problems.reference import reference

    spec = DOPRI5.with_(rtol=1e-9, atol=1e-9, saveat=(0.0, 0.5, 1.0))
    res = solve("torchdiffeq", spec)
    ref = reference(spec.prob, spec.n, spec.dtype, spec.saveat)
    u0, _ = spec.ensemble()
    np.testing.assert_array_equal(res.saved[:, 0], u0)
    scale = np.maximum(np.abs(ref.saved).max(axis=2, keepdims=True), 1.0)
    assert np.max(np.abs(res.saved - ref.saved) / scale) < 1e-6
    np.testing.assert_array_equal(res.saved[:, -1], res.u_final)


@pytest.mark.parametrize("spec", [RK4_FIXED, DOPRI5], ids=["rk4_38-fixed", "dopri5-adaptive"])
def test_compiled_variant_matches_reference_and_the_eager_counts(spec):
    eager = solve("torchdiffeq", spec)
    res = solve("torchdiffeq", spec.with_(variant="compiled"))
    assert res.u_final.dtype == eager.u_final.dtype
    if spec.mode == "fixed":
        assert relative_error(res, spec) < 1e-4
    else:
        assert mixed_error(res, spec) < 1e-5
    np.testing.assert_array_equal(res.accepted, eager.accepted)
    np.testing.assert_array_equal(res.rhs_evals, eager.rhs_evals)
    s = get_backend("torchdiffeq").settings(spec.with_(variant="compiled"))
    assert s["grad"] == "torch.inference_mode()" and "torch.compile" in s["compilation"]
