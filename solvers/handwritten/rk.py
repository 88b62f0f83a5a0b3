"""One explicit Runge-Kutta step and one PI-controlled adaptive attempt, written once.

The arithmetic here runs unchanged on JAX arrays (traced scalars under ``vmap``, (N,) arrays in
structure-of-arrays form, (B,) blocks inside a Pallas kernel) and on torch tensors, because it
uses only ``+ - * /`` on tuples of arrays plus the handful of array functions in an ``ops``
object the caller supplies (``where``, ``abs``, ``sqrt``, ...; see ``solvers.handwritten.ops``).

A state is a tuple with one entry per ODE component, as ``problem.rhs_for(namespace)`` takes and
returns it. Every number (tableau entries, controller constants, tolerances, time span) comes
from :class:`StepConstants`, built from ``solvers.tableaus`` and rounded to the solve's dtype,
so a float32 solve computes in float32 only (Python floats are "weak" in JAX and torch: they
take the array's dtype, and rounding them first makes that conversion exact).

The adaptive attempt reproduces DiffEqGPU.jl's ``EnsembleGPUKernel`` Tsit5 loop (the
executable specification is ``solvers.tableaus.pi_step_factor`` / ``PIController``)::

    EEst  = RMS_i( err_i / (atol + max(|u_prev_i|, |u_new_i|) * rtol) )
    accept if EEst <= 1 (then qold = max(EEst, qold_init), dt_new = dt / clamp(q / gamma),
    dt_new = min(|dt_new|, |t1 - t - dt|), t = t1 if t1 - t - dt < 1e-14 else t + dt);
    reject otherwise (dt = dt / min(1/qmin, EEst^beta1 / gamma)).

computed as every implementation of this project computes it (issue 29): on the squared norm
``ssq = n EEst^2`` (``solvers.tableaus.error_scales`` / ``scaled_ssq``), accepted when
``ssq <= n``, the step factors from one log and one exp (``pi_control_squared``), the
controller memory carried as ``lm = log(n qold^2)``.

Two deliberate differences from DiffEqGPU, both invisible on a healthy solve: the first step is
``min(dt0, t1 - t0)`` (never past t1), and a NaN error estimate or a non-finite accepted state
ends the trajectory with status NONFINITE (DiffEqGPU accepts the NaN and carries on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from solvers.base import SolveSpec, Status
from solvers.tableaus import (
    ExplicitRK, SquaredPI, error_scales, get_controller, get_tableau, pi_control_squared, rk_update, scaled_ssq,
)

#: DiffEqGPU's end-of-span test: a step that leaves less than this lands exactly on t1.
END_TOLERANCE = 1e-14


def _round(x: float, dtype: np.dtype) -> float:
    """``x`` rounded to ``dtype``, as a Python float (exact in every later conversion)."""
    return float(np.asarray(x, dtype=np.float64).astype(dtype))


@dataclass(frozen=True)
class StepConstants:
    """Everything numeric one solve uses, rounded to its dtype (Python floats).

    Attributes:
        dtype: "float32" or "float64".
        method: tableau name; tableau rows ``c``, ``a``, ``b``, ``btilde`` as in ``ExplicitRK``.
        fsal: first-same-as-last (the last stage is ``f`` at the new state).
        t0, t1: the time span.
        dt: fixed step (fixed mode) or the first step ``min(dt0, t1 - t0)`` (adaptive).
        n_steps: fixed mode's exact number of steps (0 in adaptive mode).
        rtol, atol: tolerances (adaptive).
        beta1, beta2, inv_qmin, inv_qmax, gamma, qold_init, dtmin: PI controller, as DiffEqGPU
            computes them in the state dtype (``inv_qmin = 1/qmin`` rounded once, etc.).
        end_tol: DiffEqGPU's 1e-14 end-of-span test (see ``END_TOLERANCE``).
        max_steps: per-trajectory cap on accepted + rejected attempts.
    """

    dtype: str
    method: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    btilde: tuple[float, ...] | None
    fsal: bool
    t0: float
    t1: float
    dt: float
    n_steps: int
    rtol: float
    atol: float
    beta1: float
    beta2: float
    inv_qmin: float
    inv_qmax: float
    gamma: float
    qold_init: float
    dtmin: float
    end_tol: float
    max_steps: int
    #: The state is one block (a 1-tuple of an array with the states on axis 0) evaluated by the
    #: problem's vectorised form (``Problem.rhs_array``), not a tuple of components.
    blocked: bool = False
    n_states: int = 0
    #: ``solvers.tableaus.SquaredPI.constants()`` for this problem's n, rounded to the dtype.
    pi: tuple[tuple[str, float], ...] = ()

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def evals_per_fixed_step(self) -> int:
        """New right-hand side evaluations per fixed step (an FSAL method skips its last stage)."""
        return self.stages - 1 if self.fsal else self.stages

    @property
    def evals_per_attempt(self) -> int:
        """New evaluations per adaptive attempt (the first stage is the previous last one)."""
        return self.stages - 1


def step_constants(spec: SolveSpec) -> StepConstants:
    """The constants of ``spec`` (method, mode, dtype, dt, tolerances, controller) in its dtype."""
    tab = get_tableau(spec.method)
    if not isinstance(tab, ExplicitRK):
        raise ValueError(f"method {spec.method!r} is not an explicit Runge-Kutta method")
    dt = np.dtype(spec.dtype).type
    r = lambda x: _round(x, spec.np_dtype)  # noqa: E731
    t0, t1 = (dt(v) for v in spec.prob.tspan)
    ctrl = get_controller(spec.controller, tab.order)
    rtol, atol = spec.tol
    if spec.mode == "fixed":
        step, n_steps = dt(spec.step), spec.n_steps
    else:
        step, n_steps = min(dt(spec.step), dt(t1 - t0)), 0
    return StepConstants(
        dtype=spec.dtype, method=tab.name,
        c=tuple(map(r, tab.c)), a=tuple(tuple(map(r, row)) for row in tab.a), b=tuple(map(r, tab.b)),
        btilde=None if tab.btilde is None else tuple(map(r, tab.btilde)), fsal=tab.fsal,
        t0=float(t0), t1=float(t1), dt=float(step), n_steps=n_steps,
        rtol=r(rtol), atol=r(atol),
        beta1=r(ctrl.beta1), beta2=r(ctrl.beta2),
        inv_qmin=float(dt(1) / dt(ctrl.qmin)), inv_qmax=float(dt(1) / dt(ctrl.qmax)),
        gamma=r(ctrl.gamma), qold_init=r(ctrl.qold_init), dtmin=r(ctrl.dtmin),
        end_tol=r(END_TOLERANCE), max_steps=spec.max_steps,
        blocked=spec.prob.rhs_array is not None, n_states=spec.prob.n_states,
        pi=tuple((k, r(v)) for k, v in SquaredPI.of(ctrl, spec.prob.n_states).constants().items()),
    )


def state_rhs(spec: SolveSpec, namespace: Any) -> Callable:
    """The right-hand side on this module's states: ``problem.rhs_for(namespace)`` on tuples of
    components, or, for a problem with a vectorised form, ``rhs_array`` on a 1-tuple block."""
    prob = spec.prob
    if prob.rhs_array is None:
        return prob.rhs_for(namespace)
    fa = prob.rhs_array_for(namespace)
    return lambda u, p, t: (fa(u[0], p, t),)


def _over_states(x: Any, K: StepConstants, reduce: str) -> Any:
    """A lane-shaped value from a per-state one: a block's axis 0 is reduced (sum / any)."""
    return getattr(x, reduce)(0) if K.blocked else x


# ---- tuple arithmetic ------------------------------------------------------------------------

def update(u: tuple | None, h: Any, coeffs: tuple[float, ...], vectors: list[tuple]) -> tuple:
    """Per component, ``solvers.tableaus.rk_update``: ``u + h*(sum_j coeffs[j] * vectors[j])``
    (DiffEqGPU's order; ``u`` None: the error estimate ``h*(sum ...)``)."""
    return tuple(rk_update(None if u is None else u[c], h, coeffs, [v[c] for v in vectors])
                 for c in range(len(vectors[0])))


def stages(f: Callable, u: tuple, p: tuple, t: Any, h: Any, k1: tuple, K: StepConstants,
           count: int) -> list[tuple]:
    """The first ``count`` stage derivatives ``k_1..k_count`` of a step from ``(t, u)``.

    ``k1 = f(u, p, t)`` is given (FSAL reuse or computed by the caller).
    """
    ks = [k1]
    for i in range(1, count):
        arg = update(u, h, K.a[i], ks)
        ks.append(tuple(f(arg, p, t + K.c[i] * h)))
    return ks


def fixed_step(f: Callable, u: tuple, p: tuple, t: Any, h: Any, K: StepConstants) -> tuple:
    """One step of size ``h`` from ``(t, u)``: ``u + h sum_i b_i k_i``.

    An FSAL tableau's last stage is only needed for its error estimate, so it is skipped
    (``K.evals_per_fixed_step`` evaluations); ``u_new`` is the argument of that stage.
    """
    k1 = tuple(f(u, p, t))
    if K.fsal:
        ks = stages(f, u, p, t, h, k1, K, K.stages - 1)
        return update(u, h, K.a[-1], ks)
    ks = stages(f, u, p, t, h, k1, K, K.stages)
    return update(u, h, K.b, ks)


# ---- adaptive attempt ------------------------------------------------------------------------

class AdaptiveState(NamedTuple):
    """Per-trajectory loop state (every field has the lane shape; ``u``, ``k1`` are tuples).

    t, dt: current time and the step to try next; u: state at t; k1: f(u, p, t) (FSAL);
    qold: controller memory (``lm = log(n qold^2)``, see ``pi_control_squared``); accepted, rejected: attempt counts (int32); status: a
    ``solvers.base.Status`` code (int32); active: still integrating (bool).
    """

    t: Any
    dt: Any
    u: tuple
    k1: tuple
    qold: Any
    accepted: Any
    rejected: Any
    status: Any
    active: Any


def initial_state(f: Callable, u0: tuple, p: tuple, K: StepConstants, ops: Any) -> AdaptiveState:
    """The loop state at t0: one evaluation of ``f`` for the first stage."""
    like = u0[0][0] if K.blocked else u0[0]   # one lane-shaped value
    t = ops.full_like(like, K.t0)
    return AdaptiveState(
        t=t, dt=ops.full_like(like, K.dt), u=tuple(u0), k1=tuple(f(u0, p, t)),
        qold=ops.full_like(like, dict(K.pi)["LM_INIT"]),
        accepted=ops.int_full_like(like, 0), rejected=ops.int_full_like(like, 0),
        status=ops.int_full_like(like, int(Status.SUCCESS)), active=ops.bool_full_like(like, True),
    )


class _Scalars:
    """``ops`` as ``solvers.tableaus.pi_control_squared`` calls them, with Python floats allowed
    on either side of ``minimum``/``maximum``/``where`` (torch's need tensors)."""

    def __init__(self, ops: Any) -> None:
        self.ops = ops
        self.log, self.exp, self.abs = ops.log, ops.exp, ops.abs

    def minimum(self, a: Any, b: Any) -> Any:
        if isinstance(a, float):
            return self.ops.min_scalar(b, a)
        return self.ops.min_scalar(a, b) if isinstance(b, float) else self.ops.minimum(a, b)

    def maximum(self, a: Any, b: Any) -> Any:
        if isinstance(a, float):
            return self.ops.max_scalar(b, a)
        return self.ops.max_scalar(a, b) if isinstance(b, float) else self.ops.maximum(a, b)

    def where(self, c: Any, a: Any, b: Any) -> Any:
        if isinstance(a, float):
            a = self.ops.full_like(b, a)
        if isinstance(b, float):
            b = self.ops.full_like(a, b)
        return self.ops.where(c, a, b)

    @staticmethod
    def le(a: Any, b: Any) -> Any:
        return a <= b

    @staticmethod
    def eq(a: Any, b: Any) -> Any:
        return a == b


def _select(ops: Any, mask: Any, new: Any, old: Any) -> Any:
    if isinstance(new, tuple):
        return tuple(ops.where(mask, a, b) for a, b in zip(new, old))
    return ops.where(mask, new, old)


def adaptive_attempt(f: Callable, p: tuple, s: AdaptiveState, K: StepConstants, ops: Any
                     ) -> AdaptiveState:
    """One attempted step on every lane; lanes that are not ``active`` keep their state.

    The lanes' work is done everywhere (array style) and the results are selected by masks:
    this is what ``vmap`` of a per-trajectory ``while_loop`` does as well.
    """
    t, h, u = s.t, s.dt, s.u
    underflow = s.active & (h < K.dtmin)          # DiffEqGPU: "dt<dtmin" before each attempt
    trying = s.active & ~underflow

    ks = stages(f, u, p, t, h, s.k1, K, K.stages - 1)
    u_new = update(u, h, K.a[-1], ks)
    k_last = tuple(f(u_new, p, t + K.c[-1] * h))
    err = update(None, h, K.btilde, ks + [k_last])

    if K.blocked:  # one array, states on axis 0: one division per component, summed over axis 0
        (e,), (a,), (b,) = err, u, u_new
        r = e / (K.atol + ops.maximum(ops.abs(a), ops.abs(b)) * K.rtol)
        ssq = _over_states(r * r, K, "sum")
    else:
        ssq = scaled_ssq(err, error_scales(u, u_new, K.atol, K.rtol, ops), 1.0)
    c = dict(K.pi)
    dt_accept, dt_reject, lm_accept = pi_control_squared(ssq, s.qold, h, c, _Scalars(ops))
    accept = ssq <= c["NSTATES"]
    # Accept: never step past t1, land exactly on t1 at the end.
    remaining = (K.t1 - t) - h
    dt_accept = ops.minimum(ops.abs(dt_accept), ops.abs(remaining))
    t_accept = ops.where(remaining < K.end_tol, ops.full_like(t, K.t1), t + h)

    u_bad = _over_states(~ops.isfinite(u_new[0]), K, "any")
    for x in u_new[1:]:
        u_bad = u_bad | ~ops.isfinite(x)
    nonfinite = trying & (ops.isnan(ssq) | (accept & u_bad))
    take = trying & accept & ~nonfinite
    shrink = trying & ~accept & ~nonfinite

    accepted = ops.where(take, s.accepted + 1, s.accepted)
    rejected = ops.where(trying & ~take, s.rejected + 1, s.rejected)
    finished = take & ~(t_accept < K.t1)
    out_of_steps = trying & ~finished & ~nonfinite & (accepted + rejected >= K.max_steps)

    status = ops.where(underflow, int(Status.DT_UNDERFLOW), s.status)
    status = ops.where(nonfinite, int(Status.NONFINITE), status)
    status = ops.where(out_of_steps, int(Status.MAX_STEPS), status)
    return AdaptiveState(
        t=ops.where(take, t_accept, t),
        dt=ops.where(take, dt_accept, ops.where(shrink, dt_reject, h)),
        u=_select(ops, take | nonfinite, u_new, u),   # a NONFINITE lane shows its bad state
        k1=_select(ops, take, k_last, s.k1),
        qold=ops.where(take, lm_accept, s.qold),
        accepted=accepted, rejected=rejected, status=status,
        active=s.active & ~underflow & ~nonfinite & ~finished & ~out_of_steps,
    )
