"""diffrax (JAX) as its experts run an ensemble: ``jax.jit(jax.vmap(diffeqsolve))``.

Settings (all explicit, all returned by ``settings()``):

* methods: ``tsit5`` and ``dopri5`` (fixed and adaptive), ``kvaerno5`` (adaptive; the stiff
  method the paper's Robertson script used, with diffrax's default root finder ``VeryChord``
  whose tolerances diffrax takes from the step-size controller);
* fixed mode: ``ConstantStepSize`` with ``dt0 = spec.step`` and ``max_steps = spec.n_steps``, so
  exactly n_steps steps (checked by the tests: 1000 for Lorenz);
* adaptive mode: ``PIDController(rtol, atol, ...)`` with ``dt0 = spec.step`` and
  ``max_steps = spec.max_steps``; controller preset "diffeqgpu" maps DiffEqGPU's PI constants
  (``_common.diffeqgpu_pid``: pcoeff 0.4, icoeff 0.3, safety 0.9, factormin 0.2, factormax 10),
  preset "default" keeps diffrax's defaults (pcoeff 0, icoeff 1: an I controller);
* saving: ``SaveAt(t1=True)`` (final state only), or ``SaveAt(ts=saveat + [t1])``;
* ``throw=False`` so a failed trajectory becomes a status, never an exception;
* precision: float32 runs under ``jax.enable_x64(False)`` and float64 runs under
  ``jax.enable_x64(True)``, entered around every device transfer and every call, so a float64
  solve never changes the dtype of a float32 solve in the same process;
* batching: variant "" is ``jax.jit(jax.vmap(solve_one))``; variant "vmap-of-jit" is the paper
  script's ``jax.vmap(jax.jit(solve_one))``, re-vmapped at every call as the script did.

Under ``vmap`` diffrax's adaptive ``while_loop`` becomes one loop over the whole batch that runs
until the slowest trajectory finishes (finished lanes are masked, not stopped): "lockstep".
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, Prepared, SolveResult, SolveSpec, Status, UnsupportedError
from solvers.peers import _common

#: method name -> diffrax solver class name
SOLVERS = {"tsit5": "Tsit5", "dopri5": "Dopri5", "kvaerno5": "Kvaerno5"}

#: Order of each method (for DiffEqGPU's order-scaled betas) and diffrax's error order
#: (``solver.error_order(terms)`` = min(order, embedded order) + 1 = 5 for all three).
METHOD_ORDER = {"tsit5": 5, "dopri5": 5, "kvaerno5": 5}
ERROR_ORDER = {"tsit5": 5, "dopri5": 5, "kvaerno5": 5}

#: Our status codes for diffrax's RESULTS; anything else is reported as "other" (see fetch).
_STATUS_CODES = (("successful", Status.SUCCESS), ("max_steps_reached", Status.MAX_STEPS),
                 ("dt_min_reached", Status.DT_UNDERFLOW), ("nonfinite", Status.NONFINITE))
_OTHER_CODE = 99


def _x64(dtype: str):
    """The JAX context that makes ``dtype`` the working precision (x64 on only for float64)."""
    import jax

    enable = dtype == "float64"
    if hasattr(jax, "enable_x64"):           # jax >= 0.8
        return jax.enable_x64(enable)
    from jax.experimental import disable_x64, enable_x64  # older jax

    return enable_x64() if enable else disable_x64()


class DiffraxBackend(Backend):
    name = "diffrax"
    devices = ("cpu", "gpu")
    methods = {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive"),
               "kvaerno5": ("adaptive",),
               "em": ("fixed",)}  # Euler-Maruyama on SDE problems (solvers/peers/diffrax_sde.py)
    variants = ("", "vmap-of-jit")
    kinds = ("ode", "sde")
    kind_methods = {"ode": frozenset({"tsit5", "dopri5", "kvaerno5"}), "sde": frozenset({"em"})}

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("jax", device, "diffrax")

    def check(self, spec: SolveSpec) -> str | None:
        reason = _common.common_check_reason(self, spec)
        if reason is None and spec.prob.kind == "sde" and (spec.variant or spec.saveat is not None):
            reason = "diffrax SDE solves: default variant, final state only"
        return reason

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "lockstep"

    def controller_settings(self, spec: SolveSpec) -> dict[str, Any]:
        """The step-size controller's arguments (also what ``prepare`` passes to diffrax)."""
        if spec.mode == "fixed":
            return {"class": "ConstantStepSize"}
        rtol, atol = spec.tol
        if spec.controller == "default":
            return {"class": "PIDController", "rtol": rtol, "atol": atol,
                    "coefficients": "diffrax defaults: pcoeff=0, icoeff=1, dcoeff=0, safety=0.9, "
                                    "factormin=0.2, factormax=10"}
        pid = _common.diffeqgpu_pid(METHOD_ORDER[spec.method], ERROR_ORDER[spec.method])
        return {
            "class": "PIDController", "rtol": rtol, "atol": atol,
            "pcoeff": pid["pcoeff"], "icoeff": pid["icoeff"], "dcoeff": pid["dcoeff"],
            "safety": pid["safety"], "factormin": pid["factormin"], "factormax": pid["factormax"],
            "error_order": ERROR_ORDER[spec.method],
            "mapping": (f"DiffEqGPU PI beta1={pid['diffeqgpu_beta1']:.4g}, "
                        f"beta2={pid['diffeqgpu_beta2']:.4g} -> pcoeff=beta2*k, "
                        f"icoeff=(beta1-beta2)*k with k=error_order"),
            "not_mapped": ("qold floor 1e-4 and its initial value (diffrax starts the previous "
                           "error at 1); on an accepted step diffrax never shrinks dt "
                           "(factor >= 1) while DiffEqGPU may; on a rejected step diffrax keeps "
                           "the P term and caps the factor at safety, DiffEqGPU uses "
                           "gamma/E**beta1 only"),
        }

    def settings(self, spec: SolveSpec) -> dict[str, Any]:
        if spec.prob.kind == "sde":
            from solvers.peers.diffrax_sde import settings

            return {"library": self.available(spec.device)[1], **settings(spec)}
        times, _ = _common.output_grid(spec)
        s: dict[str, Any] = {
            "library": self.available(spec.device)[1],
            "method": spec.method,
            "solver": f"diffrax.{SOLVERS[spec.method]}()",
            "mode": spec.mode,
            "dtype": spec.dtype,
            "x64": f"jax.enable_x64({spec.dtype == 'float64'}) around transfers and calls",
            "dt" if spec.mode == "fixed" else "dt0": spec.step,
            "max_steps": spec.n_steps if spec.mode == "fixed" else spec.max_steps,
            "stepsize_controller": self.controller_settings(spec),
            "saveat": ("SaveAt(t1=True): final state only" if spec.saveat is None
                       else f"SaveAt(ts={list(times)}): saveat grid plus t1"),
            "adjoint": "RecursiveCheckpointAdjoint (diffrax default; no gradients are taken)",
            "throw": False,
            "batching": ("jax.vmap(jax.jit(solve_one)), vmapped at every call (the paper's script)"
                         if spec.variant == "vmap-of-jit" else "jax.jit(jax.vmap(solve_one))"),
            "step_control": self.step_control(spec),
            "compilation": "XLA via jax.jit, traced and compiled on the first run() call",
            "sync": "jax.block_until_ready on every output",
            "device_placement": f"jax.device_put onto jax.devices({spec.device!r})[0] in prepare",
        }
        if spec.method == "kvaerno5":
            s["root_finder"] = "diffrax default VeryChord, rtol/atol taken from the controller"
        return s

    def prepare(self, spec: SolveSpec) -> Prepared:
        reason = self.check(spec)
        if reason:
            raise UnsupportedError(reason)
        if spec.prob.kind == "sde":
            from solvers.peers.diffrax_sde import DiffraxSDEPrepared

            return DiffraxSDEPrepared(spec, lambda: _x64(spec.dtype))
        return _DiffraxPrepared(self, spec)


class _DiffraxPrepared(Prepared):
    """Inputs on the device and the callable built; compilation happens on the first ``run``."""

    dispatch = "jax"

    def __init__(self, backend: DiffraxBackend, spec: SolveSpec) -> None:
        import diffrax
        import jax
        import jax.numpy as jnp

        self.spec = spec
        self._x64 = lambda: _x64(spec.dtype)
        prob = spec.prob
        rhs = prob.rhs_for(jnp)
        n_states = prob.n_states
        n_params = prob.n_params

        def vector_field(t, y, args):
            # y: (n_states,) and args: (n_params,) of ONE trajectory (vmap adds the batch).
            du = rhs(tuple(y[i] for i in range(n_states)), tuple(args[j] for j in range(n_params)), t)
            return jnp.stack([jnp.asarray(d, dtype=y.dtype) for d in du])

        t0, t1 = (float(x) for x in prob.tspan)
        times, self._save_index = _common.output_grid(spec)
        saveat = (diffrax.SaveAt(t1=True) if spec.saveat is None
                  else diffrax.SaveAt(ts=np.asarray(times)))
        ctrl = backend.controller_settings(spec)
        if spec.mode == "fixed":
            controller = diffrax.ConstantStepSize()
            max_steps = spec.n_steps
        elif spec.controller == "default":
            controller = diffrax.PIDController(rtol=ctrl["rtol"], atol=ctrl["atol"])
            max_steps = spec.max_steps
        else:
            controller = diffrax.PIDController(
                rtol=ctrl["rtol"], atol=ctrl["atol"], pcoeff=ctrl["pcoeff"],
                icoeff=ctrl["icoeff"], dcoeff=ctrl["dcoeff"], safety=ctrl["safety"],
                factormin=ctrl["factormin"], factormax=ctrl["factormax"],
                error_order=ctrl["error_order"])
            max_steps = spec.max_steps
        solver = getattr(diffrax, SOLVERS[spec.method])()
        term = diffrax.ODETerm(vector_field)
        dt0 = spec.step
        results = diffrax.RESULTS

        def solve_one(u0, p):
            sol = diffrax.diffeqsolve(term, solver, t0, t1, dt0, u0, args=p, saveat=saveat,
                                      stepsize_controller=controller, max_steps=max_steps,
                                      throw=False)
            # Our status codes, from diffrax's RESULTS (compared with ==, diffrax's public API).
            status = jnp.select([sol.result == getattr(results, name) for name, _ in _STATUS_CODES],
                                [int(code) for _, code in _STATUS_CODES], default=_OTHER_CODE)
            return (sol.ys, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"],
                    sol.stats["num_steps"], status)

        u0, p = spec.ensemble()
        with self._x64():
            device = jax.devices(spec.device)[0]
            self.u0 = jax.device_put(u0, device)
            self.p = jax.device_put(p, device)
        # The jitted callable run() dispatches (a launch counter may wrap this attribute).
        if spec.variant == "vmap-of-jit":
            self.fn = jax.jit(solve_one)
        else:
            self.fn = jax.jit(jax.vmap(solve_one))

    def run(self) -> Any:
        import jax

        with self._x64():
            if self.spec.variant == "vmap-of-jit":
                # As the paper's script: a fresh vmap of the jitted per-trajectory solve per call.
                return jax.vmap(self.fn)(self.u0, self.p)
            return self.fn(self.u0, self.p)

    def sync(self, out: Any) -> None:
        import jax

        jax.block_until_ready(out)

    def fetch(self, out: Any) -> SolveResult:
        ys, accepted, rejected, steps, codes = (np.asarray(x) for x in out)
        n = self.spec.n
        u_final, saved = _common.split_outputs(ys, self._save_index)
        accepted = _common.per_trajectory(accepted, n)
        rejected = _common.per_trajectory(rejected, n)
        steps = _common.per_trajectory(steps, n)
        codes = codes.astype(np.int64)
        other = codes == _OTHER_CODE
        status = np.where(other, int(Status.FAILED), codes)
        status = _common.mark_nonfinite(u_final, status)
        notes: dict[str, Any] = {
            "step_scope": "lockstep" if self.spec.mode == "adaptive" else "none",
            "lockstep_iterations": int(steps.max()),
            "steps_source": "sol.stats num_accepted_steps / num_rejected_steps / num_steps",
        }
        if other.any():
            notes["other_failures"] = (f"{int(other.sum())} trajectories ended with a diffrax "
                                       f"RESULTS outside success/max_steps/dt_min/nonfinite "
                                       f"(status FAILED)")
        if self.spec.method == "kvaerno5":
            rhs_evals = None
            notes["rhs_evals"] = ("not exposed: Kvaerno5 is implicit and diffrax does not count "
                                  "Newton-iteration evaluations")
        else:
            before, per_attempt = _common.explicit_rk_evals(self.spec.method)
            rhs_evals = before + per_attempt * steps
            notes["rhs_evals"] = (f"derived, not counted: {before} + {per_attempt} x num_steps "
                                  f"(FSAL tableau; diffrax does not expose evaluations)")
            notes["lockstep_rhs_evals"] = int(before + per_attempt * steps.max())
        return SolveResult(u_final=u_final, saved=saved, status=status, accepted=accepted,
                           rejected=rejected, rhs_evals=rhs_evals, notes=notes)

    def close(self) -> None:
        self.u0 = self.p = self.fn = None
