"""The nonlinear problem kind: residual written once, SymPy Jacobian, starts, accuracy."""
import math

import numpy as np
import pytest

from problems import derive
from problems.registry import get_problem
from solvers.base import SolveResult, SolveSpec, Status

PROB = get_problem("generalized_rosenbrock")


def test_residual_is_the_published_system_and_vanishes_at_the_root():
    x = np.random.default_rng(1).uniform(-1, 1, size=(5, 10))
    p = np.tile([1.0, 10.0], (5, 1))
    F = PROB.residual_numpy(x, p)
    np.testing.assert_allclose(F[:, 0], 1.0 - x[:, 0])
    np.testing.assert_allclose(F[:, 1:], 10.0 * (x[:, 1:] - x[:, :-1] ** 2))
    assert np.all(PROB.residual_numpy(np.ones((1, 10)), p[:1]) == 0.0)


def test_sympy_jacobian_matches_finite_differences():
    res, jac = derive.derivatives(PROB).functions(np, float)
    x = np.random.default_rng(2).uniform(0, 1, size=10)
    p = (1.0, 10.0)
    J = np.array(jac(tuple(x), p), dtype=float)
    h = 1e-7
    fd = np.stack([(np.array(res(tuple(x + h * e), p)) - np.array(res(tuple(x - h * e), p))) / (2 * h)
                   for e in np.eye(10)], axis=1)
    np.testing.assert_allclose(J, fd, atol=1e-6)
    pattern = derive.derivatives(PROB).nonzero_pattern()
    assert pattern[0][0] and pattern[3][2] and not pattern[2][5]  # lower bidiagonal (never exploited)


def test_starts_are_seeded_prefix_stable_and_in_the_box():
    a, b = PROB.starts(8, "float64"), PROB.starts(1024, "float64")
    np.testing.assert_array_equal(a, b[:8])
    assert not np.array_equal(PROB.starts(8, "float64", seed=1), a)
    assert b.min() >= 0.0 and b.max() < 1.0 and PROB.starts(4, "float32").dtype == np.float32
    with pytest.raises(ValueError):
        PROB.starts(0)


def test_accuracy_uses_converged_systems_and_the_solve_tolerances():
    spec = SolveSpec(problem=PROB.name, method="newton", mode="adaptive", dtype="float64", n=3, rtol=1e-6, atol=1e-6)
    u = np.ones((3, 10))
    u[0, 2] += 1e-7
    u[2] = 5.0  # not converged: excluded from the error, counted by status
    res = SolveResult(u_final=u, status=np.array([0, 0, int(Status.NOT_CONVERGED)]))
    acc = PROB.reference_for(spec)
    err, note = acc.accuracy(res)
    assert err == pytest.approx(1e-7, rel=1e-6) and note == ""
    assert acc.scaled_accuracy(res) == pytest.approx(1e-7 / 2e-6, rel=1e-6)
    none = SolveResult(u_final=u, status=np.full(3, int(Status.NOT_CONVERGED)))
    assert math.isnan(acc.accuracy(none)[0]) and math.isnan(acc.scaled_accuracy(none))


def test_spec_resolves_settings_for_the_kind():
    spec = SolveSpec(problem=PROB.name, method="newton", mode="adaptive", dtype="float32", n=4)
    d = spec.as_dict()
    assert d["rtol"] == PROB.rtol and d["dt"] == 1.0  # dt: the trust region's initial radius
