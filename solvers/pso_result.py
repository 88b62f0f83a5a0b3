"""A particle swarm's outcome as a SolveResult: shared by every backend that serves the "pso" kind
(backends do not import each other)."""
from __future__ import annotations

from typing import Any

import numpy as np

from problems.pso_core import GENERATOR
from solvers.base import SolveResult, Status


def pso_result(best: np.ndarray, cost: float, iters: int, spec: Any, notes: dict):
    """A swarm's result in SolveResult form: u_final = the best position (1, dim), status of the
    swarm, accepted = iterations, rhs_evals = objective evaluations per particle."""
    ok = np.isfinite(cost) and np.isfinite(best).all()
    return SolveResult(u_final=np.asarray(best, dtype=spec.dtype).reshape(1, -1),
                       status=np.array([int(Status.SUCCESS if ok else Status.NONFINITE)]),
                       accepted=np.array([iters]), rejected=np.array([0]), rhs_evals=np.array([iters + 1]),
                       notes={**notes, "best_cost": cost, "random_stream": GENERATOR, "seed": spec.seed,
                              "iterations": iters})
