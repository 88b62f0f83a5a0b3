"""optimistix: Newton root finding under ``jax.jit(jax.vmap(...))``, one system per vmapped lane.

Configured as its documentation shows (``optx.Newton(rtol, atol)`` with its defaults: the
``lineax.AutoLinearSolver`` (LU for a square Jacobian), max-norm, Cauchy termination; the Jacobian
by ``jax.jacfwd`` inside optimistix), ``optx.root_find(..., throw=False, max_steps=spec.max_steps)``
so a failing system returns its result code instead of raising. Float32 runs with x64 off,
float64 with x64 on. The ``"batched"`` form (one root_find on the whole (N, d) state) is not
offered: Newton would build and LU-factor a dense (N d) x (N d) Jacobian.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.base import Backend, KindSupport, SolveResult, SolveSpec, Status


def _x64(dtype: str):
    import jax  # optional (JAX stack): imported only when this backend runs

    return jax.enable_x64(dtype == "float64")


class OptimistixPrepared:
    dispatch = "jax"

    def __init__(self, spec: SolveSpec) -> None:
        import jax  # optional (JAX stack): imported only when this backend runs
        import jax.numpy as jnp
        import optimistix as optx

        self.spec = spec
        x0, p = spec.prob.ensemble(spec.n, spec.dtype, spec.seed)
        rtol, atol = spec.tol
        residual = spec.prob.residual_for(jnp)

        def fn(y, args):
            return jnp.stack(residual(y, args))

        solver = optx.Newton(rtol=rtol, atol=atol)

        def solve_one(y0, args):
            sol = optx.root_find(fn, solver, y0, args, max_steps=spec.max_steps, throw=False)
            R = optx.RESULTS
            capped = (sol.result == R.nonlinear_max_steps_reached) | (sol.result == R.max_steps_reached)
            nonfinite = (sol.result == R.nonfinite) | (sol.result == R.nonfinite_input)
            code = jnp.where(sol.result == R.successful, int(Status.SUCCESS),
                             jnp.where(capped, int(Status.NOT_CONVERGED),
                                       jnp.where(nonfinite, int(Status.NONFINITE), int(Status.FAILED))))
            return sol.value, code, sol.stats["num_steps"]

        with _x64(spec.dtype):
            self._fn = jax.jit(jax.vmap(solve_one, in_axes=(0, 0)))
            self._x0 = jax.device_put(jnp.asarray(x0))
            self._p = jax.device_put(jnp.asarray(p))

    def run(self) -> Any:
        with _x64(self.spec.dtype):
            return self._fn(self._x0, self._p)

    def sync(self, out: Any) -> None:
        import jax  # optional (JAX stack): imported only when this backend runs

        jax.block_until_ready(out)

    def fetch(self, out: Any) -> SolveResult:
        x, code, steps = (np.asarray(v) for v in out)
        # a non-finite root is NONFINITE whatever optimistix called it (e.g. a singular LU of inf/nan)
        code = np.where(np.isfinite(x).all(axis=1), code, int(Status.NONFINITE))
        steps = steps.astype(np.int64)
        return SolveResult(u_final=x, status=code.astype(np.int64), accepted=steps, rejected=np.zeros_like(steps),
                           rhs_evals=steps, notes={"iterations": "optimistix num_steps per system"})

    def close(self) -> None:
        self._fn = self._x0 = self._p = None


class OptimistixBackend(Backend):
    name = "optimistix"
    devices = ("cpu", "gpu")
    kinds = {"nonlinear": KindSupport({"newton": ("adaptive",)})}

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        try:
            import jax  # optional: this backend is available where it imports
            import optimistix
        except ImportError as exc:
            return False, f"optimistix is not importable: {exc}"
        if device == "gpu" and not any(d.platform == "gpu" for d in jax.devices()):
            return False, "jax sees no GPU"
        return True, f"optimistix {optimistix.__version__}, jax {jax.__version__}"

    def step_control(self, spec: SolveSpec) -> str:
        return "lockstep"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        rtol, atol = spec.tol
        return {"step_control": "lockstep", "method": "optx.Newton(rtol, atol), defaults otherwise",
                "linear_solver": "lineax.AutoLinearSolver(well_posed=None) (LU)", "norm": "optx.max_norm",
                "termination": "Cauchy (step and residual)",
                "status_map": "successful -> SUCCESS; (nonlinear_)max_steps_reached -> NOT_CONVERGED; nonfinite(_input) or "
                              "a non-finite root -> NONFINITE; other results (singular, divergence, ...) -> FAILED", "jacobian": "jax.jacfwd inside optimistix",
                "batching": "jax.jit(jax.vmap(root_find)) over systems", "rtol": rtol, "atol": atol,
                "max_steps": spec.max_steps, "throw": False, "x64": spec.dtype == "float64"}

    def prepare_own(self, spec: SolveSpec) -> OptimistixPrepared:
        return OptimistixPrepared(spec)
