"""Every hand-written backend against the independent pure-Python stepper and the SciPy reference.

float64 makes the comparison exact enough to demand identical accepted/rejected step counts.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from problems.reference import max_relative_error, reference
from problems.registry import get_problem
from solvers.base import SolveSpec, Status
from solvers.handwritten.tests.helpers import CPU_BACKENDS, NONSTIFF, max_rel_diff, python_reference, solve

N = 8
BACKEND_IDS = [f"{b}[{v or 'default'}]" for b, v in CPU_BACKENDS]


@pytest.mark.parametrize("problem", NONSTIFF)
@pytest.mark.parametrize("backend,variant", CPU_BACKENDS, ids=BACKEND_IDS)
def test_fixed_float64_matches_python_stepper(backend, variant, problem):
    spec = SolveSpec(problem, "tsit5", "fixed", "float64", n=N, variant=variant)
    res = solve(backend, spec)
    ref, _, _ = python_reference(problem, "fixed", N)
    assert res.u_final.shape == (N, 3)
    assert max_rel_diff(res.u_final, ref) < 1e-12
    assert np.all(res.status == Status.SUCCESS)
    assert np.all(res.accepted == spec.n_steps) and np.all(res.rejected == 0)
    assert np.all(res.rhs_evals == 6 * spec.n_steps)   # Tsit5 fixed: the FSAL stage is skipped


@pytest.mark.parametrize("problem,dt0,tol", [("lorenz", None, None), ("sir", None, None),
                                              # a large first step: rejections at the start
                                              ("lorenz", 0.5, 1e-6)])
@pytest.mark.parametrize("backend,variant", CPU_BACKENDS, ids=BACKEND_IDS)
def test_adaptive_float64_same_steps_as_python_stepper(backend, variant, problem, dt0, tol):
    spec = SolveSpec(problem, "tsit5", "adaptive", "float64", n=N, variant=variant, dt=dt0,
                     rtol=tol, atol=tol)
    res = solve(backend, spec)
    ref, accepted, rejected = python_reference(problem, "adaptive", N, dt=dt0, rtol=tol, atol=tol)
    np.testing.assert_array_equal(res.accepted, accepted)
    np.testing.assert_array_equal(res.rejected, rejected)
    if dt0 is not None:
        assert rejected.min() > 0      # the case does exercise the reject branch
    assert max_rel_diff(res.u_final, ref) < 1e-10
    assert np.all(res.status == Status.SUCCESS)
    np.testing.assert_array_equal(res.rhs_evals, 1 + 6 * (accepted + rejected))
    assert res.notes["lockstep_attempts"] == int((accepted + rejected).max())


@pytest.mark.parametrize("backend,variant", CPU_BACKENDS, ids=BACKEND_IDS)
def test_against_scipy_reference(backend, variant):
    """Accuracy against SciPy (the python-stepper tests above cover SIR exactly): float32 fixed
    at the protocol's dt, float64 adaptive at rtol = atol = 1e-10."""
    problem = "lorenz"
    prob = get_problem(problem)
    fixed = solve(backend, SolveSpec(problem, "tsit5", "fixed", "float32", n=N, variant=variant))
    assert fixed.u_final.dtype == np.float32
    assert max_relative_error(fixed.u_final, reference(prob, N, "float32")) < 1e-5
    tight = SolveSpec(problem, "tsit5", "adaptive", "float64", n=N, variant=variant, rtol=1e-10, atol=1e-10)
    adaptive = solve(backend, tight)
    assert max_relative_error(adaptive.u_final, reference(prob, N, "float64")) < 1e-6


@pytest.mark.parametrize("method,expected", [("tsit5", 5), ("dopri5", 5), ("rk4", 4), ("rk4_38", 4)])
def test_convergence_order(method, expected):
    """Halving dt divides the fixed-step error by 2^order (a wrong tableau entry breaks this)."""
    truth = solve("jax-handwritten", SolveSpec("lorenz", "tsit5", "fixed", "float64", n=N, dt=1 / 20000)).u_final
    errors = [max_rel_diff(solve("jax-handwritten",
                                 SolveSpec("lorenz", method, "fixed", "float64", n=N, dt=dt)).u_final, truth)
              for dt in (1 / 200, 1 / 400)]
    order = math.log2(errors[0] / errors[1])
    assert abs(order - expected) < 0.3, (method, errors, order)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_soa_unroll8_is_soa_bitwise_and_matches_python_stepper(dtype):
    spec = SolveSpec("lorenz", "tsit5", "fixed", dtype, n=N, variant="soa-unroll8")
    res = solve("jax-handwritten", spec)
    plain = solve("jax-handwritten", spec.with_(variant="soa"))
    np.testing.assert_array_equal(res.u_final, plain.u_final)   # unrolling reorders nothing
    assert np.all(res.accepted == 1000)
    ref, _, _ = python_reference("lorenz", "fixed", N)
    assert max_rel_diff(res.u_final, ref) < (1e-12 if dtype == "float64" else 1e-4)


def test_soa_unroll8_refuses_adaptive_mode_with_a_reason():
    from solvers.registry import get_backend

    reason = get_backend("jax-handwritten").check(
        SolveSpec("lorenz", "tsit5", "adaptive", "float32", n=N, variant="soa-unroll8"))
    assert reason and "fixed mode only" in reason
