"""The accuracy every "ok" cell must reach, in one place (used by ``harness check`` and the real-GPU
test), and the check of a results table against it.

Errors are global errors of the final state against the float64 reference (problems.reference),
so they exceed the per-step tolerance by the problem's amplification: Lorenz over [0, 1] turns a
local error of rtol into up to ~500 rtol (the committed CPU run: Tsit5 at rtol 1e-6 gives
max_rel_err 4.7e-4, at 1e-4 2.0e-2). The bounds leave a factor ~2 above what the committed runs
measured, so a wrong kernel (an error of order 1) fails and rounding does not.

* ``max_scaled_err`` (max |u - ref| / (atol + rtol |ref|), the accuracy helper's column) is used
  where a row has it: at most ``SCALED_BOUND`` tolerance units, or within the dtype's rounding
  floor in relative terms (a float32 solve at rtol 1e-8 cannot reach its tolerance);
* otherwise ``max_rel_err``: adaptive at most ``max(ROUNDING_FLOOR[dtype], REL_FACTOR * rtol)``,
  fixed step at most ``FIXED_BOUND[dtype]`` (Lorenz, dt = 1e-3: 1.0e-5 in float32);
* per-method overrides in ``METHOD_REL_FACTOR`` (none needed so far beyond the default).

Other kinds answer through their policy (problems.kinds): failures that are results, errors that
are results rather than bounded, or a bound of their own (SDEs: problems.sde_core.violation).
"""
from __future__ import annotations

import math
from typing import Any

from problems.kinds import kind_of

#: Relative error that rounding alone can reach after Lorenz's amplification (~1e3 x eps).
ROUNDING_FLOOR = {"float32": 5e-4, "float64": 1e-10}
#: Global error in units of rtol (adaptive) that an ok cell may reach.
REL_FACTOR = 1000.0
METHOD_REL_FACTOR: dict[str, float] = {}
#: Fixed-step relative error: rounding plus the truncation error at the protocol's dt.
FIXED_BOUND = {"float32": 1e-3, "float64": 1e-6}
#: max_scaled_err bound (tolerance units).
SCALED_BOUND = 1000.0


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def rel_bound(method: str, mode: str, dtype: str, rtol: float) -> float:
    """The largest max_rel_err an ok cell of this method, mode, dtype and rtol may have."""
    floor = ROUNDING_FLOOR.get(dtype, ROUNDING_FLOOR["float32"])
    if mode == "fixed" or not rtol > 0:
        return max(FIXED_BOUND.get(dtype, FIXED_BOUND["float32"]), floor)
    return max(floor, METHOD_REL_FACTOR.get(method, REL_FACTOR) * rtol)


def violation(row: dict[str, Any]) -> str | None:
    """Why an ok row fails its accuracy bound or reports failed trajectories, else None.
    A row without a measured error (reference missing: its reason says so) is not a violation."""
    kind = kind_of(row.get("problem"))
    failed = _f(row.get("failed_trajectories"))
    if failed > 0 and not kind.failures_are_results:
        return f"{int(failed)} failed trajectories"
    if not kind.accuracy_bounded:
        return None
    if kind.violation is not None:
        return kind.violation(row)
    rel, scaled = _f(row.get("max_rel_err")), _f(row.get("max_scaled_err"))
    dtype, mode, method = str(row.get("dtype")), str(row.get("mode")), str(row.get("method"))
    floor = ROUNDING_FLOOR.get(dtype, ROUNDING_FLOOR["float32"])
    if not math.isnan(scaled) and mode == "adaptive":
        if scaled <= SCALED_BOUND or rel <= floor:
            return None
        return f"max_scaled_err {scaled:.3g} > {SCALED_BOUND:g} (max_rel_err {rel:.3g})"
    if math.isnan(rel):
        return None
    bound = rel_bound(method, mode, dtype, _f(row.get("rtol")))
    if rel <= bound:
        return None
    return f"max_rel_err {rel:.3g} > bound {bound:.3g}"


def accuracy_violations(df) -> list[str]:
    """One line per ok row of the results table ``df`` that violates its bound: every repeat,
    since each repeat row carries its own copy of the cell's errors and any may be edited."""
    ok = df[df["status"] == "ok"]
    out = []
    for row in ok.to_dict("records"):
        why = violation(row)
        if why:
            out.append(f"{row['problem']} {row['backend']}{'[' + str(row['variant']) + ']' if row.get('variant') else ''} "
                       f"{row['method']} {row['mode']} {row['dtype']} N={row['n']} repeat {row['repeat']}: "
                       f"accuracy: {why}")
    return out
