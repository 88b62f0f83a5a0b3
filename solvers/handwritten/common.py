"""What the three hand-written backends share: methods, checks, settings records, results."""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.base import SolveResult, SolveSpec, Status
from solvers.handwritten.rk import StepConstants
from solvers.tableaus import CONTROLLERS

#: method -> modes. Adaptive needs an embedded FSAL pair (the attempt reuses the last stage).
METHODS: dict[str, tuple[str, ...]] = {
    "tsit5": ("fixed", "adaptive"),
    "dopri5": ("fixed", "adaptive"),
    "rk4": ("fixed",),
    "rk4_38": ("fixed",),
}


def check_common(spec: SolveSpec) -> str | None:
    """Reasons every hand-written backend refuses ``spec`` (after ``Backend.check``), or None."""
    if spec.saveat is not None:
        return "the hand-written steppers save the final state only (saveat is not implemented)"
    if spec.controller not in CONTROLLERS:
        return f"unknown controller {spec.controller!r} (has: {', '.join(CONTROLLERS)})"
    return None


def common_settings(spec: SolveSpec, K: StepConstants) -> dict[str, Any]:
    """The numerical settings of a solve (identical across the hand-written backends)."""
    s: dict[str, Any] = {
        "method": K.method,
        "tableau": f"solvers.tableaus.{K.method.upper()}",
        "mode": spec.mode,
        "dtype": K.dtype,
        "constants_dtype": K.dtype,
        "n": spec.n,
        "t0": K.t0,
        "t1": K.t1,
        "rhs": f"problems.{spec.problem}: problem.rhs_for(namespace)",
        "saveat": None,
    }
    if spec.mode == "fixed":
        s.update(dt=K.dt, n_steps=K.n_steps, time_of_step="t = t0 + i*dt (integer step counter)",
                 rhs_evals_per_step=K.evals_per_fixed_step)
    else:
        s.update(
            dt0=K.dt, first_step="min(dt0, t1 - t0)", rtol=K.rtol, atol=K.atol,
            controller=spec.controller, beta1=K.beta1, beta2=K.beta2, qmin=1 / K.inv_qmin,
            qmax=1 / K.inv_qmax, gamma=K.gamma, qold_init=K.qold_init, dtmin=K.dtmin,
            error_norm="RMS over the trajectory's states of err / (atol + max(|u_prev|, |u_new|) * rtol)",
            accept="EEst <= 1",
            last_step=f"dt_new = min(dt_new, t1 - t - dt); t = t1 when t1 - t - dt < {K.end_tol:g}",
            max_steps=K.max_steps, step_scope="per-trajectory",
            rhs_evals_per_attempt=K.evals_per_attempt,
        )
    return s


def fixed_result(u_final: np.ndarray, K: StepConstants, notes: dict | None = None) -> SolveResult:
    """A fixed-step result: every trajectory took ``K.n_steps`` steps; NONFINITE where it blew up."""
    u_final = np.asarray(u_final)
    n = u_final.shape[0]
    finite = np.all(np.isfinite(u_final), axis=1)
    return SolveResult(
        u_final=u_final,
        status=np.where(finite, int(Status.SUCCESS), int(Status.NONFINITE)).astype(np.int32),
        accepted=np.full(n, K.n_steps, dtype=np.int64),
        rejected=np.zeros(n, dtype=np.int64),
        rhs_evals=np.full(n, K.n_steps * K.evals_per_fixed_step, dtype=np.int64),
        notes={"step_scope": "none", **(notes or {})},
    )


def adaptive_result(u_final: np.ndarray, accepted: np.ndarray, rejected: np.ndarray,
                    status: np.ndarray, K: StepConstants, notes: dict | None = None) -> SolveResult:
    """An adaptive result with per-trajectory counts.

    ``rhs_evals`` counts each trajectory's own evaluations (1 for the first stage plus
    ``K.evals_per_attempt`` per attempt). In lockstep every lane computes until the slowest lane
    of its group is done; ``notes["lockstep_attempts"]`` is that slowest count.
    """
    accepted = np.asarray(accepted).astype(np.int64)
    rejected = np.asarray(rejected).astype(np.int64)
    attempts = accepted + rejected
    return SolveResult(
        u_final=np.asarray(u_final),
        status=np.asarray(status).astype(np.int32),
        accepted=accepted,
        rejected=rejected,
        rhs_evals=1 + K.evals_per_attempt * attempts,
        notes={"step_scope": "per-trajectory", "lockstep_attempts": int(attempts.max()),
               **(notes or {})},
    )
