"""Fused particle swarms: one lane (CPU) or thread (CUDA) per particle, ParallelParticleSwarms style.

* method "pso" (synchronised, ParallelSyncPSOKernel): per iteration one launch moves every
  particle and evaluates its cost in registers (a function objective), then the global best is
  reduced over the particles' bests between launches (``numpy.argmin`` on the host: on a GPU the
  N best costs are copied back, one small copy per iteration);
* method "pso-async" (ParallelPSOKernel, global_update = false): one launch for the whole run,
  every particle iterating with its own copy of the global best; the best over all particles is
  taken after the launch. Function objectives only.
* an ODE fit (problems.pso_core.ODEFit; synchronised only): per iteration a move launch writes
  the positions into the parameter rows of the fused ODE kernel's inputs, the fused ODE kernel
  (solvers.fused.codegen, Tsit5 fixed step, saving on the data grid) solves one trajectory per
  particle, and a loss launch sums the squared differences to the data and updates the bests.
  The whole-run asynchronous form would need the ODE solve inside the swarm kernel: not built.

The PSO kernels are compiled without fast-math flags (no a*b+c contraction), so in float64 their
arithmetic is the same IEEE operations in the same order as the array-style replica
(solvers/array/pso.py): the two take the same trajectory from the same random stream.
The formulas (velocity, objective, random stream) are problems.pso_core's, written once.
"""
from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
from numba.core.extending import register_jitable

from problems.brownian import philox4x32_10
from problems.pso_core import GENERATOR, PSO_TAG, UNIFORM_SCALE, pso_velocity
from solvers.base import SolveSpec
from solvers.pso_result import pso_result

try:  # a module global, so Numba's CUDA simulator can swap it in the kernels (it swaps globals only)
    from numba import cuda
except ImportError:  # numba-cuda missing: the CPU kernels still work
    cuda = None

_lock = threading.Lock()
_kernels: dict[tuple, dict] = {}


def make_kernels(objective, dtype: str, target: str) -> dict:
    """The swarm kernels for ``objective`` (None for an ODE fit) in ``dtype`` on ``target``
    ("cpu": Numba parallel loops over particles; "cuda": one thread per particle)."""
    key = (objective, dtype, target)
    with _lock:
        if key not in _kernels:
            _kernels[key] = _build(objective, dtype, target)
    return _kernels[key]


def _build(objective, dtype: str, target: str) -> dict:
    if target == "cpu":
        device = numba.njit(fastmath=False, error_model="numpy")
        return _cpu_kernels(*_particle_functions(objective, dtype, device))
    # CUDA device functions: register_jitable ones compile into each kernel that calls them
    return _cuda_kernels(*_particle_functions(objective, dtype, register_jitable))


def _particle_functions(objective, dtype: str, jit) -> tuple:
    """(f, init_one, move, keep_best): what every kernel does to one particle, compiled by ``jit``;
    ``f`` is the objective (None for an ODE fit)."""
    T = np.float32 if dtype == "float32" else np.float64
    U = np.uint64
    scale = T(UNIFORM_SCALE)
    tag = U(PSO_TAG)
    philox = jit(philox4x32_10)
    velocity = jit(pso_velocity)
    f = jit(objective) if objective is not None else None

    @jit
    def move_one(X, V, PB, G, g, d, i, r1, r2, w, c1, c2, lo, hi):
        x = X[d, i]
        v = velocity(V[d, i], x, PB[d, i], G[d, g], r1, r2, w, c1, c2)
        V[d, i] = v
        X[d, i] = min(max(x + v, lo), hi)

    @jit
    def move(X, V, PB, G, g, i, seed, k, w, c1, c2, lo, hi):
        """Iteration k >= 1 of particle i: block b gives r1, r2 of dimensions 2b and 2b+1."""
        dim = X.shape[0]
        for b in range((dim + 1) // 2):
            a0, a1, a2, a3 = philox(U(k), U(b), tag, U(0), U(i), U(seed))
            move_one(X, V, PB, G, g, 2 * b, i, T(a0) * scale, T(a1) * scale, w, c1, c2, lo, hi)
            if 2 * b + 1 < dim:
                move_one(X, V, PB, G, g, 2 * b + 1, i, T(a2) * scale, T(a3) * scale, w, c1, c2, lo, hi)

    @jit
    def init_one(X, V, i, seed, lo, hi):
        """Iteration 0: uniform positions in the box (block d // 4, word d % 4), zero velocity."""
        dim = X.shape[0]
        for b in range((dim + 3) // 4):
            a0, a1, a2, a3 = philox(U(0), U(b), tag, U(0), U(i), U(seed))
            for q in range(4):
                d = 4 * b + q
                if d < dim:
                    word = a0 if q == 0 else (a1 if q == 1 else (a2 if q == 2 else a3))
                    X[d, i] = lo + (T(word) * scale) * (hi - lo)
                    V[d, i] = lo - lo

    @jit
    def keep_best(X, PB, PBC, i, c):
        if c < PBC[i]:
            PBC[i] = c
            for d in range(X.shape[0]):
                PB[d, i] = X[d, i]

    return f, init_one, move, keep_best


# ---- CPU: Numba parallel loops over particles ----------------------------------------------------

_parallel = numba.njit(parallel=True, fastmath=False, error_model="numpy")


def _cpu_kernels(f, init_one, move, keep_best) -> dict:
    if f is None:
        return _cpu_fit_kernels(init_one, move, keep_best)

    @_parallel
    def init(X, V, PB, PBC, P, seed, lo, hi):
        for i in numba.prange(X.shape[1]):
            init_one(X, V, i, seed, lo, hi)
            PBC[i] = f(X, i, P)
            for d in range(X.shape[0]):
                PB[d, i] = X[d, i]

    @_parallel
    def step(X, V, PB, PBC, G, P, seed, k, w, c1, c2, lo, hi):
        for i in numba.prange(X.shape[1]):
            move(X, V, PB, G, 0, i, seed, k, w, c1, c2, lo, hi)
            keep_best(X, PB, PBC, i, f(X, i, P))

    @_parallel
    def run_async(X, V, PB, PBC, G, GC, P, seed, iters, w, c1, c2, lo, hi):
        for i in numba.prange(X.shape[1]):
            for k in range(1, iters + 1):
                move(X, V, PB, G, i, i, seed, k, w, c1, c2, lo, hi)
                c = f(X, i, P)
                keep_best(X, PB, PBC, i, c)
                if c < GC[i]:
                    GC[i] = c
                    for d in range(X.shape[0]):
                        G[d, i] = X[d, i]

    return dict(init=init, step=step, run_async=run_async)


def _cpu_fit_kernels(init_one, move, keep_best) -> dict:
    @_parallel
    def init_fit(X, V, seed, lo, hi):
        for i in numba.prange(X.shape[1]):
            init_one(X, V, i, seed, lo, hi)

    @_parallel
    def move_fit(X, V, PB, G, seed, k, w, c1, c2, lo, hi):
        for i in numba.prange(X.shape[1]):
            move(X, V, PB, G, 0, i, seed, k, w, c1, c2, lo, hi)

    @_parallel
    def loss_fit(X, PB, PBC, saved, data):
        for i in numba.prange(X.shape[1]):
            s = data[0, 0] - data[0, 0]
            for j in range(data.shape[0]):
                for q in range(data.shape[1]):
                    e = saved[j, q, i] - data[j, q]
                    s = s + e * e
            keep_best(X, PB, PBC, i, s)

    return dict(init=init_fit, move=move_fit, loss=loss_fit)


# ---- CUDA: one thread per particle ---------------------------------------------------------------

def _cuda_kernels(f, init_one, move, keep_best) -> dict:
    out = _cuda_fit_kernels(init_one, move, keep_best) if f is None else _cuda_swarm_kernels(
        f, init_one, move, keep_best)

    @cuda.jit
    def set_gbest(PB, G, j):
        d = cuda.grid(1)
        if d < PB.shape[0]:
            G[d, 0] = PB[d, j]

    out["set_gbest"] = set_gbest
    return out


def _cuda_swarm_kernels(f, init_one, move, keep_best) -> dict:
    @cuda.jit
    def init(X, V, PB, PBC, P, seed, lo, hi):
        i = cuda.grid(1)
        if i < X.shape[1]:
            init_one(X, V, i, seed, lo, hi)
            PBC[i] = f(X, i, P)
            for d in range(X.shape[0]):
                PB[d, i] = X[d, i]

    @cuda.jit
    def step(X, V, PB, PBC, G, P, seed, k, w, c1, c2, lo, hi):
        i = cuda.grid(1)
        if i < X.shape[1]:
            move(X, V, PB, G, 0, i, seed, k, w, c1, c2, lo, hi)
            keep_best(X, PB, PBC, i, f(X, i, P))

    @cuda.jit
    def run_async(X, V, PB, PBC, G, GC, P, seed, iters, w, c1, c2, lo, hi):
        i = cuda.grid(1)
        if i < X.shape[1]:
            for k in range(1, iters + 1):
                move(X, V, PB, G, i, i, seed, k, w, c1, c2, lo, hi)
                c = f(X, i, P)
                keep_best(X, PB, PBC, i, c)
                if c < GC[i]:
                    GC[i] = c
                    for d in range(X.shape[0]):
                        G[d, i] = X[d, i]

    return dict(init=init, step=step, run_async=run_async)


def _cuda_fit_kernels(init_one, move, keep_best) -> dict:
    @cuda.jit
    def init_fit(X, V, seed, lo, hi):
        i = cuda.grid(1)
        if i < X.shape[1]:
            init_one(X, V, i, seed, lo, hi)

    @cuda.jit
    def move_fit(X, V, PB, G, seed, k, w, c1, c2, lo, hi):
        i = cuda.grid(1)
        if i < X.shape[1]:
            move(X, V, PB, G, 0, i, seed, k, w, c1, c2, lo, hi)

    @cuda.jit
    def loss_fit(X, PB, PBC, saved, data):
        i = cuda.grid(1)
        if i < X.shape[1]:
            s = data[0, 0] - data[0, 0]
            for j in range(data.shape[0]):
                for q in range(data.shape[1]):
                    e = saved[j, q, i] - data[j, q]
                    s = s + e * e
            keep_best(X, PB, PBC, i, s)

    return dict(init=init_fit, move=move_fit, loss=loss_fit)


class FusedPSOPrepared:
    """A swarm ready to run (same lifecycle as solvers.base.Prepared); each ``run`` starts the
    swarm afresh from iteration 0 (the random stream makes every run identical)."""

    dispatch = "kernel"

    def __init__(self, backend: Any, spec: Any) -> None:
        prob = spec.prob
        self.spec, self.prob = spec, prob
        self.target = "cuda" if spec.device == "gpu" else "cpu"
        self.asynchronous = spec.method == "pso-async"
        self.iters = prob.iterations_for(spec)
        T = np.dtype(spec.dtype).type
        n, dim = spec.n, prob.dim
        self.scalars = dict(seed=np.int64(spec.seed), w=T(prob.inertia), c1=T(prob.cognitive),
                            c2=T(prob.social), lo=T(prob.lower), hi=T(prob.upper))
        kern = make_kernels(prob.objective, spec.dtype, self.target)
        self._ode_prep = None
        if prob.fit is not None:
            # the fused ODE kernel, its parameter rows 0..dim-1 being the particles' positions
            ode_spec = SolveSpec(problem=prob.fit.ode.name, method=prob.fit.method, mode="fixed", dtype=spec.dtype,
                                 n=n, device=spec.device, saveat=tuple(prob.fit.grid()))
            self._ode_prep = backend.prepare(ode_spec)
            X = self._ode_prep._args[1][:dim]  # rows dim.. keep the ODE's fixed parameters
            self._saved = self._ode_prep._outputs["saved"]
            self._data = np.ascontiguousarray(prob.fit.data().astype(spec.dtype))
            if self.target == "cpu":
                self.ode_kernel = self._ode_prep._kernel  # called here, so launch counting sees it
                self._ode_args = self._ode_prep._args
        else:
            X = np.empty((dim, n), T)
        host = {"V": np.empty((dim, n), T), "PB": np.empty((dim, n), T), "PBC": np.empty(n, T),
                "G": np.empty((dim, n if self.asynchronous else 1), T), "GC": np.empty(n, T),
                "P": np.asarray(prob.objective_params or (0.0,), dtype=T)}
        self.init_kernel = kern["init"]
        if prob.fit is not None:
            self.move_kernel, self.loss_kernel = kern["move"], kern["loss"]
        elif self.asynchronous:
            self.async_kernel = kern["run_async"]
        else:
            self.step_kernel = kern["step"]
        if self.target == "cpu":
            self.X, self.arr = X, host
        else:
            self.X = X if prob.fit is not None else cuda.to_device(X)
            self.arr = {k: cuda.to_device(v) for k, v in host.items()}
            self._data = cuda.to_device(self._data) if prob.fit is not None else None
            self.set_gbest = kern["set_gbest"]
            tpb = backend.threads_per_block
            self._grid = ((n + tpb - 1) // tpb, tpb)
            cuda.synchronize()

    # ---- the pieces of a run ------------------------------------------------------------------
    def _launch(self, kernel):
        return kernel if self.target == "cpu" else kernel[self._grid]

    def _costs(self) -> np.ndarray:
        pbc = self.arr["PBC"]
        return pbc if self.target == "cpu" else pbc.copy_to_host()

    def _set_global_best(self, j: int) -> None:
        if self.target == "cpu":
            self.arr["G"][:, 0] = self.arr["PB"][:, j]
        else:
            self.set_gbest[1, self.prob.dim](self.arr["PB"], self.arr["G"], j)

    def _fit_costs(self) -> None:
        """ODE solve of every particle, then loss and best update (the ODE-fit objective)."""
        a, X = self.arr, self.X
        if self.target == "cpu":
            self.ode_kernel(*self._ode_args)
        else:
            self._ode_prep.run()
        self._launch(self.loss_kernel)(X, a["PB"], a["PBC"], self._saved, self._data)

    def run(self) -> Any:
        a, X, s = self.arr, self.X, self.scalars
        seed, w, c1, c2, lo, hi = s["seed"], s["w"], s["c1"], s["c2"], s["lo"], s["hi"]
        fit = self.prob.fit is not None
        if fit:
            self._launch(self.init_kernel)(X, a["V"], seed, lo, hi)
            if self.target == "cpu":
                a["PBC"][:] = np.inf
            else:
                a["PBC"].copy_to_device(np.full(self.spec.n, np.inf, dtype=self.spec.dtype))
            self._fit_costs()
        else:
            self._launch(self.init_kernel)(X, a["V"], a["PB"], a["PBC"], a["P"], seed, lo, hi)
        j = int(np.argmin(self._costs()))
        if self.asynchronous:
            # every particle starts from the initial global best, then goes its own way
            if self.target == "cpu":
                a["G"][:] = a["PB"][:, j:j + 1]
                a["GC"][:] = a["PBC"][j]
            else:
                pb = a["PB"].copy_to_host()
                a["G"].copy_to_device(np.ascontiguousarray(np.repeat(pb[:, j:j + 1], self.spec.n, axis=1)))
                a["GC"].copy_to_device(np.full(self.spec.n, self._costs()[j], dtype=self.spec.dtype))
            self._launch(self.async_kernel)(X, a["V"], a["PB"], a["PBC"], a["G"], a["GC"], a["P"], seed,
                                            np.int64(self.iters), w, c1, c2, lo, hi)
            return int(np.argmin(self._costs()))
        for k in range(1, self.iters + 1):
            self._set_global_best(j)
            if fit:
                self._launch(self.move_kernel)(X, a["V"], a["PB"], a["G"], seed, np.int64(k), w, c1, c2, lo, hi)
                self._fit_costs()
            else:
                self._launch(self.step_kernel)(X, a["V"], a["PB"], a["PBC"], a["G"], a["P"], seed, np.int64(k),
                                               w, c1, c2, lo, hi)
            j = int(np.argmin(self._costs()))
        return j

    def sync(self, out: Any) -> None:
        if self.target == "cuda":
            cuda.synchronize()

    def fetch(self, out: Any):
        j = int(out)
        pb = self.arr["PB"] if self.target == "cpu" else self.arr["PB"].copy_to_host()
        return pso_result(np.asarray(pb)[:, j], float(self._costs()[j]), self.iters, self.spec,
                          {"kernel": "fused pso (" + ("one launch" if self.asynchronous else "synchronised") + ")"})

    def close(self) -> None:
        self.arr = {}
        self.X = None
        if self._ode_prep is not None:
            self._ode_prep.close()


def check(backend: Any, spec: Any) -> str | None:
    prob = spec.prob
    if spec.variant != "":
        return "the fused swarm has one layout (variant '')"
    if spec.saveat is not None:
        return "a swarm saves no time points"
    if prob.fit is not None and spec.method == "pso-async":
        return ("pso-async of an ODE fit would need the ODE solve inside the whole-run swarm kernel: "
                "not built (the synchronised form runs the fused ODE kernel)")
    return None


def prepare(backend: Any, spec: Any) -> FusedPSOPrepared:
    return FusedPSOPrepared(backend, spec)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    prob = spec.prob
    out = {"step_control": "none", "algorithm": "ParallelParticleSwarms.jl PSO " + (
               "ParallelPSOKernel(global_update=false): one launch" if spec.method == "pso-async"
               else "ParallelSyncPSOKernel: global best reduced between launches (host argmin)"),
           "iterations": prob.iterations_for(spec), "particles": spec.n, "dim": prob.dim,
           "bounds": [prob.lower, prob.upper], "inertia": prob.inertia, "cognitive": prob.cognitive,
           "social": prob.social, "random_stream": GENERATOR, "seed": spec.seed,
           "kernel": "one thread per particle (CUDA)" if spec.device == "gpu" else "prange over particles",
           "fastmath": "none (IEEE order as the array replica)"}
    if prob.fit is not None:
        out["objective"] = (f"sum of squares vs {len(prob.fit.grid())} data points; per iteration the fused ODE "
                            f"kernel ({prob.fit.method}, fixed dt {prob.fit.ode.dt}, saved on the data grid) "
                            "then a loss launch")
    return out
