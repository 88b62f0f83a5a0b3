"""Helpers shared by the peer-library backends (diffrax, torchdiffeq, torchode, SciPy).

Nothing here imports a peer library: each backend imports its library lazily, so a missing one
breaks only that backend (``available()`` says why) and never an import of this package.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.availability import probe_import  # noqa: F401  (re-exported for the peers)
from solvers.base import SolveSpec, Status
from solvers.tableaus import get_controller, get_tableau

#: Controller presets the peer backends accept (``SolveSpec.controller``):
#: "diffeqgpu": DiffEqGPU's PI constants, mapped onto the library's parametrisation as far as it
#:     allows (each backend's ``settings()`` says exactly what was set and what could not be);
#: "default": the library's own default controller coefficients (what a user gets who sets only
#:     the tolerances; the paper's diffrax scripts did this).
CONTROLLER_PRESETS = ("diffeqgpu", "default")


def controller_reason(backend: str, spec: SolveSpec) -> str | None:
    """None if ``spec.controller`` is a preset the peer backends know, else why not."""
    if spec.controller not in CONTROLLER_PRESETS:
        return (f"{backend} has no controller preset {spec.controller!r} "
                f"(has: {', '.join(CONTROLLER_PRESETS)})")
    return None


def diffeqgpu_pid(method_order: int, error_order: float) -> dict[str, float]:
    """DiffEqGPU's PI controller expressed in the PID parametrisation of diffrax and torchode.

    DiffEqGPU (see ``solvers.tableaus.PIController``) accepts a step and sets
    ``dt_new = dt * gamma * E_n**(-beta1) * qold**beta2`` with ``qold`` the previous accepted
    error norm. diffrax and torchode both set
    ``dt_new = dt * safety * E_n**(-(icoeff + pcoeff)/k) * E_{n-1}**(pcoeff/k)`` with ``k`` the
    order they divide by (diffrax: the error order, 5 for Tsit5/Dopri5/Kvaerno5; torchode: the
    method's convergence order, 5 for Tsit5/Dopri5). Equal exponents need
    ``pcoeff = beta2 * k`` and ``icoeff = (beta1 - beta2) * k``: with DiffEqGPU's
    ``beta1 = 7/(10 p)``, ``beta2 = 2/(5 p)`` and ``p = k = 5`` that is pcoeff = 0.4,
    icoeff = 0.3 (Hairer's PI controller). ``safety = gamma``, ``factormin = qmin`` and
    ``factormax = qmax`` carry over; what does not carry over is listed by each backend.

    Args:
        method_order: the method's order ``p`` (DiffEqGPU scales beta1, beta2 by 1/p).
        error_order: the order ``k`` the library divides the PID coefficients by.
    """
    ctrl = get_controller("diffeqgpu", order=method_order)
    return {
        "pcoeff": ctrl.beta2 * error_order,
        "icoeff": (ctrl.beta1 - ctrl.beta2) * error_order,
        "dcoeff": 0.0,
        "safety": ctrl.gamma,
        "factormin": ctrl.qmin,
        "factormax": ctrl.qmax,
        "diffeqgpu_beta1": ctrl.beta1,
        "diffeqgpu_beta2": ctrl.beta2,
    }


def explicit_rk_evals(method: str) -> tuple[int, int]:
    """(evaluations before the first step, evaluations per step attempt) of an explicit RK method.

    From the tableau in ``solvers.tableaus``: an FSAL method evaluates ``f(t0, u0)`` once and then
    ``s - 1`` new stages per attempt (a rejected attempt reuses ``k_1`` too); otherwise ``s``
    stages per attempt and nothing before.
    """
    tab = get_tableau(method)
    if tab.fsal:
        return 1, tab.stages - 1
    return 0, tab.stages


def per_trajectory(value: Any, n: int) -> np.ndarray:
    """A count as an (N,) int64 array: a shared scalar count is given to every trajectory."""
    arr = np.asarray(value, dtype=np.int64)
    if arr.ndim == 0:
        return np.full(n, int(arr), dtype=np.int64)
    if arr.shape != (n,):
        raise ValueError(f"per-trajectory count has shape {arr.shape}, expected ({n},)")
    return arr.copy()


def mark_nonfinite(u_final: np.ndarray, status: np.ndarray) -> np.ndarray:
    """``status`` with NONFINITE wherever a trajectory reported success but ended inf/nan.

    Fixed-step solvers (and some adaptive ones) carry on through a blow-up; a non-finite final
    state is never a success.
    """
    status = np.asarray(status, dtype=np.int64).copy()
    bad = ~np.all(np.isfinite(np.asarray(u_final, dtype=np.float64)), axis=-1)
    status[bad & (status == int(Status.SUCCESS))] = int(Status.NONFINITE)
    return status


def torch_stack_columns(du, like):
    """The rhs's tuple of (N,) tensors as one (N, n_states) tensor like ``like``.

    An entry that is a plain number (a constant derivative) is broadcast to the batch.
    """
    import torch  # torch is optional: only the torch peers call this

    cols = [d if isinstance(d, torch.Tensor)
            else torch.as_tensor(d, dtype=like.dtype, device=like.device) for d in du]
    return torch.stack(torch.broadcast_tensors(*cols), dim=-1)


def output_grid(spec: SolveSpec) -> tuple[tuple[float, ...], np.ndarray | None]:
    """The distinct times a solve must output, and where each ``saveat`` entry sits among them.

    Returns ``(times, save_index)``: ``times`` is strictly increasing and ends with t1 (so the
    final state is always the last output); ``save_index[j]`` is the position of
    ``spec.saveat[j]`` in ``times`` (None without saveat). Duplicates in saveat share a position.
    """
    t1 = float(spec.prob.tspan[1])
    if spec.saveat is None:
        return (t1,), None
    times = tuple(sorted(set(spec.saveat) | {t1}))
    position = {t: i for i, t in enumerate(times)}
    return times, np.array([position[t] for t in spec.saveat], dtype=np.int64)


def split_outputs(ys: np.ndarray, save_index: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(u_final (N, n_states), saved (N, len(saveat), n_states) or None) from outputs at
    ``output_grid``'s times, shaped (N, len(times), n_states)."""
    saved = None if save_index is None else np.ascontiguousarray(ys[:, save_index, :])
    return np.ascontiguousarray(ys[:, -1, :]), saved
