"""Small helpers shared by the hand-written backends' tests."""
from __future__ import annotations

import functools
import math

import numpy as np

from problems.registry import get_problem
from solvers.base import SolveResult, SolveSpec
from solvers.registry import get_backend
from solvers.tableaus import get_tableau
from solvers.handwritten.tests import pystepper

#: (backend name, variant) pairs that run on this CPU machine (pallas in interpret mode).
CPU_BACKENDS = [("jax-handwritten", ""), ("jax-handwritten", "soa"), ("torch-handwritten", ""),
                ("pallas", "")]
NONSTIFF = ("lorenz", "sir")


def solve(backend: str, spec: SolveSpec, runs: int = 1) -> SolveResult:
    """prepare / run / sync / fetch / close, as the runner does; ``runs`` > 1 repeats run+sync
    (the runner's compile call and timed calls) and fetches the last."""
    prep = get_backend(backend).prepare(spec)
    try:
        for _ in range(runs):
            out = prep.run()
            prep.sync(out)
        return prep.fetch(out)
    finally:
        prep.close()


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max over trajectories of ||a_i - b_i||_inf / ||b_i||_inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.maximum(np.max(np.abs(b), axis=1), 1e-300)
    return float(np.max(np.max(np.abs(a - b), axis=1) / scale))


@functools.lru_cache(maxsize=None)
def python_reference(problem: str, mode: str, n: int, method: str = "tsit5", dt: float | None = None,
                     rtol: float | None = None, atol: float | None = None):
    """The pure-Python float64 stepper on the float64 ensemble of ``problem``.

    Returns ``(u_final (n, n_states), accepted (n,), rejected (n,))``.
    """
    spec = SolveSpec(problem, method, mode, "float64", n=n, dt=dt, rtol=rtol, atol=atol)
    prob = get_problem(problem)
    f = prob.rhs_for(math)
    tab = get_tableau(method)
    u0, p = spec.ensemble()
    t0, t1 = prob.tspan
    finals, acc, rej = [], [], []
    for i in range(n):
        pi = tuple(float(x) for x in p[i])
        if mode == "fixed":
            finals.append(pystepper.fixed_solve(f, u0[i], pi, t0, spec.step, spec.n_steps, tab))
            acc.append(spec.n_steps)
            rej.append(0)
        else:
            rt, at = spec.tol
            u, a, r = pystepper.adaptive_solve(f, u0[i], pi, t0, t1, spec.step, rt, at, tab)
            finals.append(u)
            acc.append(a)
            rej.append(r)
    return np.array(finals), np.array(acc), np.array(rej)
