"""The array-style replica of the fused nonlinear solvers (Newton, dogleg trust region).

Every operation of an iteration is an operation over the whole batch (NumPy on a CPU, CuPy on a
GPU): the residual and the SymPy-derived Jacobian evaluated array-wise (the problem's own
functions, ``m`` bound to ``xp``), the (N, d, d) Jacobians stacked and solved by one batched
``xp.linalg.solve`` (LAPACK getrf/getrs per system: general dense, partial pivoting), the
updates masked. All systems iterate in lockstep until the last one is done (``jax.vmap``
semantics); each system's counts, status and result are its own, as in the fused kernel. The
algorithms and the convergence test are solvers.nonlinear_methods'.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from problems import derive
from solvers.array.backend import namespace, to_host
from solvers.base import SolveResult, Status
from solvers.nonlinear_methods import TRUST_REGION, method_settings

_RUNNING = -1


class ArrayNonlinearPrepared:
    dispatch = "xp"

    def __init__(self, spec: Any, xp: Any) -> None:
        self.spec = spec
        self.xp = xp
        self.device = spec.device
        self.problem = spec.prob
        x0, p = spec.prob.ensemble(spec.n, spec.dtype, spec.seed)
        self.x0 = xp.asarray(x0)
        self.params = xp.asarray(np.ascontiguousarray(p.T))
        self.T = np.dtype(spec.dtype).type

    def _funcs(self, xp: Any):
        return derive.derivatives(self.problem).functions(xp, self.T)

    def _F(self, res, x, p):
        xp, n = self.xp, x.shape[0]
        return xp.stack([xp.broadcast_to(xp.asarray(e, dtype=x.dtype), (n,)) for e in res(tuple(x.T), p)], axis=-1)

    def _J(self, jac, x, p):
        xp, n = self.xp, x.shape[0]
        rows = [xp.stack([xp.broadcast_to(xp.asarray(e, dtype=x.dtype), (n,)) for e in row], axis=-1)
                for row in jac(tuple(x.T), p)]
        return xp.stack(rows, axis=-2)

    def _solve(self, J, b, live):
        """Batched J dx = b; systems not ``live`` get the identity (never singular). Returns
        (dx, singular mask)."""
        xp = self.xp
        d = J.shape[-1]
        eye = xp.eye(d, dtype=J.dtype)
        J = xp.where(live[:, None, None], J, eye)
        J = xp.where(xp.isfinite(J), J, eye)  # non-finite systems are caught by their status
        try:
            return xp.linalg.solve(J, b[..., None])[..., 0], xp.zeros(J.shape[0], dtype=bool)
        except np.linalg.LinAlgError:  # NumPy raises for the whole batch: find the singular ones
            dx = xp.zeros_like(b)
            singular = xp.zeros(J.shape[0], dtype=bool)
            for i in range(J.shape[0]):
                try:
                    dx[i] = xp.linalg.solve(J[i], b[i])
                except np.linalg.LinAlgError:
                    singular[i] = True
            return dx, singular

    def _converged(self, step, xnew, F, rtol, atol):
        xp = self.xp
        return (xp.abs(step) < atol + rtol * xp.abs(xnew)).all(axis=1) & (xp.abs(F) < atol).all(axis=1)

    def run(self) -> Any:
        xp, spec = self.xp, self.spec
        T = self.T
        res, jac = self._funcs(xp)
        p = tuple(xp.asarray(self.params))
        rtol, atol = (T(v) for v in spec.tol)
        n = spec.n
        x = xp.array(self.x0, copy=True)
        code = xp.full(n, _RUNNING, dtype=xp.int64)
        acc = xp.zeros(n, dtype=xp.int64)
        rej = xp.zeros(n, dtype=xp.int64)
        evals = xp.zeros(n, dtype=xp.int64)
        with np.errstate(all="ignore"):
            if spec.method == "newton":
                self._newton(res, jac, p, x, code, acc, evals, rtol, atol)
            else:
                self._trust_region(res, jac, p, x, code, acc, rej, evals, rtol, atol)
        code = xp.where(code == _RUNNING, int(Status.NOT_CONVERGED), code)
        return x, code, acc, rej, evals

    def _newton(self, res, jac, p, x, code, acc, evals, rtol, atol):
        xp = self.xp
        for _ in range(self.spec.max_steps):
            live = code == _RUNNING
            if not bool(live.any()):
                break
            F = self._F(res, x, p)
            J = self._J(jac, x, p)
            dx, singular = self._solve(J, -F, live)
            y = x + dx
            finite = xp.isfinite(y).all(axis=1) & xp.isfinite(F).all(axis=1)
            conv = self._converged(dx, y, F, rtol, atol)
            x[...] = xp.where(live[:, None] & ~singular[:, None], y, x)
            acc += live
            evals += live
            f_finite = xp.isfinite(F).all(axis=1)  # a non-finite residual first, then a singular J
            new = xp.where(~f_finite, int(Status.NONFINITE), xp.where(singular, int(Status.FAILED), xp.where(
                ~finite, int(Status.NONFINITE), xp.where(conv, int(Status.SUCCESS), _RUNNING))))
            code[...] = xp.where(live, new, code)

    def _trust_region(self, res, jac, p, x, code, acc, rej, evals, rtol, atol):
        xp, T, tr = self.xp, self.T, TRUST_REGION
        F = self._F(res, x, p)
        evals += 1
        code[...] = xp.where(xp.isfinite(x).all(axis=1) & xp.isfinite(F).all(axis=1), code, int(Status.NONFINITE))
        radius = xp.full(x.shape[0], T(self.spec.step), dtype=x.dtype)
        half, zero = T(0.5), T(0)
        for _ in range(self.spec.max_steps):
            live = code == _RUNNING
            if not bool(live.any()):
                break
            J = self._J(jac, x, p)
            pn, singular = self._solve(J, -F, live)
            g = xp.einsum("nrc,nr->nc", J, F)
            jg = xp.einsum("nrc,nc->nr", J, g)
            gg, jgjg = (g * g).sum(axis=1), (jg * jg).sum(axis=1)
            nn, gn = xp.sqrt((pn * pn).sum(axis=1)), xp.sqrt(gg)
            tc = gg / jgjg
            cn = tc * gn
            pc = -tc[:, None] * g
            q = pn - pc
            qa, qb = (q * q).sum(axis=1), T(2) * (pc * q).sum(axis=1)
            qc = cn * cn - radius * radius
            disc = xp.maximum(qb * qb - T(4) * qa * qc, zero)
            tau = (-qb + xp.sqrt(disc)) / (T(2) * qa)
            step = xp.where((nn <= radius)[:, None], pn,
                            xp.where((cn >= radius)[:, None], -(radius / gn)[:, None] * g, pc + tau[:, None] * q))
            y = x + step
            pnorm = xp.sqrt((step * step).sum(axis=1))
            H = self._F(res, y, p)
            evals += live
            lp = F + xp.einsum("nrc,nc->nr", J, step)
            f0 = (F * F).sum(axis=1)
            pred = half * (f0 - (lp * lp).sum(axis=1))
            ared = half * (f0 - (H * H).sum(axis=1))
            rho = ared / pred
            conv = self._converged(step, y, F, rtol, atol)
            finite = xp.isfinite(y).all(axis=1) & xp.isfinite(H).all(axis=1)
            accept = live & ~singular & finite & (conv | ((pred > zero) & (rho > T(tr.eta))))
            grow = (rho > T(tr.rho_high)) & (pnorm >= T(0.999) * radius)
            new_radius = xp.where(~finite, T(tr.shrink) * radius,
                                  xp.where(~(rho >= T(tr.rho_low)), T(tr.shrink) * pnorm,
                                           xp.where(grow, xp.minimum(T(tr.expand) * radius, T(tr.max_radius)), radius)))
            radius[...] = xp.where(live, new_radius, radius)
            x[...] = xp.where(accept[:, None], y, x)
            F = xp.where(accept[:, None], H, F)
            acc += accept
            rej += live & ~accept
            new = xp.where(singular, int(Status.FAILED), xp.where(accept & conv, int(Status.SUCCESS), _RUNNING))
            code[...] = xp.where(live, new, code)

    def sync(self, out: Any) -> None:
        if self.device == "gpu":
            import cupy  # cupy is optional: imported only on a GPU solve

            cupy.cuda.get_current_stream().synchronize()

    def fetch(self, out: Any):
        x, code, acc, rej, evals = (to_host(v) for v in out)
        return SolveResult(u_final=np.ascontiguousarray(x), status=code.astype(np.int64),
                           accepted=acc.astype(np.int64), rejected=rej.astype(np.int64),
                           rhs_evals=evals.astype(np.int64), notes={"iterations": "per system, lockstep batch"})

    def close(self) -> None:
        self.x0 = self.params = None


def check(backend: Any, spec: Any) -> str | None:
    if spec.variant:
        return "the array nonlinear replica has one variant ('')"
    if spec.mode != "adaptive":
        return "nonlinear solves iterate to tolerance: mode must be 'adaptive'"
    return "nonlinear solves return the roots only (no saveat)" if spec.saveat is not None else None


def prepare(backend: Any, spec: Any) -> ArrayNonlinearPrepared:
    return ArrayNonlinearPrepared(spec, namespace(spec.device))


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    rtol, atol = spec.tol
    d = spec.prob.n_states
    return {
        "step_control": "lockstep", "method": spec.method, "namespace": "numpy" if spec.device == "cpu" else "cupy",
        "rtol": rtol, "atol": atol, "max_iterations": spec.max_steps, "fused": False,
        "layout": f"states (N, {d}), Jacobians (N, {d}, {d}); every operation over the whole batch, masked",
        "jacobian": "SymPy-derived from the residual (problems.derive.derivatives(problem)), evaluated array-wise",
        "linear_solver": "xp.linalg.solve on the (N, d, d) stack (LAPACK getrf/getrs: dense, partial pivoting)",
        "linear_solver_precision": ("NumPy computes float32 stacks in float64 LAPACK and rounds the result back "
                                    "(numpy.linalg _commonType)" if spec.device == "cpu" and spec.dtype == "float32"
                                    else spec.dtype),
        **method_settings(spec.method, spec.step),
    }
