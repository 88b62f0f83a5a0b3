"""DiffEqGPU's error norm and PI step controller, for whole arrays of trajectories.

The scalar executable specification is ``solvers.tableaus.pi_step_factor`` /
``scaled_rms_norm``; this module applies the same formulas elementwise to ``(N,)`` arrays (one
entry per trajectory), with every constant converted to the state dtype first, as DiffEqGPU's
kernels do (``build_adaptive_controller_cache(alg, T)``). Shared step control uses
``pi_step_factor`` itself on the one, batch-wide error norm.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.tableaus import PIController


def scaled_error(xp: Any, err: Any, u_prev: Any, u_new: Any, rtol: Any, atol: Any) -> Any:
    """``err / (atol + max(|u_prev|, |u_new|) * rtol)``, elementwise over ``(n_states, N)``."""
    return err / (atol + xp.maximum(xp.abs(u_prev), xp.abs(u_new)) * rtol)


def rms_per_trajectory(xp: Any, scaled: Any) -> Any:
    """Each trajectory's RMS over its own states: ``(n_states, N) -> (N,)`` (DiffEqGPU's EEst)."""
    return xp.sqrt(xp.mean(scaled * scaled, axis=0))


def rms_whole_batch(xp: Any, scaled: Any) -> float:
    """One RMS over every state of every trajectory, brought to the host (torchdiffeq's norm)."""
    return float(xp.sqrt(xp.mean(scaled * scaled)))


class LaneController:
    """``pi_step_factor`` for ``(N,)`` arrays: both outcomes are formed for every trajectory.

    Args:
        ctrl: the controller constants (``solvers.tableaus.get_controller``).
        dtype: state dtype; every constant is rounded to it once, here.
        xp: the array namespace.
    """

    def __init__(self, ctrl: PIController, dtype: Any, xp: Any) -> None:
        typed = np.dtype(dtype).type
        self.xp = xp
        self.beta1 = typed(ctrl.beta1)
        self.beta2 = typed(ctrl.beta2)
        self.inv_qmin = typed(1 / ctrl.qmin)
        self.inv_qmax = typed(1 / ctrl.qmax)
        self.gamma = typed(ctrl.gamma)
        self.qold_init = typed(ctrl.qold_init)
        self.dtmin = typed(ctrl.dtmin)

    def update(self, eest: Any, qold: Any, dt: Any) -> tuple[Any, Any, Any]:
        """``(dt if rejected, dt if accepted, qold if accepted)`` for every trajectory.

        Rejected: ``dt / min(1/qmin, eest^beta1 / gamma)``. Accepted:
        ``dt / max(1/qmax, min(1/qmin, q / gamma))`` with ``q = eest^beta1 / qold^beta2``
        (``q = 1/qmax`` when ``eest == 0``), and ``qold = max(eest, qold_init)``. The caller
        clamps the accepted step to the end of the time span.
        """
        xp = self.xp
        q11 = eest ** self.beta1
        q = xp.where(eest == 0, self.inv_qmax, q11 / qold ** self.beta2)
        dt_rejected = dt / xp.minimum(self.inv_qmin, q11 / self.gamma)
        dt_accepted = dt / xp.maximum(self.inv_qmax, xp.minimum(self.inv_qmin, q / self.gamma))
        qold_accepted = xp.maximum(eest, self.qold_init)
        return dt_rejected, dt_accepted, qold_accepted
