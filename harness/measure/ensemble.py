"""The harness's clock and accuracy for one ensemble from Python: ``benchmark_ensemble``.

::

    from harness import benchmark_ensemble
    row = benchmark_ensemble("lorenz", u0, p, backend="fused", rtol=1e-6, atol=1e-6, repeats=5)
    row["time_s"], row["max_rel_err"], row["status"]

It builds the solve exactly as ``solvers.api.solve_ensemble`` does (``make_spec``: any
per-trajectory u0 and p, a problem or a plain right-hand side), wraps it in a one-cell
``Cell`` and runs it through ``execute_cell``: the same prepare, first-call (compile) timing,
warm-ups, timed repeats, float64 reference of these very inputs, step and failure counts as a
suite's cell, in this process.
"""
from __future__ import annotations

import json
import statistics
from typing import Any, Sequence

from harness.measure.execute import Cell, execute_cell
from solvers.api import make_spec


def benchmark_ensemble(problem_or_rhs: Any, u0: Any = None, p: Any = None, tspan: Sequence[float] | None = None, *,
                       backend: str = "fused", repeats: int = 3, warmups: int = 1, timeout_s: float = 600.0,
                       **solve: Any) -> dict[str, Any]:
    """One results row (a dict of the results schema's columns) for an ensemble solve on ``backend``.

    ``solve``: ``solve_ensemble``'s keywords (method, dtype, dt, rtol, atol, saveat, device,
    threads, mode, name, stiff, variant, max_steps). ``time_s`` is the median of the timed
    repeats (every sample in ``time_samples``); a cell the backend cannot run comes back as one
    row with ``status`` "unsupported" or "unavailable" and the reason.
    """
    spec = make_spec(problem_or_rhs, u0, p, tspan, backend=backend, **solve)
    cell = Cell(backend=backend, spec=spec, repeats=repeats, warmups=warmups, timeout_s=timeout_s,
                count_launches=False)
    rows = execute_cell(cell, {"run_id": "python", "suite": "benchmark_ensemble"})
    row = dict(rows[0])
    timed = [r["time_s"] for r in rows if r["status"] == "ok"]
    if timed:
        row["time_s"] = statistics.median(timed)
        row["repeat"] = -1
    row["time_samples"] = timed
    row["settings"] = json.loads(row["settings"])
    return row
