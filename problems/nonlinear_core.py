"""The nonlinear-system problem kind: a residual written once, many starting points, an accuracy.

A batched root-finding problem ``F(x; p) = 0`` in dimension ``d``, solved from N starting points
(one independent system per start). The residual is written once, like an ODE right-hand side
(problems.core), as ``residual(x, p)`` returning a tuple with one entry per equation:

* ``x`` is a sequence of ``d`` scalars (SymPy symbols, one system in JAX under vmap) or of
  equally shaped arrays (a whole batch: NumPy, CuPy, torch);
* constants live in ``p`` (no float literals: they would promote float32 code to float64);
* no ``if`` on values, no in-place updates.

The Jacobian is derived from it by SymPy (``problems.derive.derivatives(problem)``), and both
are printed as straight-line, dtype-safe source (``residual_source`` / ``jac_source``) for
generated kernels.

How a solve maps onto the project's shared vocabulary (SolveSpec / SolveResult):

* ``spec.n``: number of systems (starting points, ``starts(n, dtype, seed)``);
* ``spec.mode = "adaptive"``: iterate until converged (the only mode);
* ``spec.rtol`` / ``spec.atol``: the convergence test (``CONVERGENCE``, the Cauchy test of
  optimistix.Newton): a step ``dx`` taken at ``x`` with residual ``F(x)`` converges when
  ``max_i |dx_i| / (atol + rtol |x_new_i|) < 1`` and ``max_i |F_i(x)| < atol``;
* ``spec.max_steps``: the cap on iterations per system;
* ``spec.dt``: the trust-region method's initial radius (``dt0``: 1; Newton ignores it);
* ``SolveResult.u_final``: the roots; ``status``: per system (solvers.base.Status:
  SUCCESS, NOT_CONVERGED at the iteration cap, NONFINITE, FAILED for a singular Jacobian);
  ``accepted``: iterations (accepted steps); ``rejected``: rejected trust-region steps;
  ``rhs_evals``: residual evaluations.

The accuracy (``reference_for(spec).accuracy(result)``) compares the converged systems with the
known root: max relative error, and ``max_scaled_err`` = max |x - root| / (atol + rtol |root|).
"""
from __future__ import annotations

import inspect
import math
import types
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from problems.base import ProblemBase, check_dtype, check_n

#: The convergence test every nonlinear backend applies (stored in settings).
CONVERGENCE = ("step dx at x, residual F(x): converged when max|dx_i| / (atol + rtol |x_new_i|) < 1 "
               "and max|F_i(x)| < atol (optimistix.Newton's Cauchy termination)")


@dataclass(frozen=True)
class NonlinearProblem(ProblemBase):
    """One batched nonlinear system of the zoo.

    Attributes:
        name: registry key.
        residual: ``residual(x, p) -> tuple`` (see module docstring), written once.
        state_names / param_names: names of the unknowns and the constants.
        params: values of the constants.
        root: the known root (for accuracy); every start must converge to it (one root).
        start_box: (lo, hi): starting points are drawn uniformly from [lo, hi)^d.
        default_dtype: the precision of the published protocol.
    """

    kind: ClassVar[str] = "nonlinear"
    stiff: ClassVar[bool] = False
    #: SolveSpec resolves a step for every kind; here it is the trust region's initial radius.
    dt: ClassVar[None] = None
    dt0: ClassVar[float] = 1.0

    name: str
    residual: Callable[..., tuple]
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    params: tuple[float, ...]
    root: tuple[float, ...]
    start_box: tuple[float, float]
    default_dtype: str
    rtol: float = 1e-5
    atol: float = 1e-5
    citation: str = ""
    description: str = ""
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        check_dtype(self.default_dtype)
        if len(self.root) != len(self.state_names) or len(self.params) != len(self.param_names):
            raise ValueError(f"{self.name}: root/params and their names differ in length")
        lo, hi = self.start_box
        if not lo < hi:
            raise ValueError(f"{self.name}: start_box must be (lo, hi) with lo < hi")

    # ---- the batch -----------------------------------------------------------------------
    def starts(self, n: int, dtype: str | None = None, seed: int = 0) -> np.ndarray:
        """N starting points (N, d), uniform in ``start_box``, rounded to ``dtype``. Drawn in
        row order from one seeded stream, so the first k starts are the same for every N >= k."""
        n = check_n(n)
        dt = np.dtype(check_dtype(dtype or self.default_dtype))
        lo, hi = self.start_box
        x = np.random.default_rng(seed).uniform(lo, hi, size=(n, self.n_states))
        return np.ascontiguousarray(x.astype(dt))

    def ensemble(self, n: int, dtype: str | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(starts (N, d), params (N, n_params)) in ``dtype``: the layout every kind shares."""
        dt = np.dtype(check_dtype(dtype or self.default_dtype))
        x0 = self.starts(n, dtype, seed)
        p = np.tile(np.asarray(self.params, dtype=np.float64), (x0.shape[0], 1)).astype(dt)
        return x0, np.ascontiguousarray(p)

    # ---- translation -----------------------------------------------------------------------
    def residual_for(self, namespace: Any) -> Callable[..., tuple]:
        """``residual`` with its math namespace ``m`` bound to ``namespace`` (numpy, torch, ...)."""
        key = ("residual", getattr(namespace, "__name__", id(namespace)))
        if key not in self._cache:
            f = self.residual
            glb = dict(f.__globals__)
            glb["m"] = namespace
            g = types.FunctionType(f.__code__, glb, f.__name__, f.__defaults__, f.__closure__)
            g.__qualname__ = f.__qualname__
            self._cache[key] = g
        return self._cache[key]

    def residual_numpy(self, x: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Batched NumPy evaluation: x (N, d), p (N, n_params) -> F (N, d)."""
        f = self.residual_for(np)(tuple(np.moveaxis(x, -1, 0)), tuple(np.moveaxis(p, -1, 0)))
        return np.stack(np.broadcast_arrays(*f), axis=-1)

    def fingerprint_blob(self) -> str:
        return repr((self.name, inspect.getsource(self.residual), self.params, self.root,
                     self.start_box, self.default_dtype))

    # ---- accuracy (the harness calls this without knowing the kind) --------------------------
    def reference_for(self, spec: Any) -> "NonlinearAccuracy":
        return NonlinearAccuracy(self, spec)


@dataclass
class NonlinearAccuracy:
    """Measures a batched root-finding result against the known root.

    ``accuracy(result) -> (max_rel_err, note)`` over the systems whose status is SUCCESS (the
    others are counted by the harness from ``status``); ``scaled_accuracy(result)`` = max over
    those systems and components of |x - root| / (atol + rtol |root|) with the solve's tolerances.
    """

    problem: NonlinearProblem
    spec: Any

    def _converged(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(result.u_final, dtype=np.float64)
        status = np.zeros(u.shape[0], dtype=np.int64) if result.status is None else np.asarray(result.status)
        ok = (status == 0) & np.isfinite(u).all(axis=1)
        return u[ok], np.asarray(self.problem.root, dtype=np.float64)

    def accuracy(self, result: Any) -> tuple[float, str]:
        u, root = self._converged(result)
        if u.shape[0] == 0:
            return math.nan, "no system converged: error not measured"
        err = float(np.max(np.abs(u - root) / np.maximum(np.abs(root), 1e-30)))
        far = int(np.count_nonzero(np.abs(u - root).max(axis=1) > 1e-2 * np.maximum(np.abs(root).max(), 1.0)))
        return err, (f"{far} systems reported converged away from the root" if far else "")

    def scaled_accuracy(self, result: Any) -> float:
        u, root = self._converged(result)
        if u.shape[0] == 0:
            return math.nan
        rtol, atol = self.spec.tol
        return float(np.max(np.abs(u - root) / (atol + rtol * np.abs(root))))
