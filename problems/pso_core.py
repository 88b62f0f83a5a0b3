"""The particle-swarm problem kind: an objective written once, bounds, and the swarm's settings.

A PSO problem asks for the minimum of an objective over a box ``[lower, upper]^dim`` with a swarm
of ``n`` particles (the SolveSpec's N) run for ``iterations`` iterations. Two kinds of objective:

* a function ``objective(x, i, p)`` written once (see ``rosenbrock``): ``x`` holds positions laid
  out (dim, particles); ``i`` is one particle's column (an int: a Numba/CUDA lane) or a slice
  (every particle at once: NumPy/CuPy/JAX), so the same source runs per lane and array-wise.
  Same rules as right-hand sides: no float literals (constants live in ``p``), no ``if`` on values;
* an ODE fit (``ODEFit``): the loss of a particle is the sum of squared differences between the
  solution of an ODE of the zoo with the particle's parameters and noiseless data on a grid (an
  ensemble solve inside every iteration: where the fused ODE kernel plugs in).

The algorithm is ParallelParticleSwarms.jl's (SciML, src/kernels.jl, src/lowerlevel_solve.jl,
src/utils.jl): positions uniform in the box, velocities zero, then per iteration and dimension
``v = w v + c1 r1 (pbest - x) + c2 r2 (gbest - x)``, ``x = clamp(x + v, lower, upper)``, the
particle's best replaced when its new cost is lower. Its defaults: inertia w = 0.7298 (no damping),
cognitive c1 = social c2 = 1.4962 (Clerc's constriction values). Two forms, as there:

* "pso" (ParallelSyncPSOKernel): all particles move, then the global best is reduced over all
  particles' bests before the next iteration;
* "pso-async" (ParallelPSOKernel, global_update = false): one launch for the whole run; each
  particle starts from the initial global best and afterwards knows only its own discoveries
  (no communication during the run); the result is the best over all particles at the end.

Random numbers: every backend draws the same stream, the project's counter-based Philox-4x32-10
(problems.brownian) keyed by (particle, seed) with counter (iteration, block, PSO_TAG, 0):
iteration 0 gives the initial positions (dimension d: block d // 4, word d % 4), iteration
k >= 1 gives r1, r2 of dimensions 2b, 2b+1 from block b (words (0, 1) and (2, 3)). A word w
becomes the uniform ``T(w) * 2^-32`` in the solve's dtype. Same seed, same swarm, on any backend
and device.

Iterations map onto the SolveSpec as fixed-mode steps: the swarm is a discrete-time system with
``dt = 1`` over ``tspan = (0, iterations)``, so ``spec.n_steps`` is the problem's iteration count
and ``spec.max_steps`` (if smaller) caps it; results report it as ``steps_mean``.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from problems.base import ProblemBase, check_dtype, check_n
from problems.core import Problem

#: ParallelParticleSwarms.jl's defaults (src/lowerlevel_solve.jl, src/kernels.jl).
INERTIA = 0.7298
COGNITIVE = 1.4962
SOCIAL = 1.4962
#: Philox counter word 2 of every PSO draw ("PSO" in ASCII): a stream apart from the SDE noise.
PSO_TAG = 0x50534F
#: 2**-32: a 32-bit word to a uniform in [0, 1].
UNIFORM_SCALE = 2.3283064365386963e-10
#: How the random stream is named in results (SolveResult.notes["random_stream"]).
GENERATOR = "philox4x32-10 key=(particle, seed) counter=(iteration, block, 0x50534F, 0)"
#: SolveResult.status of a swarm whose best cost is not finite.
PSO_METHODS = ("pso", "pso-async")


def rosenbrock(x, i, p):
    """sum_d b (x[d+1] - x[d]^2)^2 + (a - x[d])^2 with p = (a, b) (ParallelParticleSwarms.jl's
    benchmark form; minimum 0 at x = (a, a^2, ...) = ones for a = 1)."""
    a = p[0]
    b = p[1]
    s = x[0, i] - x[0, i]  # a zero of the positions' dtype and shape (no float literal)
    for d in range(x.shape[0] - 1):
        t1 = x[d + 1, i] - x[d, i] * x[d, i]
        t2 = a - x[d, i]
        s = s + b * t1 * t1 + t2 * t2
    return s


def pso_velocity(v, x, pbest, gbest, r1, r2, w, c1, c2):
    """The velocity update of one coordinate (scalars or arrays, elementwise)."""
    return w * v + c1 * r1 * (pbest - x) + c2 * r2 * (gbest - x)


@dataclass(frozen=True)
class ODEFit:
    """A least-squares fit of ODE parameters: ``ode`` (a zoo problem) solved with the particle's
    position as its first ``dim`` parameters (the rest keep ``ode.params``), fixed steps of
    ``ode.dt`` with ``method``, saved at every step; the data are the float64 SciPy solution
    (rtol = atol = 1e-12) at the true parameters on the same grid (noiseless)."""

    ode: Problem
    method: str = "tsit5"

    def __repr__(self) -> str:
        # By name: a Problem's repr holds function addresses, and this repr is part of the
        # PSO problem's fingerprint.
        return f"ODEFit(ode={self.ode.name!r}, method={self.method!r})"

    def grid(self) -> np.ndarray:
        prob = self.ode
        t0, t1 = prob.tspan
        return np.linspace(t0, t1, int(round((t1 - t0) / prob.dt)) + 1)

    def data(self) -> np.ndarray:
        """(len(grid), n_states) float64 noiseless data at the ODE's default parameters."""
        return _fit_data(self.ode)

    def params_for(self, positions: np.ndarray) -> np.ndarray:
        """(N, n_params) ODE parameters: the positions (N, dim), then the fixed ones."""
        prob = self.ode
        positions = np.asarray(positions)
        fixed = np.asarray(prob.params[positions.shape[1]:], dtype=np.float64)
        return np.concatenate([positions, np.tile(fixed, (positions.shape[0], 1))], axis=1)

    def loss(self, positions: np.ndarray) -> np.ndarray:
        """Float64 loss of each position (N, dim), by SciPy at rtol 1e-10 (tests, accuracy notes)."""
        from scipy.integrate import solve_ivp  # scipy only where a loss is checked

        prob, data, grid = self.ode, self.data(), self.grid()
        f = prob.rhs_for(math)
        out = []
        for p in self.params_for(np.atleast_2d(positions)):
            sol = solve_ivp(lambda t, u: f(tuple(u), tuple(p), t), prob.tspan, prob.u0, method="DOP853",
                            t_eval=grid, rtol=1e-10, atol=1e-12)
            out.append(float(np.sum((sol.y.T - data) ** 2)) if sol.success else math.inf)
        return np.asarray(out)


_DATA: dict[str, np.ndarray] = {}


def _fit_data(prob: Problem) -> np.ndarray:
    if prob.name not in _DATA:
        from scipy.integrate import solve_ivp  # scipy only for an ODE fit's data

        f = prob.rhs_for(math)
        t0, t1 = prob.tspan
        grid = np.linspace(t0, t1, int(round((t1 - t0) / prob.dt)) + 1)
        sol = solve_ivp(lambda t, u: f(tuple(u), prob.params, t), prob.tspan, prob.u0, method="DOP853",
                        t_eval=grid, rtol=1e-12, atol=1e-14)
        if not sol.success:
            raise RuntimeError(f"{prob.name}: the data solve failed: {sol.message}")
        _DATA[prob.name] = np.ascontiguousarray(sol.y.T)
    return _DATA[prob.name]


@dataclass(frozen=True)
class PSOProblem(ProblemBase):
    """One particle-swarm problem.

    Attributes:
        name: registry key.
        dim: search dimension; lower / upper: the box (the same bounds in every dimension).
        iterations: the protocol's iteration count (``spec.max_steps`` may cap it).
        optimum: the known minimiser (the accuracy reference).
        objective / objective_params: a function objective (see module docstring), or None;
        fit: an ODE fit, or None (exactly one of the two).
        tolerance: the relative distance to the optimum within which a run counts as converged
            (``max_scaled_err`` <= 1).
        default_dtype: ParallelParticleSwarms.jl's benchmarks run in float32.
    """

    kind: ClassVar[str] = "pso"
    #: The swarm's per-trajectory inputs are its size only (see ``ensemble``).
    param_names: ClassVar[tuple[str, ...]] = ()
    stiff: ClassVar[bool] = False
    dt: ClassVar[float] = 1.0
    dt0: ClassVar[None] = None
    rtol: ClassVar[float] = 1e-3  # unused by the swarm; present because specs resolve tolerances uniformly
    atol: ClassVar[float] = 1e-3

    name: str
    dim: int
    lower: float
    upper: float
    iterations: int
    optimum: tuple[float, ...]
    default_dtype: str
    tolerance: float
    objective: Callable | None = None
    objective_params: tuple[float, ...] = ()
    fit: ODEFit | None = None
    inertia: float = INERTIA
    cognitive: float = COGNITIVE
    social: float = SOCIAL
    citation: str = ""
    description: str = ""
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        check_dtype(self.default_dtype)
        if (self.objective is None) == (self.fit is None):
            raise ValueError(f"{self.name}: give exactly one of objective and fit")
        if len(self.optimum) != self.dim or not self.lower < self.upper:
            raise ValueError(f"{self.name}: optimum must have dim entries and lower < upper")

    @property
    def tspan(self) -> tuple[float, float]:
        """(0, iterations): one iteration per unit step (see module docstring)."""
        return (0.0, float(self.iterations))

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(f"x{d}" for d in range(self.dim))

    def ensemble(self, n: int, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The swarm has no per-trajectory inputs beyond its size: (N, dim) zeros, (N, 0)."""
        n = check_n(n)
        dt = np.dtype(check_dtype(dtype or self.default_dtype))
        return np.zeros((n, self.dim), dt), np.zeros((n, 0), dt)

    def iterations_for(self, spec: Any) -> int:
        return int(min(spec.n_steps, spec.max_steps))

    def fingerprint_blob(self) -> str:
        src = inspect.getsource(self.objective) if self.objective else repr(self.fit)
        return repr((self.name, src, self.dim, self.lower, self.upper, self.iterations, self.objective_params,
                     self.inertia, self.cognitive, self.social, self.default_dtype))

    def reference_for(self, spec: Any) -> "PSOAccuracy":
        return PSOAccuracy(self)


@dataclass
class PSOAccuracy:
    """``accuracy(result) -> (max relative distance of the best position to the optimum, note)``;
    ``scaled_accuracy``: the same in units of the problem's tolerance (<= 1: converged)."""

    problem: PSOProblem

    def _distance(self, result: Any) -> float:
        x = np.asarray(result.u_final, dtype=np.float64).reshape(-1, self.problem.dim)[0]
        opt = np.asarray(self.problem.optimum, dtype=np.float64)
        return float(np.max(np.abs(x - opt) / np.abs(opt)))

    def accuracy(self, result: Any) -> tuple[float, str]:
        notes = getattr(result, "notes", {}) or {}
        cost = notes.get("best_cost")
        note = "" if cost is None else f"best objective {float(cost):.3g}"
        return self._distance(result), note

    def scaled_accuracy(self, result: Any) -> float:
        return self._distance(result) / self.problem.tolerance
