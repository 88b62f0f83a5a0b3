"""SDE backends other than fused: weak accuracy at N = 2^16 against the closed form, and the
problem-kind gate (backends that do not serve a kind say so)."""
import numpy as np
import pytest

from problems.registry import get_problem
from problems.sde_core import SDEAccuracy
from solvers.base import SolveSpec
from solvers.peers.tests.helpers import solve
from solvers.registry import get_backend

LIN = get_problem("linear_sde")


def _run(backend, spec):
    ok, why = get_backend(backend).available(spec.device)
    if not ok:
        pytest.skip(why)
    return solve(backend, spec)


@pytest.mark.slow
@pytest.mark.parametrize("backend, variant", [("array", ""), ("array", "philox"), ("diffrax", ""),
                                              ("torchsde", ""), ("torchsde", "path")])
def test_weak_accuracy_at_65536(backend, variant):
    spec = SolveSpec("linear_sde", "em", "fixed", "float32", 2 ** 16, variant=variant, seed=4)
    res = _run(backend, spec)
    assert res.u_final.shape == (2 ** 16, 3)
    check = SDEAccuracy(LIN, spec).weak_check(res.u_final.astype(np.float64))
    assert check["ok"], check
    err, note = LIN.reference_for(spec).accuracy(res)
    assert np.isfinite(err) and note == ""


@pytest.mark.slow  # compiles the CRN for every SDE peer: 30-50 s
def test_peers_finish_the_crn_finite_on_a_short_span():
    """crn_sigmagen_short, 6720 trajectories: diffrax and torchsde with dense (general) noise."""
    spec = SolveSpec("crn_sigmagen_short", "em", "fixed", "float32", 6720, dt=0.1)
    for backend in ("diffrax", "torchsde"):
        res = _run(backend, spec.with_())
        assert np.isfinite(res.u_final).all(), backend


@pytest.mark.parametrize("backend", ["torchdiffeq", "torchode", "scipy", "jax-handwritten"])
def test_ode_only_backends_refuse_sde_problems(backend):
    reason = get_backend(backend).check(SolveSpec("linear_sde", "em", "fixed", "float32", 8))
    assert reason and ("does not solve sde" in reason or "No module" in reason or "not" in reason)


def test_torchsde_refuses_ode_problems_and_ode_methods_refuse_sde():
    assert "does not solve ode" in get_backend("torchsde").check(SolveSpec("lorenz", "tsit5", "fixed", "float32", 8))
    assert "no sde method" in get_backend("fused").check(SolveSpec("linear_sde", "tsit5", "fixed", "float32", 8))
    assert "no ode method" in get_backend("fused").check(SolveSpec("lorenz", "em", "fixed", "float32", 8))
