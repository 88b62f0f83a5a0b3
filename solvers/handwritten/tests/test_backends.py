"""Interface, dtype, status and settings behaviour of the hand-written backends."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.base import SolveSpec, Status, UnsupportedError
from solvers.handwritten.jax_backend import JaxHandwrittenBackend
from solvers.handwritten.pallas_backend import INTERPRET_NOTE, PallasBackend
from solvers.handwritten.torch_backend import TorchHandwrittenBackend
from solvers.handwritten.tests.helpers import CPU_BACKENDS, solve
from solvers.registry import get_backend

BACKEND_IDS = [f"{b}[{v or 'default'}]" for b, v in CPU_BACKENDS]


def test_registry_names_load_these_classes():
    assert isinstance(get_backend("jax-handwritten"), JaxHandwrittenBackend)
    assert isinstance(get_backend("torch-handwritten"), TorchHandwrittenBackend)
    assert isinstance(get_backend("pallas"), PallasBackend)
    for name in ("jax-handwritten", "torch-handwritten", "pallas"):
        ok, why = get_backend(name).available("cpu")
        assert ok, why


# (fixed float32 runs in test_agreement.test_against_scipy_reference, which checks its dtype)
@pytest.mark.parametrize("backend,variant", CPU_BACKENDS, ids=BACKEND_IDS)
def test_float32_in_float32_out(backend, variant):
    res = solve(backend, SolveSpec("lorenz", "tsit5", "adaptive", "float32", n=8, variant=variant,
                                   rtol=1e-6, atol=1e-6))
    assert res.u_final.dtype == np.float32
    assert np.all(np.isfinite(res.u_final))
    assert res.status.dtype == np.int32 and np.all(res.status == Status.SUCCESS)


@pytest.mark.parametrize("backend", ["jax-handwritten", "pallas"])
@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_jax_float32_program_has_no_float64(backend, mode):
    """The compiled float32 program computes in float32 only: no f64 anywhere in its HLO."""
    import jax

    spec = SolveSpec("lorenz", "tsit5", mode, "float32", n=8, dt=0.01, rtol=1e-6, atol=1e-6)
    prep = get_backend(backend).prepare(spec)
    hlo = prep.fn.lower(*prep.inputs).as_text()
    prep.close()
    assert "f32" in hlo and "f64" not in hlo
    assert not jax.config.jax_enable_x64


@pytest.mark.parametrize("backend", ["jax-handwritten", "pallas"])
def test_float64_does_not_leak_x64(backend):
    import jax
    import jax.numpy as jnp

    res = solve(backend, SolveSpec("sir", "tsit5", "adaptive", "float64", n=8))
    assert res.u_final.dtype == np.float64
    assert not jax.config.jax_enable_x64
    assert jnp.asarray(1.0).dtype == jnp.float32


# jax-handwritten "soa" runs the same attempt code as the vmap variant (test_agreement covers it).
@pytest.mark.parametrize("backend,variant", [("jax-handwritten", ""), ("torch-handwritten", ""), ("pallas", "")])
def test_statuses(backend, variant):
    # max_steps caps accepted + rejected attempts per trajectory.
    capped = solve(backend, SolveSpec("lorenz", "tsit5", "adaptive", "float64", n=8, variant=variant, max_steps=5))
    assert np.all(capped.status == Status.MAX_STEPS)
    assert np.all(capped.accepted + capped.rejected == 5)
    # A tolerance no step can meet: DiffEqGPU's "dt < dtmin" ends each trajectory.
    hopeless = solve(backend, SolveSpec("lorenz", "tsit5", "adaptive", "float64", n=8, variant=variant,
                                        rtol=1e-30, atol=1e-30))
    assert np.all(hopeless.status == Status.DT_UNDERFLOW)
    # An unstable fixed step overflows the fast trajectories (large rho), not the slow ones.
    unstable = solve(backend, SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8, variant=variant, dt=0.25))
    blown = ~np.all(np.isfinite(unstable.u_final), axis=1)
    assert blown.any() and not blown.all()
    np.testing.assert_array_equal(unstable.status, np.where(blown, Status.NONFINITE, Status.SUCCESS))


def test_nan_error_estimate_is_nonfinite_not_accepted():
    """DiffEqGPU would accept a NaN error estimate; rk.adaptive_attempt stops the lane instead."""
    import jax
    import jax.numpy as jnp

    from solvers.handwritten.ops import JaxOps
    from solvers.handwritten.rk import adaptive_attempt, initial_state, step_constants

    spec = SolveSpec("lorenz", "tsit5", "adaptive", "float32", n=4)
    K = step_constants(spec)
    ops = JaxOps()

    def rhs(u, p, t):   # finite at the start, NaN once the state has moved (lanes 2 and 3)
        return tuple(jnp.where(p[0] > 0.5, jnp.nan, 1.0) * x for x in u)

    u0 = tuple(jnp.ones(4, jnp.float32) for _ in range(3))
    p = (jnp.array([0.0, 0.0, 1.0, 1.0], jnp.float32),)

    @jax.jit
    def one_attempt(u0, p):
        s = initial_state(lambda u, p, t: tuple(jnp.ones_like(x) for x in u), u0, p, K, ops)
        return adaptive_attempt(rhs, p, s, K, ops)

    s = one_attempt(u0, p)
    np.testing.assert_array_equal(np.asarray(s.status),
                                  [Status.SUCCESS, Status.SUCCESS, Status.NONFINITE, Status.NONFINITE])
    np.testing.assert_array_equal(np.asarray(s.active), [True, True, False, False])
    np.testing.assert_array_equal(np.asarray(s.accepted), [1, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(s.rejected), [0, 0, 1, 1])


@pytest.mark.parametrize("backend", ["jax-handwritten", "torch-handwritten", "pallas"])
def test_check_refuses_what_is_not_built(backend):
    b = get_backend(backend)
    assert b.check(SolveSpec("lorenz", "tsit5", "adaptive", "float32", n=8)) is None
    assert "rk4" in b.check(SolveSpec("lorenz", "rk4", "adaptive", "float32", n=8))
    assert "stiff" in b.check(SolveSpec("robertson", "tsit5", "adaptive", "float64", n=8))
    assert "saveat" in b.check(SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8, saveat=(0.5, 1.0)))
    assert "variant" in b.check(SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8, variant="nope"))
    with pytest.raises(UnsupportedError, match="saveat"):
        b.prepare(SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8, saveat=(1.0,)))
    with pytest.raises(ValueError, match="invalid device"):
        b.available("tpu")


@pytest.mark.parametrize("backend", ["jax-handwritten", "torch-handwritten", "pallas"])
def test_settings_record_the_controller_and_step_control(backend):
    b = get_backend(backend)
    fixed = SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8)
    adaptive = SolveSpec("lorenz", "tsit5", "adaptive", "float32", n=8, rtol=1e-6, atol=1e-6)
    assert b.step_control(fixed) == "none" and b.step_control(adaptive) == "lockstep"
    s = b.settings(adaptive)
    assert s["step_control"] == "lockstep" and s["method"] == "tsit5" and s["dtype"] == "float32"
    assert s["rtol"] == s["atol"] == float(np.float32(1e-6))
    assert s["beta1"] == float(np.float32(7 / 50)) and s["beta2"] == float(np.float32(2 / 25))
    assert s["qmax"] == pytest.approx(10) and s["qmin"] == pytest.approx(0.2) and s["gamma"] == pytest.approx(0.9)
    assert s["qold_init"] == pytest.approx(1e-4) and s["dt0"] == pytest.approx(1e-3)
    f = b.settings(fixed)
    assert f["n_steps"] == 1000 and f["dt"] == pytest.approx(1e-3) and f["step_control"] == "none"


def test_pallas_settings_say_interpret_mode_on_cpu():
    s = get_backend("pallas").settings(SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8))
    assert s["interpret"] is True and s["note"] == INTERPRET_NOTE
    assert INTERPRET_NOTE in get_backend("pallas").available("cpu")[1]
