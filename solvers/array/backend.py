"""The "array" backend: the fused solver's algorithms as whole-ensemble array operations."""
from __future__ import annotations

from typing import Any

import numpy as np

from problems import derive
from solvers.array.drivers import (GridSaver, LaneSaver, SharedSaver, Solution, solve_fixed,
                                   solve_lockstep, solve_shared)
from solvers.array.steppers import Ensemble, ExplicitStepper, Rosenbrock23Stepper
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec
from solvers.tableaus import EXPLICIT, ROSENBROCK23, PIController, get_controller, get_tableau

#: method -> the mode(s) it runs in (rk4 / rk4_38 carry no error estimate: fixed only).
METHODS: dict[str, tuple[str, ...]] = {
    "tsit5": ("fixed", "adaptive"),
    "rk4": ("fixed",),
    "rk4_38": ("fixed",),
    "rosenbrock23": ("adaptive",),
}
#: methods with dense output: adaptive solves may save anywhere (fixed solves save on their grid).
DENSE_OUTPUT = frozenset({"tsit5"})


def controller_for(spec: SolveSpec) -> PIController:
    """The spec's controller preset with DiffEqGPU's betas for the method's order."""
    order = ROSENBROCK23.order if spec.method == "rosenbrock23" else get_tableau(spec.method).order
    return get_controller(spec.controller, order=order)


def grid_steps(spec: SolveSpec) -> list[int]:
    """Fixed mode: the step index of each save time, which must lie on the grid t0 + k*dt."""
    t0 = spec.prob.tspan[0]
    steps = []
    for s in spec.saveat or ():
        k = (s - t0) / spec.step
        if abs(k - round(k)) > 1e-6 * max(1.0, abs(k)):
            raise ValueError(f"save time {s} is not on the fixed step grid t0 + k*{spec.step}: "
                             f"fixed mode saves at step points only")
        steps.append(int(round(k)))
    return steps


def namespace(device: str) -> Any:
    """The array module for ``device``: NumPy on "cpu", CuPy on "gpu" (imported only here)."""
    if device == "cpu":
        return np
    if device == "gpu":
        import cupy  # cupy is optional: only the GPU namespace needs it

        return cupy
    raise ValueError(f"invalid device {device!r}: choose one of cpu, gpu")


def to_host(x: Any) -> np.ndarray:
    """A NumPy copy of an array of either namespace (CuPy arrays have ``.get()``)."""
    if hasattr(x, "get") and not isinstance(x, np.ndarray):
        return x.get()
    return np.array(x)


class ArrayBackend(Backend):
    """The deliberately array-style replica of the fused solver (the paper's control experiment).

    Same tableaus (``solvers.tableaus``), PI controller constants and error norm as the fused
    kernel, but every stage, error estimate, norm and update is its own operation over arrays of
    the whole ensemble (``xp`` = NumPy on "cpu", CuPy on "gpu"; nothing fused): the
    architecture of ``EnsembleGPUArray``, batched torchdiffeq and ``jax.vmap``.

    Methods: tsit5 (fixed, adaptive), rk4 and rk4_38 (fixed), rosenbrock23 (adaptive; batched
    ``xp.linalg.solve`` on ``(N, n, n)`` stacks with the SymPy-derived Jacobian).

    Variants (adaptive mode; fixed mode has no step control, ``step_control`` "none", and
    accepts only the default variant):

    * ``""`` (default): per-trajectory step control in lockstep (``step_control`` "lockstep"):
      each trajectory has its own ``dt``, controller memory and accept/reject, exactly as the
      fused kernel, but all lanes iterate together, masked, until the slowest finishes
      (``jax.vmap`` semantics). Per-trajectory counts are each lane's own; the lanes' shared
      iteration count is ``notes["lockstep_iterations"]``.
    * ``"shared"``: one ``dt`` for the whole ensemble from one RMS error norm over every state
      of every trajectory, accepted or rejected for all (``EnsembleGPUArray`` / batched
      torchdiffeq semantics; ``step_control`` "shared"). Every trajectory reports the shared
      step counts.

    Saving: the final state always; ``saveat`` on the step grid in fixed mode, anywhere with
    Tsit5's dense output in adaptive mode (as the fused kernel).
    """

    compilers = {"cpu": "numpy"}
    name = "array"
    devices = ("cpu", "gpu")
    kinds = {
        "ode": KindSupport(METHODS),
        "sde": KindSupport({"em": ("fixed",)}, "solvers.array.sde"),  # Euler-Maruyama
        "pso": KindSupport({"pso": ("fixed",), "pso-async": ("fixed",)}, "solvers.array.pso"),
        "nonlinear": KindSupport({"newton": ("adaptive",), "trust-region": ("adaptive",)}, "solvers.array.nonlinear"),
        "event": KindSupport({"tsit5_event": ("adaptive",)}, "solvers.array.events"),  # one shared step
    }
    variants = ("", "shared", "philox")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        if device == "cpu":
            return True, f"numpy {np.__version__}"
        if device != "gpu":
            return False, f"invalid device {device!r}: choose one of cpu, gpu"
        try:
            import cupy  # cupy is optional: the GPU device reports itself unavailable without it
        except ImportError as exc:
            return False, f"cupy is not importable: {exc}"
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # noqa: BLE001 - CUDA driver/runtime errors have many types
            return False, f"cupy sees no CUDA device: {type(exc).__name__}: {exc}"
        if count < 1:
            return False, "cupy sees no CUDA device"
        return True, f"cupy {cupy.__version__}, {count} CUDA device(s)"

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.variant == "philox":
            return "variant 'philox' is an SDE variant"
        if spec.mode == "fixed" and spec.variant != "":
            return f"variant {spec.variant!r} is a step-control choice; fixed mode has none (use '')"
        if spec.saveat is not None:
            if spec.mode == "fixed":
                try:
                    grid_steps(spec)
                except ValueError as exc:
                    return str(exc)
            elif spec.method not in DENSE_OUTPUT:
                return (f"{spec.method} has no dense output: adaptive saveat is supported for "
                        f"{', '.join(sorted(DENSE_OUTPUT))} only")
        return None

    def step_control(self, spec: SolveSpec) -> str:
        if spec.mode == "fixed":
            return "none"
        return "shared" if spec.variant == "shared" else "lockstep"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step_control": self.step_control(spec),
            "namespace": "numpy" if spec.device == "cpu" else "cupy",
            "layout": "structure of arrays: states (n_states, N), one array op per operation",
            "fused": False,
            "method": spec.method,
        }
        if spec.mode == "fixed":
            out.update(dt=spec.step, n_steps=spec.n_steps, t_i="t0 + i*dt (integer counter)",
                       fsal_stage_in_fixed_steps="skipped (Tsit5: 6 RHS per step)")
        else:
            ctrl = controller_for(spec)
            rtol, atol = spec.tol
            out.update(
                dt0=spec.step, rtol=rtol, atol=atol, max_steps=spec.max_steps,
                controller=spec.controller, beta1=ctrl.beta1, beta2=ctrl.beta2, qmin=ctrl.qmin,
                qmax=ctrl.qmax, gamma=ctrl.gamma, qold_init=ctrl.qold_init, dtmin=ctrl.dtmin,
                error_norm=("RMS over all states of all trajectories" if spec.variant == "shared"
                            else "RMS over each trajectory's own states"),
                controller_arithmetic=("host float64 (pi_step_factor)" if spec.variant == "shared"
                                       else f"{spec.dtype}, elementwise, xp.power"),
                end_of_span="last step clipped to land on t1 (as the fused kernel)",
            )
        if spec.method == "rosenbrock23":
            out["linear_solver"] = "xp.linalg.solve on (N, n, n) stacks, 3 per attempt"
            out["jacobian"] = "SymPy-derived (problems.derive.derivatives(problem))"
        out["saveat"] = None if spec.saveat is None else list(spec.saveat)
        return out

    def prepare_own(self, spec: SolveSpec) -> "ArrayPrepared":
        return ArrayPrepared(spec)


class ArrayPrepared(Prepared):
    """One array-style ensemble solve, inputs already on the device.

    ``run`` reads the namespace from ``self.xp`` at every call (the launch counter swaps in an
    instrumented namespace) and builds its small stepper objects from it.
    """

    dispatch = "xp"

    def __init__(self, spec: SolveSpec) -> None:
        self.spec = spec
        self.device = spec.device
        self.xp = namespace(spec.device)
        self.problem = spec.prob
        self.dtype = spec.np_dtype
        u0, p = spec.ensemble()
        # structure of arrays: row i = state (parameter) i of every trajectory
        self.u0 = self.xp.asarray(np.ascontiguousarray(u0.T))
        self.params = self.xp.asarray(np.ascontiguousarray(p.T))
        if spec.mode == "fixed":
            self.n_steps = spec.n_steps
            self.save_steps = grid_steps(spec)
        self.ctrl = controller_for(spec) if spec.mode == "adaptive" else None
        self._derivative_functions: dict[int, tuple] = {}
        if spec.method == "rosenbrock23":
            derivs = derive.derivatives(self.problem)
            self.autonomous = all(e == 0 for e in derivs.tgrad_exprs)
            self._derivatives_for(self.xp)

    def _derivatives_for(self, xp: Any) -> tuple:
        """``(jac, tgrad)`` with their math namespace bound to ``xp`` (built once per namespace)."""
        key = id(xp)
        if key not in self._derivative_functions:
            self._derivative_functions[key] = (xp, *derive.derivatives(self.problem).functions(xp, float))
        return self._derivative_functions[key][1:]

    def _stepper(self, ens: Ensemble) -> Any:
        method = self.spec.method
        if method in EXPLICIT:
            return ExplicitStepper(EXPLICIT[method], ens)
        jac, tgrad = self._derivatives_for(ens.xp)
        return Rosenbrock23Stepper(ROSENBROCK23, ens, jac, tgrad, self.autonomous,
                                   self.problem.n_states)

    def run(self) -> Solution:
        xp, spec = self.xp, self.spec
        u0 = xp.asarray(self.u0)
        params = xp.asarray(self.params)
        ens = Ensemble(xp=xp, rhs=self.problem.rhs_for(xp), params=tuple(params),
                       n_lanes=spec.n, dtype=self.dtype,
                       rhs_array=None if self.problem.rhs_array is None else self.problem.rhs_array_for(xp))
        stepper = self._stepper(ens)
        n_states = self.problem.n_states
        with np.errstate(all="ignore"):  # masked lanes may overflow; status codes report it
            if spec.mode == "fixed":
                saver = None if spec.saveat is None else GridSaver(ens, self.save_steps, n_states)
                return solve_fixed(stepper, ens, u0, self.problem.tspan[0], spec.step,
                                   self.n_steps, saver)
            rtol, atol = spec.tol
            if spec.variant == "shared":
                saver = None if spec.saveat is None else SharedSaver(ens, spec.saveat, n_states)
                return solve_shared(stepper, ens, u0, self.problem.tspan, spec.step, rtol, atol,
                                    self.ctrl, spec.max_steps, saver)
            saver = None if spec.saveat is None else LaneSaver(ens, spec.saveat, n_states)
            return solve_lockstep(stepper, ens, u0, self.problem.tspan, spec.step, rtol, atol,
                                  self.ctrl, spec.max_steps, saver)

    def sync(self, out: Solution) -> None:
        if self.device == "gpu":
            import cupy  # cupy is optional: imported only on a GPU solve

            cupy.cuda.get_current_stream().synchronize()

    def fetch(self, out: Solution) -> SolveResult:
        n = self.spec.n

        def per_trajectory(x: Any) -> np.ndarray:
            if isinstance(x, (int, np.integer)):
                return np.full(n, int(x), dtype=np.int64)
            return to_host(x).astype(np.int64)

        return SolveResult(
            u_final=np.ascontiguousarray(to_host(out.u).T),
            saved=None if out.saved is None else to_host(out.saved),
            status=to_host(out.status).astype(np.int64),
            accepted=per_trajectory(out.accepted),
            rejected=per_trajectory(out.rejected),
            rhs_evals=per_trajectory(out.rhs_evals),
            notes=dict(out.notes),
        )

    def close(self) -> None:
        self.u0 = self.params = None
        self._derivative_functions.clear()
        if self.device == "gpu":
            import cupy  # cupy is optional: imported only on a GPU solve

            cupy.get_default_memory_pool().free_all_blocks()
