"""A slow, obviously-correct stepper for the tests: one trajectory at a time, plain loops.

It follows the fused kernel's per-trajectory loop (``solvers.fused.codegen``; DiffEqGPU's PI
controller as ``solvers.tableaus.PIController`` documents it) literally, in NumPy scalars of the
solve's dtype, with the tableaus taken from ``solvers.tableaus``. The array backend must
reproduce its step sequence; it shares no code with the backend beyond the tableaus and the
problem definition.
"""
from __future__ import annotations

import math

import numpy as np

from problems import derive
from problems.core import Problem
from solvers.base import Status
from solvers.tableaus import ROSENBROCK23, SNAP_ULPS, ExplicitRK, PIController, pi_step_factor


def _scaled_sum(base, coefficients, vectors, h, n):
    """Per component: base_i + h * (c_1*v_1i + c_2*v_2i + ...), the sum left to right, zero
    coefficients skipped (DiffEqGPU's order)."""
    out = []
    for i in range(n):
        acc = None
        for c, v in zip(coefficients, vectors):
            if c == 0.0:
                continue
            term = v[i] if c == 1.0 else c * v[i]
            acc = term if acc is None else acc + term
        if acc is None:
            out.append(base[i])
            continue
        out.append(h * acc if base is None else base[i] + h * acc)
    return out


def _time(t, h, c):
    return t if c == 0.0 else (t + h if c == 1.0 else t + h * c)


def _stages(f, tab, u, k1, t, h, p, typed, count):
    n = len(u)
    a = [[typed(x) for x in row] for row in tab.a]
    ks = [k1]
    for i in range(1, count):
        stage = _scaled_sum(u, a[i], ks, h, n)
        ks.append([typed(x) for x in f(stage, p, _time(t, h, typed(tab.c[i])))])
    return ks


def fixed_solve(problem: Problem, tab: ExplicitRK, u0, p, dt: float, n_steps: int, dtype: str):
    """``n_steps`` steps of ``dt`` (``t_i = t0 + i*dt``) for one trajectory; returns u_final.

    An FSAL tableau skips its last stage (it only feeds the error estimate).
    """
    typed = np.dtype(dtype).type
    f = problem.rhs_for(math)
    u = [typed(x) for x in u0]
    p = [typed(x) for x in p]
    h, t0 = typed(dt), typed(problem.tspan[0])
    count = tab.stages - 1 if tab.fsal else tab.stages
    b = [typed(x) for x in tab.b[:count]]
    for i in range(n_steps):
        t = t0 + typed(i) * h
        ks = _stages(f, tab, u, [typed(x) for x in f(u, p, t)], t, h, p, typed, count)
        u = _scaled_sum(u, b, ks, h, len(u))
    return np.array(u)


def _norm(err, u_prev, u_new, rtol, atol):
    acc = None
    for e, a, b in zip(err, u_prev, u_new):
        x = e / (atol + max(abs(a), abs(b)) * rtol)
        acc = x * x if acc is None else acc + x * x
    return np.sqrt(acc / len(err))


def tsit5_like_step(tab: ExplicitRK):
    """An adaptive attempt for an FSAL embedded pair: ``(u_new, f(u_new), err)``."""

    def step(f, u, f0, t, h, p, typed):
        n, s = len(u), tab.stages
        ks = _stages(f, tab, u, f0, t, h, p, typed, s - 1)
        u_new = _scaled_sum(u, [typed(x) for x in tab.b[:s - 1]], ks, h, n)
        ks.append([typed(x) for x in f(u_new, p, _time(t, h, typed(tab.c[s - 1])))])
        err = _scaled_sum(None, [typed(x) for x in tab.btilde], ks, h, n)
        return u_new, ks[-1], err

    return step


def rosenbrock23_step(problem: Problem):
    """An adaptive Rosenbrock23 attempt (float64; one 3x3 LAPACK solve per stage)."""
    jac, tgrad = derive.derivatives(problem).functions(math, float)
    k = ROSENBROCK23
    n = problem.n_states

    def step(f, u, f0, t, h, p, typed):
        J = np.array(jac(u, p, t), dtype=np.float64)
        T = np.array(tgrad(u, p, t), dtype=np.float64)
        hd = h * k.d
        W = np.eye(n) - hd * J
        f0 = np.array(f0)
        k1 = np.linalg.solve(W, f0 + hd * T)
        hh = h * 0.5
        f1 = np.array(f(list(np.array(u) + hh * k1), p, t + hh), dtype=np.float64)
        k2 = np.linalg.solve(W, f1 - k1) + k1
        u_new = np.array(u) + h * k2
        f2 = np.array(f(list(u_new), p, t + h), dtype=np.float64)
        k3 = np.linalg.solve(W, f2 - k.e32 * (k2 - f1) - 2 * (k1 - f0) + k.k3_T_coeff * h * T)
        err = (h / 6) * (k1 - 2 * k2 + k3)
        return list(u_new), list(f2), list(err)

    return step


def adaptive_solve(problem: Problem, step, u0, p, dt0: float, rtol: float, atol: float,
                   ctrl: PIController, dtype: str, max_steps: int = 100_000):
    """The fused kernel's per-trajectory adaptive loop for one trajectory.

    ``step(f, u, f0, t, h, p, typed) -> (u_new, f_new, err)``. Returns
    ``(u_final, accepted, rejected, status)``.
    """
    typed = np.dtype(dtype).type
    f = problem.rhs_for(math)
    u = [typed(x) for x in u0]
    p = [typed(x) for x in p]
    t, tf = typed(problem.tspan[0]), typed(problem.tspan[1])
    dt = typed(dt0)
    rtol, atol = typed(rtol), typed(atol)
    beta1, beta2 = typed(ctrl.beta1), typed(ctrl.beta2)
    inv_qmin, inv_qmax = typed(1 / ctrl.qmin), typed(1 / ctrl.qmax)
    gamma, qold, qold_init = typed(ctrl.gamma), typed(ctrl.qold_init), typed(ctrl.qold_init)
    dtmin = typed(ctrl.dtmin)
    snap = typed(SNAP_ULPS * np.finfo(dtype).eps)
    f0 = [typed(x) for x in f(u, p, t)]
    accepted = rejected = 0
    status = Status.SUCCESS
    while t < tf:
        if accepted + rejected >= max_steps:
            status = Status.MAX_STEPS
            break
        remaining = tf - t
        last = dt >= remaining - snap * abs(tf)   # a step a few ulps short lands on tf
        h = remaining if last else dt
        if not last and (h < dtmin or t + h == t):
            status = Status.DT_UNDERFLOW
            break
        u_new, f_new, err = step(f, u, f0, t, h, p, typed)
        eest = _norm(err, u, u_new, rtol, atol)
        if not (np.isfinite(eest) and all(np.isfinite(x) for x in u_new)):
            u, status = u_new, Status.NONFINITE
            rejected += 1
            break
        q11 = eest ** beta1
        if eest > 1:
            dt = h / min(inv_qmin, q11 / gamma)
            rejected += 1
            continue
        q = inv_qmax if eest == 0 else q11 / qold ** beta2
        q = max(inv_qmax, min(inv_qmin, q / gamma))
        qold = max(eest, qold_init)
        t = tf if last else t + h
        dt = max(h / q, dt) if h < dt else h / q   # a clipped step: from the proposed one
        u, f0 = u_new, f_new
        accepted += 1
    return np.array(u), accepted, rejected, status


def shared_adaptive_solve(problem: Problem, step, u0s, ps, dt0: float, rtol: float, atol: float,
                          ctrl: PIController, max_steps: int = 100_000):
    """The whole ensemble as ONE system (float64): every trajectory steps with the same ``dt``,
    the error norm is the RMS over all states of all trajectories, and the controller is
    ``pi_step_factor``. Returns ``(u_finals (N, n), accepted, rejected)``.
    """
    f = problem.rhs_for(math)
    us = [[float(x) for x in u0] for u0 in u0s]
    ps = [[float(x) for x in p] for p in ps]
    t, tf = float(problem.tspan[0]), float(problem.tspan[1])
    dt, qold = float(dt0), ctrl.qold_init
    f0s = [list(f(u, p, t)) for u, p in zip(us, ps)]
    accepted = rejected = 0
    while t < tf and accepted + rejected < max_steps:
        remaining = tf - t
        last = dt >= remaining - SNAP_ULPS * np.finfo(float).eps * abs(tf)
        h = remaining if last else dt
        trials = [step(f, u, f0, t, h, p, float) for u, f0, p in zip(us, f0s, ps)]
        terms = [e / (atol + max(abs(a), abs(b)) * rtol)
                 for u, (u_new, _, err) in zip(us, trials) for e, a, b in zip(err, u, u_new)]
        eest = math.sqrt(sum(x * x for x in terms) / len(terms))
        factor, qold_new, accept = pi_step_factor(eest, qold, ctrl)
        dt = max(h * factor, dt) if accept and h < dt else h * factor
        if not accept:
            rejected += 1
            continue
        t = tf if last else t + h
        qold = qold_new
        us = [list(u_new) for u_new, _, _ in trials]
        f0s = [list(f_new) for _, f_new, _ in trials]
        accepted += 1
    return np.array(us), accepted, rejected
