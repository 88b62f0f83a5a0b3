"""SciPy ``optimize.root`` in a loop: the serial baseline of the batched nonlinear solves.

One ``scipy.optimize.root(fun, x0, jac=jac, method="hybr")`` per system (MINPACK's hybrd/hybrj,
Powell's dogleg hybrid method: the trust-region family), with the SymPy-derived analytic
Jacobian, float64 throughout (MINPACK is float64 only: a float32 spec is refused). ``xtol`` is
the spec's rtol (MINPACK's relative step test); the result is then held to the project's
convergence test (problems.nonlinear_core.CONVERGENCE) for its status, so every backend's
SUCCESS means the same thing.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from problems import derive
from solvers.base import Backend, KindSupport, SolveResult, SolveSpec, Status

#: MINPACK stops on a relative step below xtol; a step of rtol leaves |F| near atol, so it is asked
#: for a step 100x smaller before the residual test of the project is applied.
XTOL_FACTOR = 1e-2


class ScipyRootPrepared:
    dispatch = "python"

    def __init__(self, spec: SolveSpec) -> None:
        self.spec = spec
        x0, p = spec.prob.ensemble(spec.n, spec.dtype, spec.seed)
        self.x0, self.p = x0.astype(np.float64), p.astype(np.float64)
        self.res, self.jac = derive.derivatives(spec.prob).functions(np, float)

    def run(self) -> Any:
        from scipy.optimize import root  # optional: imported only when this backend runs

        rtol, atol = self.spec.tol
        n, d = self.x0.shape
        out = np.empty_like(self.x0)
        status = np.empty(n, dtype=np.int64)
        nfev = np.zeros(n, dtype=np.int64)
        njev = np.zeros(n, dtype=np.int64)
        for i in range(n):
            p = tuple(self.p[i])
            sol = root(lambda x: np.array(self.res(tuple(x), p)), self.x0[i],
                       jac=lambda x: np.array(self.jac(tuple(x), p)), method="hybr",
                       options={"xtol": rtol * XTOL_FACTOR, "maxfev": self.spec.max_steps * (d + 1)})
            out[i] = sol.x
            nfev[i], njev[i] = sol.nfev, getattr(sol, "njev", 0)
            f = np.asarray(sol.fun)
            if not np.isfinite(sol.x).all():
                status[i] = int(Status.NONFINITE)
            elif sol.success and (np.abs(f) < atol).all():
                status[i] = int(Status.SUCCESS)
            else:
                status[i] = int(Status.NOT_CONVERGED)
        return out, status, nfev, njev

    def sync(self, out: Any) -> None:
        pass

    def fetch(self, out: Any) -> SolveResult:
        x, status, nfev, njev = out
        return SolveResult(u_final=x, status=status, accepted=njev, rejected=np.zeros_like(njev), rhs_evals=nfev,
                           notes={"iterations": "accepted = Jacobian evaluations (MINPACK njev)"})

    def close(self) -> None:
        pass


class ScipyRootBackend(Backend):
    name = "scipy-root"
    devices = ("cpu",)
    kinds = {"nonlinear": KindSupport({"hybr": ("adaptive",)})}

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        if device != "cpu":
            return False, "scipy-root runs on the CPU only"
        try:
            import scipy  # optional: this backend is available where it imports
        except ImportError as exc:
            return False, f"scipy is not importable: {exc}"
        return True, f"scipy {scipy.__version__}"

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.dtype != "float64":
            return "scipy.optimize.root (MINPACK) computes in float64 only"
        return None

    def step_control(self, spec: SolveSpec) -> str:
        return "serial"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        rtol, atol = spec.tol
        return {"step_control": "serial", "method": "scipy.optimize.root(method='hybr') per system (MINPACK hybrj)",
                "jacobian": "SymPy-derived, analytic", "xtol": rtol * XTOL_FACTOR, "atol_on_residual": atol,
                "maxfev": spec.max_steps * (spec.prob.n_states + 1),
                "status": "SUCCESS needs MINPACK success and max|F| < atol"}

    def prepare_own(self, spec: SolveSpec) -> ScipyRootPrepared:
        return ScipyRootPrepared(spec)
