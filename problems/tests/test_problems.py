"""The zoo: every translation of a right-hand side agrees, derived Jacobians are right,
references are accurate and conserve what they should, bad input is refused clearly."""
import math

import numpy as np
import pytest

from problems import derive
from problems import PROBLEMS, get_problem, problem_names, reference, subsample_indices
from problems.base import check_n
from problems.reference import max_relative_error, solve_one

#: The ODE problems (the SDE kind has its own tests: test_sde_problems.py).
NAMES = [n for n in problem_names() if get_problem(n).kind == "ode"]


def random_inputs(problem, k=16, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.1, 2.0, size=(k, problem.n_states))
    p = np.asarray(problem.params) * rng.uniform(0.5, 1.5, size=(k, problem.n_params))
    return u, p


def test_registry_lists_the_zoo():
    assert set(NAMES) == {"lorenz", "robertson", "sir", "prothero_robinson", "fitzhugh_nagumo", "lorenz_mpi"}
    assert {n for n in problem_names() if get_problem(n).kind == "pso"} == {"pso_rosenbrock", "pso_fitzhugh_nagumo"}
    assert {n for n in problem_names() if get_problem(n).kind == "sde"} == {
        "linear_sde", "crn_sigmagen", "crn_sigmagen_short"}
    for name in problem_names():
        assert get_problem(name).name == name


def test_unknown_problem_names_the_choices():
    with pytest.raises(ValueError, match="unknown problem 'vanderpol'.*lorenz.*robertson.*sir"):
        get_problem("vanderpol")


@pytest.mark.parametrize("bad", [0, -3, 2.0, "8", True, None])
def test_invalid_sweep_sizes(bad):
    with pytest.raises(ValueError, match="N must be a positive integer"):
        get_problem("lorenz").ensemble(bad)
    with pytest.raises(ValueError):
        check_n(bad)


def test_protocol_values():
    lor, rob, sir = (get_problem(n) for n in ("lorenz", "robertson", "sir"))
    u0, p = lor.ensemble(8, "float64")
    assert np.all(u0 == [1.0, 0.0, 0.0])
    assert np.allclose(p[:, 1], np.linspace(0, 21, 8)) and np.all(p[:, 0] == 10.0)
    assert np.allclose(p[:, 2], 8 / 3)
    assert lor.tspan == (0.0, 1.0) and lor.dt == 1e-3 and lor.default_dtype == "float32"
    _, p = rob.ensemble(5)
    assert np.allclose(p[:, 2], np.linspace(10, 1e4, 5)) and rob.stiff and rob.default_dtype == "float64"
    assert rob.tspan == (0.0, 1e5)
    u0, p = sir.ensemble(4)
    assert np.allclose(u0[0], [0.99, 0.01, 0.0]) and np.allclose(p[:, 0], np.linspace(0.1, 1.0, 4))
    for prob in PROBLEMS.values():
        assert prob.citation and prob.description


def test_ensemble_rounds_to_dtype():
    u0, p = get_problem("lorenz").ensemble(7, "float32")
    assert u0.dtype == np.float32 and p.dtype == np.float32
    with pytest.raises(ValueError, match="invalid dtype"):
        get_problem("lorenz").ensemble(7, "float16")


@pytest.mark.parametrize("name", NAMES)
def test_translations_agree(name):
    """NumPy (batched), math (scalar), JAX (vmapped), torch (batched) and Numba give one answer."""
    import jax
    import jax.numpy as jnp
    import numba
    import torch

    prob = get_problem(name)
    u, p = random_inputs(prob)
    want = prob.rhs_numpy(u, p, 0.5)
    scalar = prob.rhs_for(math)
    got_math = np.array([scalar(tuple(ui), tuple(pi), 0.5) for ui, pi in zip(u, p)])
    np.testing.assert_allclose(got_math, want, rtol=1e-14)

    with jax.enable_x64(True):
        fj = prob.rhs_for(jnp)
        one = lambda ui, pi: jnp.stack(fj(tuple(ui), tuple(pi), 0.5))
        got_jax = np.asarray(jax.vmap(one)(jnp.asarray(u), jnp.asarray(p)))
    np.testing.assert_allclose(got_jax, want, rtol=1e-14)

    ft = prob.rhs_for(torch)
    tu, tp = torch.as_tensor(u), torch.as_tensor(p)
    got_torch = torch.stack(ft(tuple(tu.unbind(-1)), tuple(tp.unbind(-1)), 0.5), dim=-1).numpy()
    np.testing.assert_allclose(got_torch, want, rtol=1e-14)

    fn = numba.njit(prob.rhs_for(math))
    got_numba = np.array([fn(tuple(ui), tuple(pi), 0.5) for ui, pi in zip(u, p)])
    np.testing.assert_allclose(got_numba, want, rtol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_derived_jacobian_matches_finite_differences(name):
    prob = get_problem(name)
    jac, tgrad = derive.derivatives(prob).functions(math, float)
    f = prob.rhs_for(math)
    u, p = random_inputs(prob, k=5, seed=1)
    for ui, pi in zip(u, p):
        J = np.array(jac(tuple(ui), tuple(pi), 0.3))
        fd = np.empty_like(J)
        for j in range(prob.n_states):
            h = 1e-6 * max(1.0, abs(ui[j]))
            up, um = ui.copy(), ui.copy()
            up[j] += h
            um[j] -= h
            fd[:, j] = (np.array(f(tuple(up), tuple(pi), 0.3)) - np.array(f(tuple(um), tuple(pi), 0.3))) / (2 * h)
        np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-6 * np.abs(J).max())
        t, h = 0.3, 1e-6
        T = np.array(tgrad(tuple(ui), tuple(pi), t), dtype=float)
        fd_t = (np.array(f(tuple(ui), tuple(pi), t + h)) - np.array(f(tuple(ui), tuple(pi), t - h))) / (2 * h)
        np.testing.assert_allclose(T, fd_t, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(T).max()))
        if name != "prothero_robinson":  # the one non-autonomous problem of the zoo
            assert np.all(T == 0.0)


def test_prothero_robinson_reference_is_the_closed_form(tmp_path):
    from problems.prothero_robinson import exact_solution

    prob = get_problem("prothero_robinson")
    ref = reference(prob, 8, cache_dir=tmp_path)
    u0, p = prob.ensemble(8)
    exact = np.array([exact_solution(u0[i], p[i], prob.tspan[1]) for i in ref.indices])
    np.testing.assert_allclose(ref.u_final, exact, rtol=0, atol=1e-12)
    assert any(e != 0 for e in derive.derivatives(prob).tgrad_exprs)


def test_derived_code_keeps_float32_in_numba():
    """Constants in the generated Jacobian are typed: a float32 call returns float32."""
    import numba

    prob = get_problem("robertson")  # its Jacobian has the integer constant 2
    jac, _ = derive.derivatives(prob).functions(math, numba.float32)
    fn = numba.njit(jac)
    f32 = np.float32
    out = fn((f32(1), f32(2), f32(3)), (f32(0.04), f32(3e7), f32(1e4)), f32(0))
    ret = fn.nopython_signatures[0].return_type
    assert str(ret) == "UniTuple(UniTuple(float32 x 3) x 3)", ret
    assert out[1][1] == pytest.approx(-2 * 3e7 * 2 - 1e4 * 3, rel=1e-6)


def test_subsample_always_has_both_ends():
    idx = subsample_indices(10_000, 512)
    assert idx[0] == 0 and idx[-1] == 9_999 and len(idx) == 512 and np.all(np.diff(idx) > 0)
    assert np.array_equal(subsample_indices(5), np.arange(5))


@pytest.mark.parametrize("name", NAMES)
def test_reference_invariants_and_independent_method(name, tmp_path):
    prob = get_problem(name)
    n = 6
    saveat = tuple(np.linspace(*prob.tspan, 5))
    ref = reference(prob, n, saveat=saveat, cache_dir=tmp_path)
    k = prob.n_states
    assert ref.u_final.shape == (n, k) and ref.saved.shape == (n, 5, k)
    np.testing.assert_allclose(ref.saved[:, -1], ref.u_final, rtol=1e-12)
    u0_run, _ = prob.ensemble(n, prob.default_dtype)  # the inputs, rounded as the solver sees them
    for inv in prob.invariants:
        np.testing.assert_allclose(inv(ref.saved), np.broadcast_to(inv(u0_run)[:, None], (n, 5)), rtol=1e-9)
    # a second, independent SciPy method agrees (subset: Radau on Robertson is slow)
    other = {"method": "Radau", "rtol": 1e-10, "atol": 1e-14} if prob.stiff else {"method": "LSODA", "rtol": 1e-12, "atol": 1e-14}
    u0, p = prob.ensemble(n, prob.default_dtype)
    for i in (0, n - 1):
        uf, _ = solve_one(prob, u0[i].astype(float), p[i].astype(float), settings=other)
        # floored at atol: a state that decays to ~1e-16 (lorenz_mpi, rho = 0, at t = 10) has no
        # relative accuracy to compare
        scale = max(np.abs(ref.u_final[i]).max(), prob.atol)
        assert np.abs(uf - ref.u_final[i]).max() / scale < 1e-8


def test_reference_is_cached_and_keyed_by_content(tmp_path):
    prob = get_problem("lorenz")
    a = reference(prob, 4, cache_dir=tmp_path)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    b = reference(prob, 4, cache_dir=tmp_path)
    np.testing.assert_array_equal(a.u_final, b.u_final)
    reference(prob, 4, dtype="float64", cache_dir=tmp_path)  # other inputs -> other entry
    assert len(list(tmp_path.iterdir())) == 2


def test_max_relative_error_sees_errors_and_nonfinite(tmp_path):
    prob = get_problem("sir")
    ref = reference(prob, 4, cache_dir=tmp_path)
    u = ref.u_final.copy()
    assert max_relative_error(u, ref) == 0.0
    u[2, 1] += 1e-3
    assert max_relative_error(u, ref) == pytest.approx(1e-3 / np.abs(ref.u_final[2]).max())
    u[0, 0] = np.nan
    assert max_relative_error(u, ref) == math.inf


def test_max_scaled_error_sees_a_wrong_small_component(tmp_path):
    """Robertson's y2 (~1e-10..1e-7) doubled is invisible to the relative measure (scaled by
    y3 ~ 1) and many tolerance units off in the scaled one."""
    from problems.reference import max_scaled_error

    ref = reference(get_problem("robertson"), 8, cache_dir=tmp_path)
    u = ref.u_final.copy()
    assert max_scaled_error(u, ref, 1e-8, 1e-8) == 0.0
    u[:, 1] *= 2.0
    assert max_relative_error(u, ref) < 1e-7
    assert max_scaled_error(u, ref, 1e-8, 1e-8) > 5.0
    expected = np.max(np.abs(ref.u_final[:, 1]) / (1e-8 + 1e-8 * np.abs(ref.u_final[:, 1])))
    assert max_scaled_error(u, ref, 1e-8, 1e-8) == pytest.approx(expected)
    u[3, 0] = np.inf
    assert max_scaled_error(u, ref, 1e-8, 1e-8) == math.inf
    with pytest.raises(ValueError, match="tolerances"):
        max_scaled_error(u, ref, 0.0, 0.0)


def test_fingerprint_changes_with_definition():
    import dataclasses

    prob = get_problem("lorenz")
    other = dataclasses.replace(prob, u0=(2.0, 0.0, 0.0), _cache={})
    assert prob.fingerprint() != other.fingerprint()


def test_reference_final_state_is_at_t1_even_when_saveat_ends_early(tmp_path):
    prob = get_problem("sir")
    full = reference(prob, 3, cache_dir=tmp_path)
    early = reference(prob, 3, saveat=(10.0, 50.0), cache_dir=tmp_path)
    np.testing.assert_allclose(early.u_final, full.u_final, rtol=1e-9)
    assert early.saved.shape == (3, 2, 3)
    assert not np.allclose(early.saved[:, -1], early.u_final)
