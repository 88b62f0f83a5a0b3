"""SciPy's ``solve_ivp``, one trajectory after another: the CPU baseline a Python user tries first.

Settings (all explicit, all returned by ``settings()``):

* methods: "rk45" (``RK45``, Dormand-Prince 5(4)), "dop853" (``DOP853``) for non-stiff
  problems; "radau", "bdf", "lsoda" (``Radau``, ``BDF``, ``LSODA``) with the Jacobian SymPy
  derived from the problem's rhs (``problems.derive.derivatives``); adaptive mode only (SciPy has no
  fixed-step integrator);
* ``rtol``, ``atol`` from the spec, ``first_step = spec.step`` (the protocol's dt0); SciPy's own
  step controller (not configurable); ``solve_ivp`` has no step cap, so ``max_steps`` is not
  applied (``settings()`` says so);
* SciPy always computes in float64: a float32 spec integrates float32-rounded inputs in float64
  and returns the result rounded to float32 (``settings()['arithmetic_dtype']``);
* saving: final state only (no ``t_eval``, no dense output), or ``dense_output=True`` evaluated
  at the saveat times (so the step count stays visible);
* step control "serial": a Python loop over trajectories, each with its own adaptive steps;
* variants: "" is ``solve_ivp`` (step loop in Python); "odeint" (method "lsoda") and "ode"
  (methods "dop853", "rk45") run each trajectory's whole integration inside SciPy's Fortran
  codes (``solvers.peers._scipy_fortran``): the serial-CPU baseline as a Fortran user has it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from problems import derive
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec, Status
from solvers.peers import _common
from solvers.peers._scipy_fortran import FortranPrepared, fortran_reason, fortran_settings

#: our method name -> scipy.integrate.solve_ivp method
SCIPY_METHOD = {"rk45": "RK45", "dop853": "DOP853", "radau": "Radau", "bdf": "BDF", "lsoda": "LSODA"}
#: methods that use the Jacobian
IMPLICIT = frozenset({"radau", "bdf", "lsoda"})


class ScipyBackend(Backend):
    compilers = {"cpu": "scipy"}
    name = "scipy"
    devices = ("cpu",)
    kinds = {"ode": KindSupport({m: ("adaptive",) for m in SCIPY_METHOD})}
    variants = ("", "odeint", "ode")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        if device != "cpu":
            return False, "SciPy runs on the CPU only"
        return _common.probe_import("scipy")

    def check(self, spec: SolveSpec) -> str | None:
        # Explained before the generic "no fixed mode" refusal.
        if spec.mode == "fixed" and spec.method in self.methods:
            return "SciPy's solve_ivp has no fixed-step integrator (adaptive only)"
        return super().check(spec)

    def check_own(self, spec: SolveSpec) -> str | None:
        reason = _common.controller_reason(self.name, spec)
        if reason is None and spec.variant:
            reason = fortran_reason(spec)
        return reason

    def step_control(self, spec: SolveSpec) -> str:
        return "serial"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        rtol, atol = spec.tol
        times, _ = _common.output_grid(spec)
        s = {
            "library": self.available("cpu")[1],
            "method": spec.method,
            "solve_ivp_method": SCIPY_METHOD[spec.method],
            "mode": spec.mode,
            "dtype": spec.dtype,
            "arithmetic_dtype": "float64 (SciPy computes in float64; inputs rounded to dtype first)",
            "rtol": rtol,
            "atol": atol,
            "first_step": spec.step,
            "max_steps": "not applied: solve_ivp has no step cap",
            "controller": "SciPy's built-in step control (not configurable; presets ignored)",
            "jacobian": ("SymPy-derived from the problem's rhs (problems.derive.derivatives(problem))"
                         if spec.method in IMPLICIT else "not used"),
            "saveat": ("final state only (no t_eval, no dense output)" if spec.saveat is None
                       else f"dense_output=True evaluated at {list(times)}"),
            "batching": "none: a Python loop of solve_ivp calls, one per trajectory",
            "step_control": self.step_control(spec),
            "compilation": "none (rhs is plain Python on floats)",
            "sync": "none needed (synchronous CPU code)",
        }
        if spec.variant:
            del s["solve_ivp_method"]
            s.update(fortran_settings(spec))
            s["saveat"] = ("final state only" if spec.saveat is None
                           else f"integrated to each of {list(times)} in turn")
        return s

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return FortranPrepared(spec) if spec.variant else _ScipyPrepared(spec)


def _trajectory_functions(p_row: np.ndarray, rhs, jac):
    """(fun(t, y), jac(t, y) or None) for one trajectory with parameters ``p_row``."""
    params = tuple(float(v) for v in p_row)

    def fun(t, y):
        return rhs(tuple(y), params, t)

    if jac is None:
        return fun, None

    def jacobian(t, y):
        return np.array(jac(tuple(y), params, t), dtype=np.float64)

    return fun, jacobian


class _ScipyPrepared(Prepared):
    dispatch = "python"

    def __init__(self, spec: SolveSpec) -> None:
        self.spec = spec
        u0, p = spec.ensemble()
        rhs = spec.prob.rhs_for(math)
        jac = derive.derivatives(spec.prob).functions(math, float)[0] if spec.method in IMPLICIT else None
        self.u0 = u0.astype(np.float64)
        self.functions = [_trajectory_functions(p[i], rhs, jac) for i in range(spec.n)]
        self.times, self.save_index = _common.output_grid(spec)
        self.kwargs: dict[str, Any] = {"method": SCIPY_METHOD[spec.method], "rtol": spec.tol[0],
                                       "atol": spec.tol[1], "first_step": spec.step}
        if spec.saveat is not None:
            self.kwargs["dense_output"] = True

    def run(self) -> list:
        from scipy.integrate import solve_ivp  # scipy is optional: imported only when this backend runs

        t_span = tuple(float(t) for t in self.spec.prob.tspan)
        out = []
        for (fun, jac), y0 in zip(self.functions, self.u0):
            extra = {"jac": jac} if jac is not None else {}
            out.append(solve_ivp(fun, t_span, y0, **self.kwargs, **extra))
        return out

    def fetch(self, out: list) -> SolveResult:
        spec, n, k = self.spec, self.spec.n, self.spec.prob.n_states
        ys = np.full((n, len(self.times), k), np.nan)
        status = np.zeros(n, dtype=np.int64)
        accepted = np.zeros(n, dtype=np.int64)
        nfev = np.zeros(n, dtype=np.int64)
        njev = np.zeros(n, dtype=np.int64)
        messages = set()
        for i, sol in enumerate(out):
            accepted[i] = len(sol.t) - 1
            nfev[i], njev[i] = sol.nfev, sol.njev
            if sol.status != 0:
                # solve_ivp's only failure status (-1) is a failed step; SciPy's message says which.
                status[i] = int(Status.DT_UNDERFLOW if "step size" in sol.message else Status.FAILED)
                messages.add(sol.message)
                continue
            if spec.saveat is None:
                ys[i, -1] = sol.y[:, -1]
            else:
                ys[i] = sol.sol(np.asarray(self.times)).T
        u_final, saved = _common.split_outputs(ys, self.save_index)
        status = _common.mark_nonfinite(u_final, status)
        notes: dict[str, Any] = {
            "step_scope": "serial",
            "steps_source": "len(sol.t) - 1 accepted steps per trajectory (rejected not exposed)",
            "rhs_evals": "sol.nfev per trajectory (Jacobian evaluations: njev_mean)",
            "njev_mean": float(njev.mean()),
            "arithmetic_dtype": "float64",
        }
        if messages:
            notes["failures"] = sorted(messages)
        dt = spec.np_dtype
        return SolveResult(u_final=u_final.astype(dt),
                           saved=None if saved is None else saved.astype(dt),
                           status=status, accepted=accepted, rejected=None, rhs_evals=nfev,
                           notes=notes)
