"""A forced, stiff, non-autonomous problem with a closed-form solution (float64).

Prothero & Robinson's test equation ``y' = -lam (y - g(t)) + g'(t)``, made two-dimensional so
the Jacobian has off-diagonal entries and the stiff solvers' linear solves are exercised::

    e = u - g(t),  g(t) = (sin(w t), cos(w t)),
    u' = A e + g'(t),  A = [[-lam, c], [-c, -lam]]

Its solution is ``u(t) = g(t) + exp(-lam t) R(c t) e(0)`` (``R`` a rotation; see
``exact_solution``): a fast transient of rate ``lam`` that decays onto the forcing. The right-
hand side depends on ``t`` explicitly, so ``df/dt != 0`` and the Rosenbrock methods' time-
derivative terms (Rodas ``h d_i T``, Rosenbrock23 ``h d T`` and the ``k3`` term) are generated
and exercised; the other problems of the zoo are autonomous. The sweep runs ``lam`` from
mildly (1) to strongly (1e4) stiff.
"""
import math

import numpy as np

from problems.core import Problem, Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)


def prothero_robinson_rhs(u, p, t):
    y1, y2 = u
    lam, c, w = p
    g1 = m.sin(w * t)
    g2 = m.cos(w * t)
    e1 = y1 - g1
    e2 = y2 - g2
    return (-lam * e1 + c * e2 + w * g2, -c * e1 - lam * e2 - w * g1)


PROTHERO_ROBINSON = Problem(
    name="prothero_robinson",
    rhs=prothero_robinson_rhs,
    state_names=("y1", "y2"),
    param_names=("lam", "c", "w"),
    u0=(1.0, 0.0),
    params=(100.0, 2.0, 1.0),
    tspan=(0.0, 10.0),
    sweep=Sweep("lam", 1.0, 1e4),
    stiff=True,
    default_dtype="float64",
    dt=None,          # no fixed-step protocol (tests pick their own steps)
    dt0=1e-3,
    rtol=1e-8,
    atol=1e-8,
    citation=("Prothero & Robinson (1974), Math. Comp. 28(125):145-162; two-dimensional "
              "variant with a rotation coupling c, forcing (sin wt, cos wt)"),
    description="lam = linspace(1, 1e4, N), c = 2, w = 1, u0 = (1, 0), t in [0, 10]",
)


def exact_solution(u0, p, t: float) -> np.ndarray:
    """The closed-form state at time ``t`` for initial state ``u0`` at t = 0 and parameters
    ``p = (lam, c, w)`` (float64)."""
    lam, c, w = (float(x) for x in p)
    e1, e2 = float(u0[0]), float(u0[1]) - 1.0   # e(0) = u0 - g(0), g(0) = (0, 1)
    decay = math.exp(-lam * t)
    co, si = math.cos(c * t), math.sin(c * t)
    return np.array([math.sin(w * t) + decay * (co * e1 + si * e2),
                     math.cos(w * t) + decay * (-si * e1 + co * e2)])
