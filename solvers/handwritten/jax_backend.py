"""``jax-handwritten``: Tsit5 (and friends) written directly in JAX, the whole solve in one jit.

This is the strongest JAX peer we know how to write for an ensemble of small ODEs: no solver
library, no PyTree bookkeeping, one ``jax.jit`` around the whole time loop.

* mode "fixed": ``lax.fori_loop`` over exactly ``spec.n_steps`` steps, ``t = t0 + i*dt``.
* mode "adaptive": ``lax.while_loop`` of DiffEqGPU's PI-controlled attempts with a per-trajectory
  step size (see ``solvers.handwritten.rk``). Across the ensemble the loop runs until the last
  trajectory is done ("lockstep"): finished lanes keep computing, their results masked away.
* variant "" (default): a per-trajectory solve on tuples of scalars, batched by ``jax.vmap``.
* variant "soa": written as structure-of-arrays by hand: the state is a tuple of (N,) arrays
  (inputs laid out (n_states, N)), the while loop's condition is "any lane unfinished" and every
  update is masked: what vmap generates, spelled out.
* variant "soa-unroll8" (fixed mode only): "soa" with ``lax.fori_loop(..., unroll=8)``, eight
  steps per loop iteration (``lax.while_loop`` has no unroll, so adaptive mode is refused).
* threads: on the CPU with ``spec.threads`` > 1 the ensemble is split over that many host
  devices with ``jax.shard_map`` (``solvers.jax_sharding``); every trajectory is independent
  (the adaptive loop runs until the slowest lane of each device's slice is done).

float64 solves run inside a scoped ``jax.enable_x64`` (tracing and every call), so nothing leaks
into the process; float32 solves run with x64 off and compute in float32 only (the constants
are Python floats rounded to float32, which JAX treats as weakly typed).
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from solvers import jax_sharding
from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec
from solvers.handwritten.common import METHODS, adaptive_result, check_common, common_settings, fixed_result
from solvers.handwritten.ops import JaxOps
from solvers.handwritten.rk import (StepConstants, adaptive_attempt, fixed_step, initial_state, state_rhs,
                                   step_constants)

VARIANTS = ("", "soa", "soa-unroll8")
#: variant -> ``lax.fori_loop`` unroll factor of the fixed-step loop (measured: 8 steps per loop
#: iteration helps at small N, where the loop's per-iteration overhead dominates, and hurts at
#: large N; the bitwise-identical result is tested).
UNROLL = {"": 1, "soa": 1, "soa-unroll8": 8}


def x64_scope(dtype: str) -> contextlib.AbstractContextManager:
    """A context in which JAX's 64-bit mode is on exactly when ``dtype`` is float64.

    Scoped (thread-local config state), so the process-wide default is never changed.
    """
    import jax  # jax is optional: the module imports without it

    want = dtype == "float64"
    if hasattr(jax, "enable_x64"):            # jax >= 0.7: config state usable as a context
        return jax.enable_x64(want)
    from jax.experimental import disable_x64, enable_x64  # older jax

    return enable_x64() if want else disable_x64()


def jax_device(device: str) -> Any:
    """The JAX device for ``device`` ("cpu" or "gpu"); ValueError for anything else."""
    import jax  # jax is optional: imported when a solve is placed

    if device == "cpu":
        return jax.devices("cpu")[0]
    if device == "gpu":
        return jax.devices("gpu")[0]
    raise ValueError(f"invalid device {device!r}: choose one of cpu, gpu")


def jax_available(device: str) -> tuple[bool, str]:
    """(ok, version or reason) for running JAX computations on ``device``."""
    return framework_available("jax", device)


def build_solve(spec: SolveSpec, K: StepConstants, variant: str, unroll: int = 1):
    """The (unjitted) ensemble solve for ``spec``: ``solve(u0, p) -> outputs``.

    ``u0``, ``p``: (N, n_states), (N, n_params) for the vmap variant; (n_states, N),
    (n_params, N) for "soa". Outputs: a tuple of the n_states final components (each (N,)) in
    fixed mode; ``(components, accepted, rejected, status)`` in adaptive mode.
    """
    # jax is optional: this backend reports itself unavailable without it
    import jax
    import jax.numpy as jnp
    from jax import lax

    f = state_rhs(spec, jnp)  # tuples of components, or one block with the states on axis 0
    ops = JaxOps()
    n_states, n_params = spec.prob.n_states, spec.prob.n_params
    dtype = jnp.dtype(spec.dtype)

    def integrate(u: tuple, p: tuple, lanes_unfinished):
        if spec.mode == "fixed":
            h = jnp.asarray(K.dt, dtype=dtype)

            def body(i, u):
                return fixed_step(f, u, p, K.t0 + i.astype(dtype) * h, h, K)

            return lax.fori_loop(0, K.n_steps, body, u, unroll=unroll)
        state = lax.while_loop(lanes_unfinished, lambda s: adaptive_attempt(f, p, s, K, ops),
                               initial_state(f, u, p, K, ops))
        return state.u, state.accepted, state.rejected, state.status

    if variant == "":
        def one_trajectory(u0, p):
            return integrate((u0,) if K.blocked else tuple(u0[i] for i in range(n_states)),
                             tuple(p[j] for j in range(n_params)), lambda s: s.active)

        return jax.vmap(one_trajectory)

    if variant in ("soa", "soa-unroll8"):
        def all_trajectories(u0, p):
            out = integrate((u0,) if K.blocked else tuple(u0[i] for i in range(n_states)),
                            tuple(p[j] for j in range(n_params)), lambda s: jnp.any(s.active))
            if K.blocked:  # the (n_states, N) block goes out trajectory-first, as sharding needs
                if spec.mode == "fixed":
                    return (out[0].T,)
                return ((out[0][0].T,), *out[1:])
            return out

        return all_trajectories
    raise ValueError(f"invalid variant {variant!r}: choose one of {', '.join(map(repr, VARIANTS))}")


class JaxHandwrittenPrepared(Prepared):
    """A jitted whole-ensemble solve with its inputs already on the device.

    Attributes:
        fn: the ``jax.jit``-compiled solve; ``fn(*inputs)`` is the timed call.
        inputs: (u0, p) on the device, laid out for the variant.
        constants: the :class:`StepConstants` of the solve.
    """

    dispatch = "jax"

    def __init__(self, spec: SolveSpec) -> None:
        import jax  # jax is optional: imported only when this backend prepares a solve

        self.spec = spec
        self.constants = step_constants(spec)
        u0, p = spec.ensemble()
        in_axes = (0, 0)
        if spec.variant != "":
            u0, p = np.ascontiguousarray(u0.T), np.ascontiguousarray(p.T)
            in_axes = (1, 1)
        self.plan = jax_sharding.plan(spec.device, spec.threads, spec.n)
        with x64_scope(spec.dtype):
            self.inputs = jax_sharding.place((u0, p), self.plan, in_axes)
            solve = build_solve(spec, self.constants, spec.variant, UNROLL[spec.variant])
            self.fn = jax.jit(jax_sharding.shard(solve, self.plan, in_axes))

    def run(self) -> Any:
        with x64_scope(self.spec.dtype):
            return self.fn(*self.inputs)

    def sync(self, out: Any) -> None:
        import jax  # jax is optional: imported only when this backend runs

        jax.block_until_ready(out)

    def fetch(self, out: Any) -> SolveResult:
        notes = {"variant": self.spec.variant or "vmap", "jax_devices": self.plan.count}

        def cols(u):  # (N, n_states)
            if not self.constants.blocked:
                return np.stack([np.asarray(x) for x in u], axis=1)
            return np.asarray(u[0])  # (N, n_states) in both layouts (see build_solve)

        if self.spec.mode == "fixed":
            return fixed_result(cols(out), self.constants, notes)
        comps, accepted, rejected, status = out
        return adaptive_result(cols(comps), np.asarray(accepted),
                               np.asarray(rejected), np.asarray(status), self.constants, notes)

    def close(self) -> None:
        self.inputs = None
        self.fn = None


class JaxHandwrittenBackend(Backend):
    """Hand-written explicit Runge-Kutta in JAX (see the module docstring)."""

    compilers = {"cpu": "xla"}
    name = "jax-handwritten"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport(METHODS)}
    variants = VARIANTS

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return jax_available(device)

    def check_own(self, spec: SolveSpec) -> str | None:
        reason = check_common(spec)
        if reason is None and UNROLL.get(spec.variant, 1) > 1 and spec.mode != "fixed":
            reason = (f"variant {spec.variant!r} unrolls the fixed-step fori_loop: fixed mode only "
                      f"(lax.while_loop has no unroll)")
        return reason

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "lockstep"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        import jax  # jax is optional: imported only for this backend's settings

        s = common_settings(spec, step_constants(spec))
        s.update(
            step_control=self.step_control(spec),
            library=f"jax {jax.__version__}",
            variant=spec.variant,
            ensemble=("jax.vmap of a per-trajectory solve on tuples of scalars" if spec.variant == ""
                      else "structure-of-arrays: tuples of (N,) arrays, masked updates"),
            jit="the whole solve under one jax.jit",
            loop=f"lax.fori_loop(unroll={UNROLL[spec.variant]})" if spec.mode == "fixed" else
                 "lax.while_loop until every lane is done (lockstep)",
            x64="scoped jax.enable_x64(True)" if spec.dtype == "float64" else "off (scoped)",
            device=spec.device,
            threads=spec.threads,
            **jax_sharding.plan(spec.device, spec.threads, spec.n).settings(),
        )
        return s

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return JaxHandwrittenPrepared(spec)
