"""Array-style particle swarms: the fused swarm's algorithm as whole-swarm array operations.

Every step of the swarm (the Philox rounds of the random stream, the velocity and position
updates of each dimension, the objective, the best-position updates, the global-best reduction)
is its own operation over arrays of all N particles (NumPy on "cpu", CuPy on "gpu"): the
architecture of a vectorised PSO, as EnsembleGPUArray is of ODE ensembles. The formulas and the
random stream are problems.pso_core's and problems.brownian's, the same ones the fused kernels
compile, in the same order: in float64 both take the same trajectory.

An ODE fit solves the ensemble with the array-style ODE replica (solvers/array/drivers.py,
Tsit5 fixed step, saved on the data grid) inside every iteration.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from problems.brownian import philox4x32_10
from problems.pso_core import GENERATOR, PSO_TAG, UNIFORM_SCALE, pso_velocity
from solvers.array.backend import namespace, to_host
from solvers.array.drivers import GridSaver, solve_fixed
from solvers.array.steppers import Ensemble, ExplicitStepper
from solvers.pso_result import pso_result
from solvers.tableaus import EXPLICIT


class ArrayPSOPrepared:
    """A swarm ready to run (solvers.base.Prepared lifecycle); ``self.xp`` is read at every run."""

    dispatch = "xp"

    def __init__(self, spec: Any, xp: Any) -> None:
        self.spec, self.prob, self.xp = spec, spec.prob, xp
        self.device = spec.device
        self.T = np.dtype(spec.dtype).type
        self.iters = self.prob.iterations_for(spec)
        self.asynchronous = spec.method == "pso-async"
        if self.prob.fit is not None:
            fit = self.prob.fit
            ode = fit.ode
            self.ode = ode
            self.data = xp.asarray(fit.data().astype(spec.dtype))
            self.fixed = [self.T(v) for v in ode.params[self.prob.dim:]]
            self.n_steps = len(fit.grid()) - 1

    # ---- the random stream -------------------------------------------------------------------
    def _words(self, k: int, block: int) -> tuple:
        xp, n = self.xp, self.spec.n
        i = xp.arange(n, dtype=xp.uint64)
        zero = xp.zeros(n, dtype=xp.uint64)
        return philox4x32_10(zero + np.uint64(k), zero + np.uint64(block), zero + np.uint64(PSO_TAG), zero, i,
                             zero + np.uint64(self.spec.seed))

    def _uniform(self, word: Any) -> Any:
        return word.astype(self.T) * self.T(UNIFORM_SCALE)

    # ---- the objective -----------------------------------------------------------------------
    def _cost(self, X: Any) -> Any:
        xp = self.xp
        if self.prob.fit is None:
            return self.prob.objective(X, slice(None), xp.asarray(self.prob.objective_params, dtype=self.T))
        n = self.spec.n
        params = tuple(X[d] for d in range(self.prob.dim)) + tuple(xp.full(n, v, dtype=self.T) for v in self.fixed)
        ens = Ensemble(xp=xp, rhs=self.ode.rhs_for(xp), params=params, n_lanes=n, dtype=np.dtype(self.T))
        u0 = xp.asarray(np.tile(np.asarray(self.ode.u0, dtype=self.T)[:, None], (1, n)))
        saver = GridSaver(ens, list(range(self.n_steps + 1)), self.ode.n_states)
        with np.errstate(all="ignore"):
            sol = solve_fixed(ExplicitStepper(EXPLICIT[self.prob.fit.method], ens), ens, u0, self.ode.tspan[0],
                              self.ode.dt, self.n_steps, saver)
            s = xp.zeros(n, dtype=self.T)
            for j in range(self.data.shape[0]):  # the fused loss kernel's order of summation
                for q in range(self.data.shape[1]):
                    e = sol.saved[:, j, q] - self.data[j, q]
                    s = s + e * e
        return s

    def run(self) -> Any:
        xp, T, prob = self.xp, self.T, self.prob
        n, dim = self.spec.n, prob.dim
        lo, hi = T(prob.lower), T(prob.upper)
        w, c1, c2 = T(prob.inertia), T(prob.cognitive), T(prob.social)
        X = xp.empty((dim, n), dtype=T)
        for b in range((dim + 3) // 4):
            words = self._words(0, b)
            for q in range(4):
                if 4 * b + q < dim:
                    X[4 * b + q] = lo + self._uniform(words[q]) * (hi - lo)
        V = xp.zeros((dim, n), dtype=T)
        cost = self._cost(X)
        PBC = xp.where(cost < T(np.inf), cost, T(np.inf))  # a non-finite cost never becomes a best
        PB = X.copy()
        j = int(xp.argmin(PBC))
        G = xp.repeat(PB[:, j:j + 1], n if self.asynchronous else 1, axis=1)
        GC = xp.full(n, PBC[j], dtype=T)
        with np.errstate(all="ignore"):
            for k in range(1, self.iters + 1):
                for b in range((dim + 1) // 2):
                    words = self._words(k, b)
                    for d, (r1, r2) in ((2 * b, (words[0], words[1])), (2 * b + 1, (words[2], words[3]))):
                        if d < dim:
                            v = pso_velocity(V[d], X[d], PB[d], G[d], self._uniform(r1), self._uniform(r2), w, c1, c2)
                            V[d] = v
                            X[d] = xp.minimum(xp.maximum(X[d] + v, lo), hi)
                cost = self._cost(X)
                better = cost < PBC
                PBC = xp.where(better, cost, PBC)
                PB = xp.where(better, X, PB)
                if self.asynchronous:  # each particle's own copy of the global best
                    gbetter = cost < GC
                    GC = xp.where(gbetter, cost, GC)
                    G = xp.where(gbetter, X, G)
                else:
                    j = int(xp.argmin(PBC))
                    G = PB[:, j:j + 1]
        j = int(xp.argmin(PBC))
        return PB[:, j], PBC[j]

    def sync(self, out: Any) -> None:
        if self.device == "gpu":
            import cupy  # optional: present only where a GPU solve runs

            cupy.cuda.get_current_stream().synchronize()

    def fetch(self, out: Any):
        best, cost = out
        return pso_result(to_host(best), float(to_host(cost)), self.iters, self.spec,
                          {"kernel": "array-style pso (" + ("per-particle global best" if self.asynchronous
                                                            else "synchronised") + ")"})

    def close(self) -> None:
        self.data = None


def check(backend: Any, spec: Any) -> str | None:
    if spec.variant != "":
        return "the array-style swarm has one form (variant '')"
    if spec.saveat is not None:
        return "a swarm saves no time points"
    return None


def prepare(backend: Any, spec: Any) -> ArrayPSOPrepared:
    return ArrayPSOPrepared(spec, namespace(spec.device))


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    prob = spec.prob
    out = {"step_control": "none", "algorithm": "ParallelParticleSwarms.jl PSO as whole-swarm array operations, "
                                                + ("per-particle global best (async form)" if spec.method == "pso-async"
                                                   else "global best reduced every iteration (xp.argmin)"),
           "iterations": prob.iterations_for(spec), "particles": spec.n, "dim": prob.dim,
           "bounds": [prob.lower, prob.upper], "inertia": prob.inertia, "cognitive": prob.cognitive,
           "social": prob.social, "random_stream": GENERATOR + " (array-wise)", "seed": spec.seed}
    if prob.fit is not None:
        out["objective"] = (f"sum of squares vs {len(prob.fit.grid())} data points; array-style {prob.fit.method} "
                            f"replica (fixed dt {prob.fit.ode.dt}) per iteration")
    return out
