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

float64 solves run inside a scoped ``jax.enable_x64`` (tracing and every call), so nothing leaks
into the process; float32 solves run with x64 off and compute in float32 only (the constants
are Python floats rounded to float32, which JAX treats as weakly typed).
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, Prepared, SolveResult, SolveSpec, UnsupportedError
from solvers.handwritten.common import METHODS, adaptive_result, check_common, common_settings, fixed_result
from solvers.handwritten.rk import StepConstants, adaptive_attempt, fixed_step, initial_state, step_constants

VARIANTS = ("", "soa")


def x64_scope(dtype: str) -> contextlib.AbstractContextManager:
    """A context in which JAX's 64-bit mode is on exactly when ``dtype`` is float64.

    Scoped (thread-local config state), so the process-wide default is never changed.
    """
    import jax

    want = dtype == "float64"
    if hasattr(jax, "enable_x64"):            # jax >= 0.7: config state usable as a context
        return jax.enable_x64(want)
    from jax.experimental import disable_x64, enable_x64  # older jax

    return enable_x64() if want else disable_x64()


def jax_device(device: str) -> Any:
    """The JAX device for ``device`` ("cpu" or "gpu"); ValueError for anything else."""
    import jax

    if device == "cpu":
        return jax.devices("cpu")[0]
    if device == "gpu":
        return jax.devices("gpu")[0]
    raise ValueError(f"invalid device {device!r}: choose one of cpu, gpu")


def jax_available(device: str) -> tuple[bool, str]:
    """(ok, version or reason) for running JAX computations on ``device``."""
    return framework_available("jax", device)


def build_solve(spec: SolveSpec, K: StepConstants, variant: str):
    """The (unjitted) ensemble solve for ``spec``: ``solve(u0, p) -> outputs``.

    ``u0``, ``p``: (N, n_states), (N, n_params) for the vmap variant; (n_states, N),
    (n_params, N) for "soa". Outputs: a tuple of the n_states final components (each (N,)) in
    fixed mode; ``(components, accepted, rejected, status)`` in adaptive mode.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    from solvers.handwritten.ops import JaxOps

    f = spec.prob.rhs_for(jnp)
    ops = JaxOps()
    n_states, n_params = spec.prob.n_states, spec.prob.n_params
    dtype = jnp.dtype(spec.dtype)

    def integrate(u: tuple, p: tuple, lanes_unfinished):
        if spec.mode == "fixed":
            h = jnp.asarray(K.dt, dtype=dtype)

            def body(i, u):
                return fixed_step(f, u, p, K.t0 + i.astype(dtype) * h, h, K)

            return lax.fori_loop(0, K.n_steps, body, u)
        state = lax.while_loop(lanes_unfinished, lambda s: adaptive_attempt(f, p, s, K, ops),
                               initial_state(f, u, p, K, ops))
        return state.u, state.accepted, state.rejected, state.status

    if variant == "":
        def one_trajectory(u0, p):
            return integrate(tuple(u0[i] for i in range(n_states)),
                             tuple(p[j] for j in range(n_params)), lambda s: s.active)

        return jax.vmap(one_trajectory)

    if variant == "soa":
        def all_trajectories(u0, p):
            return integrate(tuple(u0[i] for i in range(n_states)),
                             tuple(p[j] for j in range(n_params)), lambda s: jnp.any(s.active))

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
        import jax

        self.spec = spec
        self.constants = step_constants(spec)
        u0, p = spec.ensemble()
        if spec.variant == "soa":
            u0, p = np.ascontiguousarray(u0.T), np.ascontiguousarray(p.T)
        with x64_scope(spec.dtype):
            self.inputs = jax.device_put((u0, p), jax_device(spec.device))
            self.fn = jax.jit(build_solve(spec, self.constants, spec.variant))

    def run(self) -> Any:
        with x64_scope(self.spec.dtype):
            return self.fn(*self.inputs)

    def sync(self, out: Any) -> None:
        import jax

        jax.block_until_ready(out)

    def fetch(self, out: Any) -> SolveResult:
        notes = {"variant": self.spec.variant or "vmap"}
        if self.spec.mode == "fixed":
            return fixed_result(np.stack([np.asarray(x) for x in out], axis=1), self.constants, notes)
        comps, accepted, rejected, status = out
        return adaptive_result(np.stack([np.asarray(x) for x in comps], axis=1), np.asarray(accepted),
                               np.asarray(rejected), np.asarray(status), self.constants, notes)

    def close(self) -> None:
        self.inputs = None
        self.fn = None


class JaxHandwrittenBackend(Backend):
    """Hand-written explicit Runge-Kutta in JAX (see the module docstring)."""

    name = "jax-handwritten"
    devices = ("cpu", "gpu")
    methods = METHODS
    variants = VARIANTS

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return jax_available(device)

    def check(self, spec: SolveSpec) -> str | None:
        return super().check(spec) or check_common(spec)

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "lockstep"

    def settings(self, spec: SolveSpec) -> dict[str, Any]:
        import jax

        s = common_settings(spec, step_constants(spec))
        s.update(
            step_control=self.step_control(spec),
            library=f"jax {jax.__version__}",
            variant=spec.variant,
            ensemble=("jax.vmap of a per-trajectory solve on tuples of scalars" if spec.variant == ""
                      else "structure-of-arrays: tuples of (N,) arrays, masked updates"),
            jit="the whole solve under one jax.jit",
            loop="lax.fori_loop" if spec.mode == "fixed" else
                 "lax.while_loop until every lane is done (lockstep)",
            x64="scoped jax.enable_x64(True)" if spec.dtype == "float64" else "off (scoped)",
            device=spec.device,
        )
        return s

    def prepare(self, spec: SolveSpec) -> Prepared:
        reason = self.check(spec)
        if reason:
            raise UnsupportedError(reason)
        return JaxHandwrittenPrepared(spec)
