"""Shared pieces of the fused-kernel tests: solves cached per test session.

Numba compilation dominates these tests, so every kernel a test needs is compiled once per
session (results are cached by their arguments) and Numba's disk cache makes later sessions
fast.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from problems import derive
from problems.registry import get_problem
from solvers.base import SolveResult, SolveSpec
from solvers.fused.backend import FusedBackend
from solvers.fused.build import KernelOutputs, make_inputs, run_cpu
from solvers.fused.codegen import KernelKey

BACKEND = FusedBackend()


@functools.lru_cache(maxsize=None)
def solve(problem: str, method: str, mode: str, dtype: str, n: int, variant: str = "",
          saveat: tuple | None = None, **kw) -> SolveResult:
    """One ensemble solve through the backend's Prepared lifecycle (run twice: the second
    run must reproduce the first, as the timed runs of the harness do)."""
    spec = SolveSpec(problem=problem, method=method, mode=mode, dtype=dtype, n=n, variant=variant,
                     saveat=saveat, **kw)
    prep = BACKEND.prepare(spec)
    first = prep.fetch(prep.run())
    out = prep.run()
    prep.sync(out)
    res = prep.fetch(out)
    prep.close()
    np.testing.assert_array_equal(first.u_final, res.u_final)
    return res


def run_kernel(problem: str, method: str, mode: str, dtype: str, u0: np.ndarray, p: np.ndarray,
               variant: str = "lanes", tspan=None, fastmath=("contract",), **kw) -> KernelOutputs:
    """Run a generated CPU kernel on explicit inputs (for cases the backend does not expose:
    fixed-step Rosenbrock, hand-made blow-ups)."""
    prob = get_problem(problem)
    key = KernelKey(problem, method, mode, dtype, fastmath=fastmath)
    inputs = make_inputs(u0, p, tspan or prob.tspan, dtype, mode=mode, **kw)
    return run_cpu(key, inputs, variant)


def python_rk_adaptive(f, tab, ctrl, u0, p, t0, tf, dt0, rtol, atol):
    """A slow, plain-Python adaptive explicit RK with DiffEqGPU's controller, written from the
    tableau and ``pi_step_factor`` alone (independent of the generated kernels).

    Step convention as the kernels: the step is clipped to the end time, the final
    accepted step lands exactly on ``tf``. Returns (u, accepted, rejected)."""
    from solvers.tableaus import pi_step_factor, scaled_rms_norm

    n = len(u0)
    u, t, dt, qold = [float(x) for x in u0], float(t0), float(dt0), ctrl.qold_init
    acc = rej = 0
    k1 = f(tuple(u), p, t)
    while t < tf:
        last = dt >= tf - t
        h = tf - t if last else dt
        ks = [k1]
        for i in range(1, tab.stages):
            arg = [u[s] + h * sum(tab.a[i][j] * ks[j][s] for j in range(i)) for s in range(n)]
            ks.append(f(tuple(arg), p, t + tab.c[i] * h))
        un = [u[s] + h * sum(tab.b[j] * ks[j][s] for j in range(tab.stages)) for s in range(n)]
        err = [h * sum(tab.btilde[j] * ks[j][s] for j in range(tab.stages)) for s in range(n)]
        factor, qnew, accept = pi_step_factor(scaled_rms_norm(err, u, un, atol, rtol), qold, ctrl)
        if accept:
            t, u, k1, qold, acc = (tf if last else t + h), un, ks[-1], qnew, acc + 1
        else:
            rej += 1
        dt = h * factor
    return u, acc, rej


def python_rodas_adaptive(problem, tab, ctrl, u0, p, t0, tf, dt0, rtol, atol):
    """Plain-Python Rosenbrock (``solvers.tableaus.Rosenbrock``'s docstring, NumPy solves)
    with DiffEqGPU's controller. Returns (u, accepted, rejected)."""
    from solvers.tableaus import pi_step_factor, scaled_rms_norm

    f = problem.rhs_for(math)
    jac, tgrad = derive.derivatives(problem).functions(math, float)
    u, t, dt, qold = np.asarray(u0, dtype=float), float(t0), float(dt0), ctrl.qold_init
    acc = rej = 0
    n = len(u)
    while t < tf:
        last = dt >= tf - t
        h = tf - t if last else dt
        J = np.array(jac(tuple(u), p, t), dtype=float)
        T = np.array(tgrad(tuple(u), p, t), dtype=float)
        W = np.eye(n) / (h * tab.gamma) - J
        ks = []
        for i in range(tab.stages):
            U = u + sum(tab.a[i][j] * ks[j] for j in range(i))
            F = np.array(f(tuple(U), p, t + tab.c[i] * h))
            rhs = F + h * tab.d[i] * T + sum(tab.C[i][j] / h * ks[j] for j in range(i))
            ks.append(np.linalg.solve(W, rhs))
        un = u + sum(b * k for b, k in zip(tab.b, ks))
        err = sum(e * k for e, k in zip(tab.btilde, ks))
        factor, qnew, accept = pi_step_factor(scaled_rms_norm(err, u, un, atol, rtol), qold, ctrl)
        if accept:
            t, u, qold, acc = (tf if last else t + h), un, qnew, acc + 1
        else:
            rej += 1
        dt = h * factor
    return u, acc, rej
