"""The array-style replica of the nonlinear solvers (NumPy): convergence and per-system statuses."""
import numpy as np
import pytest

from solvers.base import SolveSpec, Status
from solvers.registry import get_backend

PROBLEM = "generalized_rosenbrock"


def _solve(**kw):
    spec = SolveSpec(problem=PROBLEM, mode="adaptive", **{"n": 32, "dtype": "float64", "rtol": 1e-10,
                                                           "atol": 1e-10, "max_steps": 50, **kw})
    backend = get_backend("array")
    assert backend.check(spec) is None
    prep = backend.prepare(spec)
    res = prep.fetch(prep.run())
    return spec, res


@pytest.mark.parametrize("method, dtype, max_steps", [("newton", "float64", 50), ("newton", "float32", 50),
                                                      ("trust-region", "float64", 1000)])
def test_converges_to_the_root(method, dtype, max_steps):
    tol = 1e-5 if dtype == "float32" else 1e-10
    spec, res = _solve(method=method, dtype=dtype, rtol=tol, atol=tol, max_steps=max_steps)
    assert (res.status == int(Status.SUCCESS)).all()
    assert np.abs(res.u_final - 1.0).max() <= 10 * tol
    err, note = spec.prob.reference_for(spec).accuracy(res)
    assert err <= 10 * tol and note == ""
    assert (res.accepted >= 1).all() and res.accepted.max() <= max_steps


def test_iteration_cap_is_a_status_not_an_exception():
    spec, res = _solve(method="newton", max_steps=2)
    assert (res.status == int(Status.NOT_CONVERGED)).all() and (res.accepted == 2).all()


def test_agrees_with_the_fused_kernel():
    from solvers.fused.nonlinear import run_cpu

    spec, res = _solve(method="newton", n=16)
    x0, p = spec.prob.ensemble(16, "float64")
    x, stats, status = run_cpu(PROBLEM, "newton", x0, p, rtol=1e-10, atol=1e-10, max_iter=50)
    np.testing.assert_array_equal(status, res.status)
    np.testing.assert_array_equal(stats[0], res.accepted)  # the same iterations per system
    np.testing.assert_allclose(x, res.u_final, atol=1e-12)
