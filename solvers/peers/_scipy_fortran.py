"""SciPy's Fortran-backed integrators, one trajectory after another: the serial-CPU baseline.

``solve_ivp`` runs its step loop in Python; these hand the whole integration of a trajectory to
Fortran, which calls the Python right-hand side once per stage:

* variant "odeint", method "lsoda": ``scipy.integrate.odeint`` (ODEPACK's LSODA: Adams/BDF with
  automatic stiffness switching), with the SymPy-derived Jacobian as ``Dfun``,
  ``mxstep = spec.max_steps`` (the default, 500 per output interval, would fail stiff runs),
  ``h0 = spec.step``, ``tfirst=True``;
* variant "ode", methods "dop853" and "rk45": ``scipy.integrate.ode`` with the integrator
  ``"dop853"`` (Hairer's DOP853) or ``"dopri5"`` (Hairer's DOPRI5, the Dormand-Prince pair of
  RK45), ``nsteps = spec.max_steps``, ``first_step = spec.step``, Hairer's default controller
  (safety 0.9; ``beta`` 0 for dopri5, 0.04 for dop853 are the codes' own defaults).

Counts come from the codes themselves: LSODA's ``nst`` / ``nfe`` / ``nje`` (``full_output``);
Hairer's IWORK(17..20) = function calls, steps, accepted, rejected.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from problems import derive
from solvers.base import Prepared, SolveResult, SolveSpec, Status
from solvers.peers import _common

#: variant -> method -> the Fortran code it runs
FORTRAN_METHODS = {"odeint": {"lsoda": "odeint (ODEPACK LSODA)"},
                   "ode": {"dop853": 'ode("dop853") (Hairer DOP853)',
                           "rk45": 'ode("dopri5") (Hairer DOPRI5)'}}
_ODE_INTEGRATOR = {"dop853": "dop853", "rk45": "dopri5"}

#: odeint's message -> our status
_ODEINT_STATUS = (("Integration successful", Status.SUCCESS),
                  ("Excess work done", Status.MAX_STEPS),
                  ("Excess accuracy requested", Status.FAILED),
                  ("Illegal input", Status.FAILED),
                  ("Repeated error test failures", Status.FAILED),
                  ("Repeated convergence failures", Status.FAILED),
                  ("Error weight became zero", Status.FAILED))
#: Hairer's IDID -> our status
_HAIRER_STATUS = {1: Status.SUCCESS, 2: Status.SUCCESS, -1: Status.FAILED,
                  -2: Status.MAX_STEPS, -3: Status.DT_UNDERFLOW, -4: Status.FAILED}


def fortran_reason(spec: SolveSpec) -> str | None:
    """None if ``spec.variant``'s Fortran code has ``spec.method``, else why not."""
    methods = FORTRAN_METHODS[spec.variant]
    if spec.method not in methods:
        return (f"scipy variant {spec.variant!r} has methods {', '.join(methods)} only "
                f"({'; '.join(methods.values())})")
    return None


def fortran_settings(spec: SolveSpec) -> dict[str, Any]:
    """What the Fortran variants set (merged into the scipy backend's settings)."""
    s: dict[str, Any] = {
        "integrator": FORTRAN_METHODS[spec.variant][spec.method],
        "max_steps": (f"mxstep={spec.max_steps} (per output interval)" if spec.variant == "odeint"
                      else f"nsteps={spec.max_steps} (per output interval)"),
        "controller": "the Fortran code's own step control (not configurable; presets ignored)",
        "batching": "none: a Python loop over trajectories, each integrated inside Fortran",
        "compilation": "Fortran (SciPy's build); rhs is plain Python on floats, called per stage",
    }
    if spec.variant == "odeint":
        s["jacobian"] = "SymPy-derived from the problem's rhs (Dfun), used when LSODA switches to BDF"
    else:
        s["jacobian"] = "not used"
    return s


class FortranPrepared(Prepared):
    """A serial loop of Fortran integrations (see the module docstring)."""

    dispatch = "python"

    def __init__(self, spec: SolveSpec) -> None:
        self.spec = spec
        u0, p = spec.ensemble()
        self.u0 = u0.astype(np.float64)
        rhs = spec.prob.rhs_for(math)
        jac = derive.derivatives(spec.prob).functions(math, float)[0] if spec.variant == "odeint" else None
        self.params = [tuple(float(v) for v in row) for row in p]
        self.rhs, self.jac = rhs, jac
        self.times, self.save_index = _common.output_grid(spec)
        self.t0 = float(spec.prob.tspan[0])
        self.rtol, self.atol = spec.tol

    def run(self) -> list:
        with warnings.catch_warnings():
            # A failed trajectory becomes a status in fetch; SciPy's warning would only repeat it.
            warnings.simplefilter("ignore")
            return [self._odeint(i) if self.spec.variant == "odeint" else self._ode(i)
                    for i in range(self.spec.n)]

    def _odeint(self, i: int) -> tuple:
        from scipy.integrate import odeint  # scipy is optional: imported only when this backend runs

        rhs, jac, params = self.rhs, self.jac, self.params[i]
        t = [self.t0, *self.times] if self.times[0] != self.t0 else list(self.times)
        ys, info = odeint(lambda t_, y: rhs(tuple(y), params, t_), self.u0[i], t,
                          Dfun=lambda t_, y: jac(tuple(y), params, t_), tfirst=True,
                          rtol=self.rtol, atol=self.atol, h0=self.spec.step,
                          mxstep=self.spec.max_steps, full_output=True)
        ys = ys[len(t) - len(self.times):]
        status = next((code for key, code in _ODEINT_STATUS if key in info["message"]),
                      Status.FAILED)
        return ys, status, int(info["nst"][-1]), None, int(info["nfe"][-1]), info["message"]

    def _ode(self, i: int) -> tuple:
        from scipy.integrate import ode  # scipy is optional: imported only when this backend runs

        rhs, params = self.rhs, self.params[i]
        r = ode(lambda t_, y: rhs(tuple(y), params, t_))
        r.set_integrator(_ODE_INTEGRATOR[self.spec.method], rtol=self.rtol, atol=self.atol,
                         first_step=self.spec.step, nsteps=self.spec.max_steps)
        r.set_initial_value(self.u0[i], self.t0)
        ys = np.full((len(self.times), self.u0.shape[1]), np.nan)
        iwork = r._integrator.iwork   # Hairer's IWORK, filled in place by the Fortran code
        accepted = rejected = nfev = 0
        status = Status.SUCCESS
        for j, t in enumerate(self.times):
            if t != r.t:
                r.integrate(t)
            # IWORK(17..20): calls, steps, accepted, rejected of this call (0-based 16..19).
            nfev, accepted, rejected = nfev + int(iwork[16]), accepted + int(iwork[18]), rejected + int(iwork[19])
            if not r.successful():
                status = _HAIRER_STATUS.get(int(r.get_return_code()), Status.FAILED)
                break
            ys[j] = r.y
        return ys, status, accepted, rejected, nfev, str(r.get_return_code())

    def fetch(self, out: list) -> SolveResult:
        spec, n = self.spec, self.spec.n
        ys = np.stack([o[0] for o in out])
        status = np.array([int(o[1]) for o in out], dtype=np.int64)
        accepted = np.array([o[2] for o in out], dtype=np.int64)
        rejected = None if out[0][3] is None else np.array([o[3] for o in out], dtype=np.int64)
        nfev = np.array([o[4] for o in out], dtype=np.int64)
        ys[status != int(Status.SUCCESS)] = np.nan
        u_final, saved = _common.split_outputs(ys, self.save_index)
        status = _common.mark_nonfinite(u_final, status)
        notes: dict[str, Any] = {
            "step_scope": "serial",
            "integrator": FORTRAN_METHODS[spec.variant][spec.method],
            "steps_source": ("LSODA nst (steps taken; rejections not exposed)"
                             if spec.variant == "odeint" else "Hairer IWORK(19), IWORK(20)"),
            "rhs_evals": ("LSODA nfe" if spec.variant == "odeint" else "Hairer IWORK(17)"),
            "arithmetic_dtype": "float64",
        }
        failed = sorted({o[5] for o, s in zip(out, status) if s != int(Status.SUCCESS)})
        if failed:
            notes["failures"] = failed
        dt = spec.np_dtype
        return SolveResult(u_final=u_final.astype(dt),
                           saved=None if saved is None else saved.astype(dt), status=status,
                           accepted=accepted, rejected=rejected, rhs_evals=nfev, notes=notes)
