"""Lorenz-96 (problems/lorenz96.py): both forms of its right-hand side agree in every namespace,
the SymPy Jacobian matches finite differences, the registry makes any dimension by name."""
import math

import numpy as np
import pytest

from problems import derive
from problems.lorenz96 import component_source, lorenz96
from problems.registry import get_problem, is_problem_name, problem_names


@pytest.mark.parametrize("d", [4, 5, 8, 37])
def test_component_and_vectorised_forms_agree_numpy_and_math(d):
    prob = get_problem(f"lorenz96-{d}")
    rng = np.random.default_rng(d)
    u = rng.uniform(-5, 10, size=(6, d)).astype(np.float32)
    p = rng.uniform(4, 8, size=(6, 1)).astype(np.float32)
    comp = prob.rhs_numpy(u, p)                                         # tuples of (N,) rows
    vec = prob.rhs_array_for(np)(u.T, tuple(p.T), 0.0).T                # one (d, N) block
    assert comp.dtype == vec.dtype == np.float32
    assert np.array_equal(comp, vec)                                    # same operations, bitwise
    one = prob.rhs_for(math)(tuple(map(float, u[0].astype(np.float64))), (float(p[0, 0]),), 0.0)
    assert np.allclose(one, comp[0], rtol=1e-5, atol=1e-4)
    # the textbook formula, independently
    x = u.astype(np.float64)
    ref = (np.roll(x, -1, 1) - np.roll(x, 2, 1)) * np.roll(x, 1, 1) - x + p
    assert np.allclose(comp, ref, rtol=1e-5, atol=1e-4)


def test_vectorised_form_in_jax_and_torch_matches_numpy():
    jnp = pytest.importorskip("jax.numpy")
    torch = pytest.importorskip("torch")
    prob = get_problem("lorenz96-12")
    rng = np.random.default_rng(1)
    u = rng.uniform(-5, 10, size=(12, 5)).astype(np.float32)
    F = rng.uniform(4, 8, size=5).astype(np.float32)
    ref = prob.rhs_array_for(np)(u, (F,), 0.0)
    got_j = np.asarray(prob.rhs_array_for(jnp)(jnp.asarray(u), (jnp.asarray(F),), 0.0))
    got_t = prob.rhs_array_for(torch)(torch.from_numpy(u), (torch.from_numpy(F),), 0.0).numpy()
    assert np.array_equal(got_j, ref) and np.array_equal(got_t, ref)
    comp = prob.rhs_for(jnp)(tuple(jnp.asarray(u)), (jnp.asarray(F),), 0.0)
    assert np.array_equal(np.stack([np.asarray(c) for c in comp]), ref)


def test_derived_jacobian_matches_finite_differences():
    prob = get_problem("lorenz96-6")
    jac, tgrad = derive.derivatives(prob).functions(math, float)
    f = prob.rhs_for(math)
    rng = np.random.default_rng(2)
    u = rng.uniform(-3, 9, size=6)
    p = (6.5,)
    J = np.array(jac(tuple(u), p, 0.0))
    eps = 1e-6
    fd = np.empty((6, 6))
    for j in range(6):
        up, um = u.copy(), u.copy()
        up[j] += eps
        um[j] -= eps
        fd[:, j] = (np.array(f(tuple(up), p, 0.0)) - np.array(f(tuple(um), p, 0.0))) / (2 * eps)
    assert np.allclose(J, fd, rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(J, axis=1).max() == 4  # four neighbours per component
    assert all(v == 0 for v in tgrad(tuple(u), p, 0.0))


def test_registry_makes_any_dimension_by_name():
    prob = get_problem("lorenz96-64")
    assert prob is lorenz96(64) and prob.n_states == 64 and prob.name == "lorenz96-64"
    assert is_problem_name("lorenz96-1024") and not is_problem_name("lorenz96-3")
    assert "lorenz96-64" not in problem_names()  # the zoo's loops stay finite
    for bad in ("lorenz96-3", "lorenz96-x", "lorenz96-", "lorenz96-99999"):
        with pytest.raises(ValueError, match="unknown problem|invalid Lorenz-96 dimension"):
            get_problem(bad)
    u0, p = prob.ensemble(5)
    assert u0.dtype == np.float32 and np.allclose(p[:, 0], np.linspace(4, 8, 5))
    assert u0[0, 0] == np.float32(8.01) and np.all(u0[:, 1:] == 8.0)
    assert "x63" in component_source(64)


def test_reference_is_small_and_uses_the_vectorised_form(tmp_path):
    from problems.reference import reference, solve_one

    prob = get_problem("lorenz96-1024")
    ref = reference(prob, 64, cache_dir=tmp_path)
    assert len(ref.indices) == 2 and ref.u_final.shape == (2, 1024)  # reference_size at d = 1024
    small = get_problem("lorenz96-8")
    u0, p = small.ensemble(3, "float64")
    a, _ = solve_one(small, u0[1], p[1])
    assert np.all(np.isfinite(a)) and not np.allclose(a, u0[1])
