"""The nonlinear peers: optimistix (jit(vmap(Newton))), torch-newton (batched), scipy-root (serial)
converge to the known root from random starts and report non-convergence per system."""
import numpy as np
import pytest

from solvers.base import SolveSpec, Status
from solvers.registry import get_backend

PROBLEM = "generalized_rosenbrock"
CASES = [("optimistix", "newton", "", "float32"), ("optimistix", "newton", "", "float64"),
         ("torch-newton", "newton", "", "float32"), ("torch-newton", "newton", "", "float64"),
         ("scipy-root", "hybr", "", "float64")]


def _solve(backend, method, variant, dtype, n=16, max_steps=None):
    tol = 1e-5 if dtype == "float32" else 1e-10
    spec = SolveSpec(problem=PROBLEM, method=method, mode="adaptive", dtype=dtype, n=n, rtol=tol, atol=tol,
                     max_steps=max_steps or (1000 if backend == "scipy-root" else 50), variant=variant)
    b = get_backend(backend)
    ok, why = b.available("cpu")
    if not ok:
        pytest.skip(f"{backend} unavailable here: {why}")
    assert b.check(spec) is None
    prep = b.prepare(spec)
    out = prep.run()
    prep.sync(out)
    return spec, tol, prep.fetch(out)


@pytest.mark.parametrize("backend, method, variant, dtype", CASES)
def test_converges_to_the_root(backend, method, variant, dtype):
    spec, tol, res = _solve(backend, method, variant, dtype)
    assert (res.status == int(Status.SUCCESS)).all(), res.status
    assert np.abs(res.u_final - 1.0).max() <= 10 * tol
    assert (res.accepted >= 1).all()
    err, _ = spec.prob.reference_for(spec).accuracy(res)
    assert err <= 10 * tol


@pytest.mark.parametrize("backend, method", [("optimistix", "newton"), ("torch-newton", "newton"),
                                             ("scipy-root", "hybr")])
def test_iteration_cap_is_a_status(backend, method):
    _, _, res = _solve(backend, method, "", "float64", n=8, max_steps=2)
    assert (res.status == int(Status.NOT_CONVERGED)).all(), res.status


def test_peers_serve_only_the_nonlinear_kind():
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8)
    for name in ("optimistix", "torch-newton", "scipy-root"):
        assert "does not solve ode problems" in get_backend(name).check(spec)
    assert "float64" in get_backend("scipy-root").check(
        SolveSpec(problem=PROBLEM, method="hybr", mode="adaptive", dtype="float32", n=8))
