"""DiffEqGPU's error norm and PI step controller, for whole arrays of trajectories.

Per-trajectory control applies the formulas every implementation of this project shares
(``solvers.tableaus.scaled_ssq`` and ``pi_control_squared``: DiffEqGPU's law on the squared
norm) elementwise to ``(N,)`` arrays (one entry per trajectory), with every constant converted to the state dtype first, as DiffEqGPU's
kernels do (``build_adaptive_controller_cache(alg, T)``). Shared step control uses
``pi_step_factor`` itself on the one, batch-wide error norm.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.tableaus import PIController, SquaredPI, error_scales, pi_control_squared, scaled_ssq


def scaled_error(xp: Any, err: Any, u_prev: Any, u_new: Any, rtol: Any, atol: Any) -> Any:
    """``err / (atol + max(|u_prev|, |u_new|) * rtol)``, elementwise over ``(n_states, N)``."""
    return err / (atol + xp.maximum(xp.abs(u_prev), xp.abs(u_new)) * rtol)


def rms_whole_batch(xp: Any, scaled: Any) -> float:
    """One RMS over every state of every trajectory, brought to the host (torchdiffeq's norm)."""
    return float(xp.sqrt(xp.mean(scaled * scaled)))


class _XpOps:
    """``solvers.tableaus`` operations on NumPy / CuPy arrays."""

    def __init__(self, xp: Any) -> None:
        self.minimum, self.maximum, self.abs = xp.minimum, xp.maximum, xp.abs
        self.log, self.exp, self.where = xp.log, xp.exp, xp.where

    @staticmethod
    def le(a: Any, b: Any) -> Any:
        return a <= b

    @staticmethod
    def eq(a: Any, b: Any) -> Any:
        return a == b


def scaled_ssq_per_trajectory(xp: Any, err: Any, u_prev: Any, u_new: Any, rtol: Any, atol: Any) -> Any:
    """``(n_states, N) -> (N,)``: n times each trajectory's ``EEst^2``, as every implementation
    of this project computes it (``solvers.tableaus.error_scales`` and ``scaled_ssq``)."""
    one = np.dtype(err.dtype).type(1)
    sc = error_scales(list(u_prev), list(u_new), atol, rtol, _XpOps(xp))
    return scaled_ssq(list(err), sc, one)


class LaneController:
    """``solvers.tableaus.pi_control_squared`` for ``(N,)`` arrays: both outcomes are formed
    for every trajectory.

    Args:
        ctrl: the controller constants (``solvers.tableaus.get_controller``).
        n_states: states per trajectory (the squared norm is n times ``EEst^2``).
        dtype: state dtype; every constant is rounded to it once, here.
        xp: the array namespace.
    """

    def __init__(self, ctrl: PIController, n_states: int, dtype: Any, xp: Any) -> None:
        typed = np.dtype(dtype).type
        self.xp = xp
        self.c = {k: typed(v) for k, v in SquaredPI.of(ctrl, n_states).constants().items()}
        self.n_states = self.c["NSTATES"]
        self.lm_init = self.c["LM_INIT"]
        self.dtmin = typed(ctrl.dtmin)

    def update(self, ssq: Any, lm: Any, dt: Any) -> tuple[Any, Any, Any]:
        """``(dt if rejected, dt if accepted, lm if accepted)`` for every trajectory, from the
        squared norm ``ssq`` and the controller memory ``lm`` (``pi_control_squared``;
        accepted when ``ssq <= n_states``). The caller clamps the accepted step to the end of
        the time span."""
        dt_accepted, dt_rejected, lm_accepted = pi_control_squared(ssq, lm, dt, self.c, _XpOps(self.xp))
        return dt_rejected, dt_accepted, lm_accepted
