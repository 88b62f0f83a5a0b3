"""The JAX swarms (hand-vectorised and evosax) run under jit, report iterations and results in
SolveResult form, and refuse what they do not have."""
import numpy as np
import pytest

from solvers.base import SolveSpec
from solvers.registry import get_backend

pytest.importorskip("jax")
pytest.importorskip("evosax")


@pytest.mark.parametrize("method, variant", [
    ("pso", ""),
    # each compiles its own swarm loop (6-10 s): `make test-all`
    pytest.param("pso-async", "", marks=pytest.mark.slow), pytest.param("pso", "evosax", marks=pytest.mark.slow)])
def test_rosenbrock_runs_and_improves(method, variant):
    b = get_backend("jax-pso")
    results = []
    for iters in (1, 30):
        spec = SolveSpec("pso_rosenbrock", method, "fixed", "float32", 64, max_steps=iters, variant=variant)
        assert b.check(spec) is None
        prep = b.prepare(spec)
        out = prep.run()
        prep.sync(out)
        r = prep.fetch(out)
        assert r.u_final.shape == (1, 10) and r.accepted[0] == iters and r.status[0] == 0
        assert np.all((r.u_final >= -1) & (r.u_final <= 10))
        results.append(r.notes["best_cost"])
    assert results[1] <= results[0]


def test_fhn_loss_through_diffrax_batched():
    b = get_backend("jax-pso")
    spec = SolveSpec("pso_fitzhugh_nagumo", "pso", "fixed", "float64", 16, max_steps=2)
    prep = b.prepare(spec)
    r = prep.fetch(prep.run())
    # the reported best cost is the loss of the reported position (SciPy, float64)
    want = spec.prob.fit.loss(r.u_final)[0]
    assert abs(r.notes["best_cost"] - want) <= 1e-6 * want
    assert "diffrax batched" in b.settings(spec)["objective"]


def test_refusals():
    b = get_backend("jax-pso")
    assert "synchronised form only" in b.check(SolveSpec("pso_rosenbrock", "pso-async", "fixed", "float32", 8,
                                                         variant="evosax"))
    assert "does not solve ode" in b.check(SolveSpec("lorenz", "pso", "fixed", "float32", 8))
