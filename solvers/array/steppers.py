"""One step (attempt) of each method, written as whole-ensemble array operations.

Layout (structure of arrays): a state is an ``(n_states, N)`` array whose row ``i`` holds state
``i`` of every trajectory; parameters are ``n_params`` rows of ``(N,)``. The right-hand side is
called once per stage on tuples of rows, ``rhs(tuple of (N,), tuple of (N,), t)``, exactly as the
problem wrote it. A step size ``h`` and a time ``t`` are scalars of the state dtype (fixed and
shared step control: one value for the whole ensemble) or ``(N,)`` arrays (lockstep: one per
trajectory); both broadcast against ``(n_states, N)``.

Nothing is fused: every ``+``, ``*``, ``xp.stack`` and ``xp.linalg.solve`` below is one array
operation (one kernel launch on a GPU), which is the point of this control experiment. The
arithmetic is the fused kernel's, expression for expression (both sum with
``solvers.tableaus.rk_update``: stage arguments ``y + h*(a_1*k_1 + a_2*k_2 + ...)``, zero
coefficients skipped; trivial nodes ``c = 0, 1`` exact), so the two differ in architecture, not
in rounding order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from solvers.tableaus import TSIT5_DENSE, ExplicitRK, Rosenbrock23Constants, rk_update


@dataclass
class Ensemble:
    """What every stepper needs to evaluate the problem on the whole ensemble.

    Attributes:
        xp: the array namespace (numpy, cupy, or the launch counter's proxy of numpy).
        rhs: the problem's right-hand side bound to ``xp`` (``problem.rhs_for(xp)``).
        params: the parameter rows, a tuple of ``(N,)`` arrays.
        n_lanes: N, the number of trajectories.
        dtype: the state dtype (a NumPy dtype; CuPy accepts it).
    """

    xp: Any
    rhs: Callable
    params: tuple
    n_lanes: int
    dtype: Any
    #: The problem's vectorised form (``Problem.rhs_array``), used instead of ``rhs`` where given:
    #: one operation per term on the whole (n_states, N) array, not one per component.
    rhs_array: Callable | None = None

    def lane_array(self, value: Any) -> Any:
        """``value`` as an ``(N,)`` array: derived functions return constant entries as scalars."""
        if getattr(value, "shape", None) == (self.n_lanes,):
            return value
        return self.xp.broadcast_to(self.xp.asarray(value, dtype=self.dtype), (self.n_lanes,))

    def derivative(self, u: Any, t: Any) -> Any:
        """``f(u, t)`` for every trajectory: an ``(n_states, N)`` array (one RHS evaluation)."""
        if self.rhs_array is not None:
            return self.rhs_array(u, self.params, t)
        return self.stack_rows(self.rhs(tuple(u), self.params, t))

    def stack_rows(self, rows: Sequence[Any]) -> Any:
        return self.xp.stack([self.lane_array(r) for r in rows])


def stage_time(t: Any, h: Any, c: Any) -> Any:
    """``t + h*c``, with the trivial nodes exact (``c = 0``: ``t``; ``c = 1``: ``t + h``)."""
    if c == 0.0:
        return t
    if c == 1.0:
        return t + h
    return t + h * c


@dataclass
class Attempt:
    """One adaptive trial step from ``(t, u)`` with step ``h``.

    u_new: the candidate new state. f_new: ``f(u_new, t + h)`` (FSAL: the next step's first
    stage). err: the local error estimate. stages: the stage derivatives, for dense output.
    """

    u_new: Any
    f_new: Any
    err: Any
    stages: list


class ExplicitStepper:
    """An explicit Runge-Kutta tableau (``solvers.tableaus.ExplicitRK``) on the whole ensemble.

    Fixed steps evaluate ``k_1 = f(u, t)`` at every step and, for an FSAL tableau, skip the last
    stage (it only feeds the error estimate): ``s - 1`` evaluations per Tsit5 step, ``s`` per
    RK4 step. Adaptive attempts reuse the previous ``f(u_new)`` as ``k_1`` and evaluate stages
    ``2..s``. Coefficients are rounded to the state dtype once, here.
    """

    def __init__(self, tableau: ExplicitRK, ensemble: Ensemble) -> None:
        typed = np.dtype(ensemble.dtype).type
        self.tableau = tableau
        self.ens = ensemble
        self.fsal = tableau.fsal
        self.a = [[typed(x) for x in row] for row in tableau.a]
        self.b = [typed(x) for x in tableau.b]
        self.c = [typed(x) for x in tableau.c]
        self.btilde = None if tableau.btilde is None else [typed(x) for x in tableau.btilde]
        #: stages of a fixed step (FSAL: the one at u_new is not needed) = RHS evaluations
        self.step_stages = tableau.stages - 1 if tableau.fsal else tableau.stages
        #: RHS evaluations per adaptive attempt (stages 2..s; k_1 is the previous k_s)
        self.rhs_per_attempt = tableau.stages - 1

    def _stages(self, u: Any, k1: Any, t: Any, h: Any, count: int) -> list:
        stages = [k1]
        for i in range(1, count):
            u_stage = rk_update(u, h, self.a[i], stages)
            stages.append(self.ens.derivative(u_stage, stage_time(t, h, self.c[i])))
        return stages

    def step(self, u: Any, t: Any, h: Any) -> Any:
        """One fixed step: the new state."""
        stages = self._stages(u, self.ens.derivative(u, t), t, h, self.step_stages)
        return rk_update(u, h, self.b[:self.step_stages], stages)

    def attempt(self, u: Any, f0: Any, t: Any, h: Any) -> Attempt:
        """One adaptive attempt from ``f0 = f(u, t)`` (needs an FSAL embedded pair)."""
        s = self.tableau.stages
        stages = self._stages(u, f0, t, h, s - 1)
        u_new = rk_update(u, h, self.b[:s - 1], stages)  # b[s-1] == 0 (FSAL)
        stages.append(self.ens.derivative(u_new, stage_time(t, h, self.c[s - 1])))
        err = rk_update(None, h, self.btilde, stages)
        return Attempt(u_new=u_new, f_new=stages[-1], err=err, stages=stages)


class Rosenbrock23Stepper:
    """Shampine-Reichelt's Rosenbrock23 (``solvers.tableaus.ROSENBROCK23``) with batched solves.

    The Jacobian ``J = df/du`` and ``T = df/dt`` come from ``problems.derive.derivatives(problem)`` (SymPy),
    evaluated on the ensemble's rows; ``W = I - h d J`` is an ``(N, n, n)`` stack and every stage
    is one ``xp.linalg.solve`` on that stack. ``T`` terms are left out when ``df/dt`` is
    identically zero (an autonomous problem), as the symbolic derivative shows.
    """

    fsal = True
    rhs_per_attempt = 2  # f1 and f2 (f0 is the previous step's f2)

    def __init__(self, constants: Rosenbrock23Constants, ensemble: Ensemble, jac: Callable,
                 tgrad: Callable, autonomous: bool, n_states: int) -> None:
        typed = np.dtype(ensemble.dtype).type
        self.d, self.e32, self.k3_T_coeff = (typed(constants.d), typed(constants.e32),
                                             typed(constants.k3_T_coeff))
        self.half, self.two, self.six = typed(0.5), typed(2), typed(6)
        self.ens = ensemble
        self.jac = jac
        self.tgrad = tgrad
        self.autonomous = autonomous
        self.n_states = n_states
        self.identity = None  # made on the first attempt, in the namespace of the solve

    def _jacobian_stack(self, u: Any, t: Any) -> Any:
        """``J`` at ``(u, t)`` as an ``(N, n, n)`` stack."""
        rows = self.jac(tuple(u), self.ens.params, t)
        entries = [self.ens.lane_array(e) for row in rows for e in row]
        n = self.n_states
        return self.ens.xp.stack(entries, axis=-1).reshape(self.ens.n_lanes, n, n)

    def _solve(self, w: Any, b: Any) -> Any:
        """``W x = b`` for every trajectory; ``b`` and ``x`` are ``(n_states, N)``."""
        return self.ens.xp.linalg.solve(w, b.T[:, :, None])[:, :, 0].T

    def attempt(self, u: Any, f0: Any, t: Any, h: Any) -> Attempt:
        xp = self.ens.xp
        if self.identity is None:
            self.identity = xp.eye(self.n_states, dtype=self.ens.dtype)
        hd = h * self.d
        hd_matrix = hd[:, None, None] if getattr(hd, "ndim", 0) else hd
        w = self.identity - hd_matrix * self._jacobian_stack(u, t)
        if self.autonomous:
            dt_term = None
            k1 = self._solve(w, f0)
        else:
            dt_term = self.ens.stack_rows(self.tgrad(tuple(u), self.ens.params, t))
            k1 = self._solve(w, f0 + hd * dt_term)
        hh = h * self.half
        f1 = self.ens.derivative(u + hh * k1, t + hh)
        k2 = self._solve(w, f1 - k1) + k1
        u_new = u + h * k2
        f2 = self.ens.derivative(u_new, t + h)
        rhs3 = f2 - self.e32 * (k2 - f1) - self.two * (k1 - f0)
        if dt_term is not None:
            rhs3 = rhs3 + (self.k3_T_coeff * h) * dt_term
        k3 = self._solve(w, rhs3)
        err = (h / self.six) * (k1 - self.two * k2 + k3)
        return Attempt(u_new=u_new, f_new=f2, err=err, stages=[f0, f1, f2])


def tsit5_dense_weights_lanes(theta: Any) -> list:
    """Tsit5's interpolation weights for an ``(N,)`` array of ``theta`` (one per trajectory).

    Same polynomials, coefficients (``TSIT5_DENSE``) and Horner order as
    ``solvers.tableaus.tsit5_dense_weights``, which serves scalar ``theta``; zero coefficients are
    skipped (adding 0 changes nothing).
    """
    weights = []
    for row in TSIT5_DENSE.r:
        # theta * (r1 + theta * (r2 + theta * (r3 + theta * r4))), innermost first
        acc = row[-1] * theta
        for c in reversed(row[:-1]):
            if c != 0.0:
                acc = c + acc
            acc = theta * acc
        weights.append(acc)
    return weights
