"""diffrax on SDE ensembles, configured as its documentation and issues recommend.

Per trajectory: ``MultiTerm(ODETerm(drift), ControlTerm(diffusion, UnsafeBrownianPath))`` solved
by ``Euler()`` (Euler-Maruyama) on the fixed grid ``StepTo(ts=linspace(t0, t1, n_steps + 1))``
(exactly n_steps steps, no floating-point drift of t); ``SaveAt(t1=True)``; ``throw=False``.
Diagonal noise returns ``lineax.DiagonalLinearOperator`` from the diffusion (diffrax's documented
form since ``WeaklyDiagonalControlTerm`` was deprecated), dense noise the (n_states, n_noise)
matrix. The ensemble is ``jax.jit(jax.vmap(solve_one))`` with one PRNG key per trajectory
(``jax.random.split(PRNGKey(seed), N)``).

Why these choices (diffrax issues #489 and #517): ``VirtualBrownianTree`` (the default in the
examples) costs a tree descent per increment and was 10-200x slower than a hand-written loop;
``UnsafeBrownianPath`` draws each increment directly from the key and the time interval, which is
exact for fixed steps without backpropagation (our case). The maintainers' FAQ also suggests
``EQX_ON_ERROR=nan``; it is process-wide (it changes every diffrax cell in the worker), so the
harness does not set it: ``settings()`` records its value.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from solvers.base import SolveResult, Status
from solvers.peers._common import controller_reason
from solvers.peers.diffrax_backend import x64


class DiffraxSDEPrepared:
    dispatch = "jax"

    def __init__(self, spec: Any, x64) -> None:
        import diffrax  # optional (JAX stack): imported only when this backend runs
        import jax
        import jax.numpy as jnp
        import lineax

        self.spec = spec
        self._x64 = x64
        prob = spec.prob
        drift, diffusion = prob.drift_for(jnp), prob.diffusion_for(jnp)
        ns, npar, nw = prob.n_states, prob.n_params, prob.n_noise
        dtype = spec.np_dtype

        def split(y, args):
            return tuple(y[i] for i in range(ns)), tuple(args[j] for j in range(npar))

        def f(t, y, args):
            u, p = split(y, args)
            return jnp.stack([jnp.asarray(d, dtype=y.dtype) for d in drift(u, p, t)])

        if prob.noise == "diagonal":
            def g(t, y, args):
                u, p = split(y, args)
                return lineax.DiagonalLinearOperator(jnp.stack([jnp.asarray(d, dtype=y.dtype) for d in diffusion(u, p, t)]))
        else:
            def g(t, y, args):
                u, p = split(y, args)
                return jnp.stack([jnp.stack([jnp.asarray(e, dtype=y.dtype) for e in row]) for row in diffusion(u, p, t)])

        t0, t1 = (float(x) for x in prob.tspan)
        n_steps = spec.n_steps
        solver = diffrax.Euler()

        def solve_one(u0, p, key):
            ts = jnp.linspace(t0, t1, n_steps + 1, dtype=dtype)
            bm = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct((nw,), dtype), key=key)
            terms = diffrax.MultiTerm(diffrax.ODETerm(f), diffrax.ControlTerm(g, bm))
            sol = diffrax.diffeqsolve(terms, solver, t0, t1, None, u0, args=p,
                                      saveat=diffrax.SaveAt(t1=True),
                                      stepsize_controller=diffrax.StepTo(ts=ts),
                                      max_steps=n_steps, throw=False, adjoint=diffrax.ForwardMode())
            return sol.ys[-1], sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful

        u0, p = spec.ensemble()
        with self._x64():
            device = jax.devices(spec.device)[0]
            self.u0 = jax.device_put(u0, device)
            self.p = jax.device_put(p, device)
            self.keys = jax.device_put(jax.random.split(jax.random.PRNGKey(spec.seed), spec.n), device)
        self.fn = jax.jit(jax.vmap(solve_one))

    def run(self) -> Any:
        with self._x64():
            return self.fn(self.u0, self.p, self.keys)

    def sync(self, out: Any) -> None:
        import jax  # optional (JAX stack): imported only when this backend runs

        jax.block_until_ready(out)

    def fetch(self, out: Any):
        u, steps, ok = (np.asarray(x) for x in out)
        u = np.asarray(u).reshape(self.spec.n, -1)
        status = np.where(ok, int(Status.SUCCESS), int(Status.FAILED))
        status = np.where(np.isfinite(u).all(axis=1), status, int(Status.NONFINITE))
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        return SolveResult(u_final=u, status=status, accepted=steps, rejected=np.zeros_like(steps),
                           rhs_evals=steps, notes={"increments": "jax.random via UnsafeBrownianPath, one key per trajectory",
                                                   "steps_source": "sol.stats num_steps"})

    def close(self) -> None:
        self.u0 = self.p = self.keys = self.fn = None


# ---- the kind module interface (solvers.base.KindSupport) ----------------------------------------
def check(backend: Any, spec: Any) -> str | None:
    """diffrax's SDE-specific check (after the generic one)."""
    if spec.variant or spec.saveat is not None:
        return "diffrax SDE solves: default variant, final state only"
    return controller_reason(backend.name, spec)


def prepare(backend: Any, spec: Any) -> DiffraxSDEPrepared:
    return DiffraxSDEPrepared(spec, lambda: x64(spec.dtype))


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    prob = spec.prob
    return {
        "library": backend.available(spec.device)[1],
        "step_control": "none", "method": "diffrax.Euler (Euler-Maruyama)",
        "terms": "MultiTerm(ODETerm(drift), ControlTerm(diffusion, UnsafeBrownianPath))",
        "diffusion_form": "lineax.DiagonalLinearOperator" if prob.noise == "diagonal" else "dense (n_states, n_noise) matrix",
        "stepsize_controller": "StepTo(ts=linspace(t0, t1, n_steps + 1))", "n_steps": spec.n_steps,
        "dt": spec.step, "saveat": "SaveAt(t1=True)", "throw": False,
        "adjoint": "ForwardMode() (diffrax refuses UnsafeBrownianPath under the default RecursiveCheckpointAdjoint)",
        "batching": "jax.jit(jax.vmap(solve_one)), one PRNG key per trajectory (jax.random.split)",
        "seed": spec.seed, "EQX_ON_ERROR": os.environ.get("EQX_ON_ERROR", "(unset)"),
    }
