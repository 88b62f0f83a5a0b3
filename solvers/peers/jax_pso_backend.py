"""Particle swarms in JAX, as a JAX user would write them: the whole run under one ``jax.jit``.

Variants:

* ``""``: a vectorised PSO written by hand: the swarm's arrays (N, dim), the iteration loop a
  ``lax.fori_loop`` inside the jitted function (XLA fuses the update of every iteration into a
  few kernels; no host round trip between iterations), random numbers from ``jax.random``
  (threefry, one key split per iteration: JAX's idiom, so its stream differs from the
  Philox stream of the fused and array backends and its trajectory does too). Algorithm and
  constants as problems.pso_core (ParallelParticleSwarms.jl's): method "pso" reduces the global
  best every iteration (``argmin``), "pso-async" keeps a per-particle copy of it.
* ``"evosax"``: evosax's ``PSO`` (evosax 0.3) with ParallelParticleSwarms.jl's coefficients set
  in its params, its ask/tell inside a jitted ``lax.fori_loop``, positions clipped to the box
  before evaluation (evosax has no bounds). Its update differs from ParallelParticleSwarms'
  in one documented way: r1, r2 are drawn once per particle, shared across dimensions
  (evosax's comment: "seems more robust"). Method "pso" only.

ODE fits: the loss solves the whole swarm with diffrax in its strongest CPU form for ensembles,
the "batched" layout of solvers/peers/diffrax_backend.py (one ``diffeqsolve`` whose state is
(n_states, N), Tsit5, ``ConstantStepSize``, dt = the ODE's dt, ``SaveAt(ts=data grid)``), inside
the jitted loop. Float32 runs with x64 off, float64 with x64 on.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from problems.pso_core import PSO_METHODS
from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, SolveSpec
from solvers.pso_result import pso_result

JAX_STREAM = "jax.random (threefry2x32), PRNGKey(seed), one split per iteration"


def _x64(dtype: str):
    import jax  # optional (JAX stack): imported only when this backend runs

    enable = dtype == "float64"
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(enable)
    # jax before 0.7 has the context managers here only (optional, imported when this backend runs)
    from jax.experimental import disable_x64, enable_x64

    return enable_x64() if enable else disable_x64()


def _loss_fn(prob, dtype):
    """The objective of the whole swarm: positions (N, dim) -> costs (N,)."""
    import jax.numpy as jnp  # optional (JAX stack): imported only when this backend runs

    if prob.fit is None:
        p = jnp.asarray(prob.objective_params, dtype=dtype)
        return lambda x: prob.objective(x.T, slice(None), p)
    import diffrax  # optional (JAX stack): imported only when this backend runs

    ode = prob.fit.ode
    rhs = ode.rhs_for(jnp)
    data = jnp.asarray(prob.fit.data(), dtype=dtype)  # (len(grid), n_states)
    grid = np.asarray(prob.fit.grid())
    fixed = np.asarray(ode.params[prob.dim:], dtype=dtype)
    n_states, n_params = ode.n_states, ode.n_params

    def vector_field(t, y, args):
        du = rhs(tuple(y[i] for i in range(n_states)), tuple(args[j] for j in range(n_params)), t)
        return jnp.stack([jnp.broadcast_to(jnp.asarray(d, dtype=y.dtype), y.shape[1:]) for d in du])

    term, solver = diffrax.ODETerm(vector_field), diffrax.Tsit5()
    t0, t1 = (float(x) for x in ode.tspan)
    n_steps = len(grid) - 1

    def loss(x):
        n = x.shape[0]
        args = jnp.concatenate([x.T, jnp.broadcast_to(jnp.asarray(fixed)[:, None], (len(fixed), n))], axis=0)
        y0 = jnp.broadcast_to(jnp.asarray(ode.u0, dtype=x.dtype)[:, None], (n_states, n))
        sol = diffrax.diffeqsolve(term, solver, t0, t1, ode.dt, y0, args=args,
                                  saveat=diffrax.SaveAt(ts=jnp.asarray(grid, dtype=x.dtype)),
                                  stepsize_controller=diffrax.ConstantStepSize(), max_steps=n_steps + 1,
                                  throw=False)
        return jnp.sum((sol.ys - data[:, :, None]) ** 2, axis=(0, 1))  # ys: (len(grid), n_states, N)

    return loss


def _handwritten(prob, spec, iters):
    import jax  # optional (JAX stack): imported only when this backend runs
    import jax.numpy as jnp

    T = np.dtype(spec.dtype).type
    n, dim = spec.n, prob.dim
    lo, hi = T(prob.lower), T(prob.upper)
    w, c1, c2 = T(prob.inertia), T(prob.cognitive), T(prob.social)
    loss = _loss_fn(prob, spec.dtype)
    asynchronous = spec.method == "pso-async"

    def clean(c):
        return jnp.where(jnp.isnan(c), jnp.inf, c)

    def run(key):
        key, k0 = jax.random.split(key)
        x = jax.random.uniform(k0, (n, dim), dtype=spec.dtype, minval=lo, maxval=hi)
        v = jnp.zeros_like(x)
        cost = clean(loss(x))
        j = jnp.argmin(cost)
        g = jnp.broadcast_to(x[j], (n, dim)) if asynchronous else x[j][None, :]
        gc = jnp.full((n,), cost[j])

        def body(k, state):
            x, v, pb, pbc, g, gc, key = state
            key, k1 = jax.random.split(key)
            r = jax.random.uniform(k1, (2, n, dim), dtype=spec.dtype)
            v = w * v + c1 * r[0] * (pb - x) + c2 * r[1] * (g - x)
            x = jnp.clip(x + v, lo, hi)
            c = clean(loss(x))
            better = c < pbc
            pbc = jnp.where(better, c, pbc)
            pb = jnp.where(better[:, None], x, pb)
            if asynchronous:
                gb = c < gc
                gc = jnp.where(gb, c, gc)
                g = jnp.where(gb[:, None], x, g)
            else:
                g = pb[jnp.argmin(pbc)][None, :]
            return x, v, pb, pbc, g, gc, key

        x, v, pb, pbc, g, gc, key = jax.lax.fori_loop(1, iters + 1, body, (x, v, x, cost, g, gc, key))
        j = jnp.argmin(pbc)
        return pb[j], pbc[j]

    return jax.jit(run)


def _evosax(prob, spec, iters):
    import jax  # optional (JAX stack): imported only when this backend runs
    import jax.numpy as jnp
    from evosax.algorithms import PSO

    T = np.dtype(spec.dtype).type
    n, dim = spec.n, prob.dim
    lo, hi = T(prob.lower), T(prob.upper)
    loss = _loss_fn(prob, spec.dtype)
    strategy = PSO(population_size=n, solution=jnp.zeros(dim, dtype=spec.dtype))
    params = strategy.default_params.replace(inertia_coeff=T(prob.inertia), cognitive_coeff=T(prob.cognitive),
                                             social_coeff=T(prob.social))

    def run(key):
        key, k0, k1 = jax.random.split(key, 3)
        x = jax.random.uniform(k0, (n, dim), dtype=spec.dtype, minval=lo, maxval=hi)
        state = strategy.init(k1, x, loss(x), params)

        def body(k, carry):
            state, key = carry
            key, ka, kt = jax.random.split(key, 3)
            x, state = strategy.ask(ka, state, params)
            x = jnp.clip(x, lo, hi)
            state, _ = strategy.tell(kt, x, loss(x), state, params)
            return state, key

        state, key = jax.lax.fori_loop(1, iters + 1, body, (state, key))
        j = jnp.argmin(state.fitness_best)
        return state.population_best[j], state.fitness_best[j]

    return jax.jit(run)


class JaxPSOPrepared:
    dispatch = "jax"

    def __init__(self, spec: SolveSpec) -> None:
        import jax  # optional (JAX stack): imported only when this backend runs

        self.spec = spec
        self.iters = spec.prob.iterations_for(spec)
        with _x64(spec.dtype):
            build = _evosax if spec.variant == "evosax" else _handwritten
            self.fn = build(spec.prob, spec, self.iters)
            self.key = jax.random.PRNGKey(spec.seed)

    def run(self) -> Any:
        with _x64(self.spec.dtype):
            return self.fn(self.key)

    def sync(self, out: Any) -> None:
        import jax  # optional (JAX stack): imported only when this backend runs

        jax.block_until_ready(out)

    def fetch(self, out: Any):
        best, cost = (np.asarray(x) for x in out)
        return pso_result(best, float(cost), self.iters, self.spec,
                          {"kernel": f"jax.jit of the whole run ({self.spec.variant or 'hand-written'})",
                           "random_stream_used": JAX_STREAM})

    def close(self) -> None:
        self.fn = None


class JaxPSOBackend(Backend):
    """Particle swarms under ``jax.jit`` (see module docstring); kind "pso" only."""

    name = "jax-pso"
    devices = ("cpu", "gpu")
    kinds = {"pso": KindSupport({m: ("fixed",) for m in PSO_METHODS})}
    variants = ("", "evosax")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("jax", device, "diffrax", "evosax")

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.variant == "evosax" and spec.method != "pso":
            return "evosax's PSO has the synchronised form only (method 'pso')"
        if spec.saveat is not None:
            return "a swarm saves no time points"
        return None

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        prob = spec.prob
        out = {"step_control": "none", "iterations": prob.iterations_for(spec), "particles": spec.n,
               "dim": prob.dim, "bounds": [prob.lower, prob.upper], "inertia": prob.inertia,
               "cognitive": prob.cognitive, "social": prob.social, "random_stream": JAX_STREAM,
               "loop": "lax.fori_loop inside one jax.jit",
               "algorithm": ("evosax.algorithms.PSO (r1, r2 shared across dimensions), positions clipped"
                             if spec.variant == "evosax" else "hand-vectorised ParallelParticleSwarms PSO")}
        if prob.fit is not None:
            out["objective"] = (f"diffrax batched: one diffeqsolve on ({prob.fit.ode.n_states}, N), Tsit5, "
                                f"ConstantStepSize dt={prob.fit.ode.dt}, SaveAt(ts=data grid)")
        return out

    def prepare_own(self, spec: SolveSpec) -> JaxPSOPrepared:
        return JaxPSOPrepared(spec)
