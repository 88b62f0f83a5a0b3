"""A fitted time model per backend: time ≈ launches × launch_cost + trajectory_steps × step_cost.

The physical picture behind it (told for readers in the report's explainer section,
harness/report/sections/explainer.py): an array-style solver pays a fixed cost per
kernel launch and moves about a kilobyte per trajectory-step; a fused kernel launches once and
is bound by arithmetic. In a results table, bytes moved (bytes / bandwidth) and arithmetic
(work / peak) are both proportional to N × steps, so from times alone they cannot be told
apart: the model fits their sum as one cost per trajectory-step. The two coefficients are
fitted per series by non-negative least squares on relative residuals (so the 8-trajectory
points weigh as much as the 8-million ones). It is a fitted description, not a measurement of
launch cost or bandwidth.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls

#: Step-control scopes in which every lane runs as many steps as the slowest trajectory.
LOCKSTEP_SCOPES = ("lockstep", "shared")

#: Columns of :func:`fit_time_model`'s per-point table.
POINT_COLUMNS = ("n", "launches", "trajectory_steps", "time_s", "predicted_s", "launch_term_s",
                 "step_term_s")


def trajectory_steps(n: pd.Series, steps_mean: pd.Series, steps_max: pd.Series,
                     step_control: pd.Series) -> pd.Series:
    """Trajectory-steps executed: N × steps, with steps = the max when lanes run in lockstep."""
    lockstep = step_control.isin(LOCKSTEP_SCOPES)
    steps = steps_max.where(lockstep, steps_mean)
    return n.astype("float64") * steps


def fit_series(launches: np.ndarray, work: np.ndarray, time_s: np.ndarray) -> tuple[float, float, float]:
    """Fit ``time ≈ launches·a + work·b`` with a, b ≥ 0, minimising relative residuals.

    Args:
        launches: launches per solve at each point.
        work: trajectory-steps at each point.
        time_s: measured time at each point (positive).

    Returns:
        ``(a, b, median_abs_rel_err)``: seconds per launch, seconds per trajectory-step, and
        the median |predicted / measured - 1| over the points.

    Raises:
        ValueError: fewer than two points, or inputs of different lengths or non-positive time.
    """
    launches, work, time_s = (np.asarray(x, dtype="float64") for x in (launches, work, time_s))
    if not (launches.shape == work.shape == time_s.shape) or launches.ndim != 1:
        raise ValueError("launches, work and time_s must be 1-D arrays of one length")
    if len(time_s) < 2:
        raise ValueError("a time model needs at least two points")
    if not (np.all(np.isfinite(time_s)) and np.all(time_s > 0)):
        raise ValueError("time_s must be positive and finite")
    design = np.column_stack([launches, work]) / time_s[:, None]
    # Columns scaled to unit size so that NNLS sees a well-conditioned problem.
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(design / scale, np.ones_like(time_s))
    a, b = coef / scale
    predicted = launches * a + work * b
    return float(a), float(b), float(np.median(np.abs(predicted / time_s - 1.0)))


def dominant_term(launch_term: float, step_term: float) -> str:
    """'launches' or 'trajectory-steps', with the dominant share in percent."""
    total = launch_term + step_term
    if not total > 0:
        return "n/a"
    if launch_term >= step_term:
        return f"launches ({100 * launch_term / total:.0f}%)"
    return f"trajectory-steps ({100 * step_term / total:.0f}%)"


def fit_time_model(points: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Fit one series' points (columns n, launches, trajectory_steps, time_s).

    Returns:
        ``(fit, table)``: ``fit`` has launch_cost_s, step_cost_s, median_rel_err, small_n,
        large_n, dominant_small, dominant_large; ``table`` has :data:`POINT_COLUMNS` sorted by n.

    Raises:
        ValueError: as :func:`fit_series`.
    """
    pts = points.sort_values("n", kind="mergesort").reset_index(drop=True)
    a, b, err = fit_series(pts["launches"].to_numpy(), pts["trajectory_steps"].to_numpy(),
                           pts["time_s"].to_numpy())
    table = pts[["n", "launches", "trajectory_steps", "time_s"]].copy()
    table["launch_term_s"] = table["launches"] * a
    table["step_term_s"] = table["trajectory_steps"] * b
    table["predicted_s"] = table["launch_term_s"] + table["step_term_s"]
    first, last = table.iloc[0], table.iloc[-1]
    fit = dict(launch_cost_s=a, step_cost_s=b, median_rel_err=err,
               small_n=int(first["n"]), large_n=int(last["n"]),
               dominant_small=dominant_term(first["launch_term_s"], first["step_term_s"]),
               dominant_large=dominant_term(last["launch_term_s"], last["step_term_s"]))
    return fit, table[list(POINT_COLUMNS)]
