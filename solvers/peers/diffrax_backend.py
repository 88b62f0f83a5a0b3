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
  script's ``jax.vmap(jax.jit(solve_one))``, re-vmapped at every call as the script did (the
  form that produced the published timings); variant "batched" is ONE ``diffeqsolve`` whose
  state is the whole ensemble, laid out (n_states, N) (measured faster than (N, n_states): each
  component is a contiguous row, so the stage sums are long vector operations). In fixed mode
  "batched" does the same arithmetic as vmap (same steps, same final states); in adaptive mode
  it takes ONE step size for the whole batch from the RMS of the scaled error over all
  n_states x N entries (diffrax's default norm, torchdiffeq's default, the replica's "shared"
  mode): step control "shared"; variant "tuple" is the same single solve on a PyTree state, a
  tuple of n_states (N,) arrays (an ordinary diffrax state: the vector field returns the rhs's
  tuple, no ``jnp.stack``), measured faster at small N (issue 33; docs/fairness.md);
* threads: on the CPU with ``spec.threads`` > 1 the ensemble is split over that many host
  devices with ``jax.shard_map`` (``solvers.jax_sharding``; the harness exposes them through
  ``XLA_FLAGS``); the "batched" adaptive norm is summed across devices (``lax.psum``), so the
  step stays one step for the whole ensemble. "vmap-of-jit" gets sharded inputs and XLA's
  automatic partitioning (the script's call structure is kept);
* ``EQX_ON_ERROR=nan`` (diffrax's FAQ for benchmarks: no runtime error checks on the host),
  set when this module is imported unless the environment sets it; equinox reads it once, at
  its own import, and ``settings()`` records the value in effect.

Under ``vmap`` diffrax's adaptive ``while_loop`` becomes one loop over the whole batch that runs
until the slowest trajectory finishes (finished lanes are masked, not stopped): "lockstep".
"""
from __future__ import annotations

import dataclasses

import os
import sys
from typing import Any

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec, Status
from solvers import jax_sharding
from solvers.peers import _common

# Before anything imports equinox (it reads the variable once, at import): diffrax's FAQ asks
# benchmarks to turn its runtime error checks into NaNs rather than host callbacks.
os.environ.setdefault("EQX_ON_ERROR", "nan")

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

#: The error norm of variant "batched" in adaptive mode (what ``_batch_rms`` computes).
BATCHED_NORM = ("RMS over all n_states x N entries of the scaled error "
                "err / (atol + rtol * max(|y0|, |y1|)): one step size for the whole ensemble "
                "(diffrax's default rms_norm applied to the batched state; torchdiffeq's default "
                "norm; the replica's 'shared' mode); with a split ensemble the sum of squares is "
                "added across devices (lax.psum), so it is the same norm")
#: Layout of the ensemble state in variant "batched" (see the module docstring for why).
BATCHED_LAYOUT = "(n_states, N)"


_BATCHING = {
    "": "jax.jit(jax.vmap(solve_one))",
    "vmap-of-jit": "jax.vmap(jax.jit(solve_one)), vmapped at every call (the paper's script)",
    "batched": f"one jax.jit(diffeqsolve) on the whole ensemble's state, laid out {BATCHED_LAYOUT}",
    "tuple": ("one jax.jit(diffeqsolve) on the whole ensemble's state as a PyTree: a tuple of "
              "n_states (N,) arrays (no jnp.stack in the vector field)"),
}
#: Variants that solve the whole ensemble in one diffeqsolve (one step size when adaptive).
BATCHED = ("batched", "tuple")


def _eqx_on_error() -> str:
    """The EQX_ON_ERROR equinox runs with: read back from equinox once imported."""
    config = sys.modules.get("equinox._config")
    if config is not None:
        return f"{config.EQX_ON_ERROR} (in effect in equinox)"
    return f"{os.environ.get('EQX_ON_ERROR', 'raise')} (environment; equinox not yet imported)"


def x64(dtype: str):
    """The JAX context that makes ``dtype`` the working precision (x64 on only for float64)."""
    import jax  # jax is optional: the module imports without it

    enable = dtype == "float64"
    if hasattr(jax, "enable_x64"):           # jax >= 0.8
        return jax.enable_x64(enable)
    from jax.experimental import disable_x64, enable_x64  # older jax

    return enable_x64() if enable else disable_x64()


def _shard_plan(spec: SolveSpec) -> "jax_sharding.ShardPlan":
    """The devices a solve uses. Kvaerno5 runs unsplit: inside ``jax.shard_map`` its implicit
    stage solve fails to trace here ("pytree does not match out_structure", diffrax 0.7.2), so
    it gets one CPU device, said in its settings (and its cpu_util shows it)."""
    if spec.method == "kvaerno5" and spec.device == "cpu" and spec.threads != 1:
        p = jax_sharding.plan(spec.device, 1, spec.n)
        return dataclasses.replace(p, note="kvaerno5: one CPU device, no split (its implicit solve "
                                           "does not trace under jax.shard_map in diffrax 0.7.2)")
    return jax_sharding.plan(spec.device, spec.threads, spec.n)


class DiffraxBackend(Backend):
    compilers = {"cpu": "xla"}
    name = "diffrax"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport({"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive"),
                                 "kvaerno5": ("adaptive",)}),
             "sde": KindSupport({"em": ("fixed",)}, "solvers.peers.diffrax_sde"),  # Euler-Maruyama
             "event": KindSupport({"tsit5_event": ("adaptive",)}, "solvers.peers.diffrax_events")}
    variants = ("", "vmap-of-jit", "batched", "tuple")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("jax", device, "diffrax")

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.variant == "tuple" and spec.prob.rhs_array is not None:
            return "variant 'tuple' needs a per-component rhs (this problem's rhs is one array)"
        return _common.controller_reason(self.name, spec)

    def step_control(self, spec: SolveSpec) -> str:
        if spec.mode == "fixed":
            return "none"
        return "shared" if spec.variant in BATCHED else "lockstep"

    def controller_settings(self, spec: SolveSpec) -> dict[str, Any]:
        """The step-size controller's arguments (also what ``prepare`` passes to diffrax)."""
        if spec.mode == "fixed":
            return {"class": "ConstantStepSize"}
        ctrl = self._pid_settings(spec)
        ctrl["norm"] = (BATCHED_NORM if spec.variant in BATCHED else
                        "diffrax default rms_norm over the trajectory's own n_states entries")
        return ctrl

    def _pid_settings(self, spec: SolveSpec) -> dict[str, Any]:
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

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
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
            "batching": _BATCHING[spec.variant],
            "step_control": self.step_control(spec),
            "compilation": "XLA via jax.jit, traced and compiled on the first run() call",
            "sync": "jax.block_until_ready on every output",
            "device_placement": "jax.device_put onto the devices below, in prepare",
            "eqx_on_error": _eqx_on_error(),
            "threads": spec.threads,
            **_shard_plan(spec).settings(),
        }
        if spec.variant == "vmap-of-jit" and s["jax_devices"] > 1:
            s["sharding"] = (f"inputs split over {s['jax_devices']} CPU devices (NamedSharding); "
                             f"XLA partitions the per-trajectory jit automatically (the script's "
                             f"call structure is kept, no shard_map)")
        if spec.method == "kvaerno5":
            s["root_finder"] = "diffrax default VeryChord, rtol/atol taken from the controller"
        return s

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return _DiffraxPrepared(self, spec)


class _DiffraxPrepared(Prepared):
    """Inputs on the device and the callable built; compilation happens on the first ``run``.

    Every variant's callable returns ``(ys (N, len(times), n_states), accepted (N,),
    rejected (N,), steps (N,), status (N,))``: the trajectory axis first, so the same code
    splits it over devices and fetches it.
    """

    dispatch = "jax"

    def __init__(self, backend: DiffraxBackend, spec: SolveSpec) -> None:
        # diffrax and jax are optional: this backend reports itself unavailable without them
        import diffrax
        import jax
        import jax.numpy as jnp

        self.spec = spec
        self._x64 = lambda: x64(spec.dtype)
        prob = spec.prob
        rhs = prob.rhs_for(jnp)
        n_states = prob.n_states
        n_params = prob.n_params
        batched = spec.variant in BATCHED
        tuple_state = spec.variant == "tuple"
        self.plan = _shard_plan(spec)

        rhs_array = None if prob.rhs_array is None else prob.rhs_array_for(jnp)

        def vector_field(t, y, args):
            if rhs_array is not None:
                # A large system: its vectorised form (jnp.roll over the state axis 0), as a
                # diffrax user writes it; works on (n_states,) and on (n_states, N) alike.
                return rhs_array(y, tuple(args[j] for j in range(n_params)), t)
            # vmap variants: y (n_states,), args (n_params,) of ONE trajectory (vmap adds the
            # batch). "batched": y (n_states, N), args (n_params, N): row i is component i of
            # every trajectory, so the same rhs source computes whole rows.
            du = rhs(tuple(y[i] for i in range(n_states)), tuple(args[j] for j in range(n_params)), t)
            if tuple_state:  # y is a tuple of (N,) arrays: return the rhs's tuple as it is
                return tuple(jnp.broadcast_to(jnp.asarray(d, dtype=y[0].dtype), y[0].shape) for d in du)
            return jnp.stack([jnp.broadcast_to(jnp.asarray(d, dtype=y.dtype), y.shape[1:])
                              for d in du])

        t0, t1 = (float(x) for x in prob.tspan)
        times, self._save_index = _common.output_grid(spec)
        saveat = (diffrax.SaveAt(t1=True) if spec.saveat is None
                  else diffrax.SaveAt(ts=np.asarray(times)))
        ctrl = backend.controller_settings(spec)
        pid_kwargs: dict[str, Any] = {}
        if spec.mode == "adaptive" and spec.controller != "default":
            pid_kwargs = {k: ctrl[k] for k in ("pcoeff", "icoeff", "dcoeff", "safety",
                                               "factormin", "factormax", "error_order")}
        if spec.mode == "adaptive" and batched:
            plan = self.plan

            def _batch_rms(x):
                # One norm for the whole ensemble; psum makes a split ensemble's norm the same.
                leaves = jax.tree_util.tree_leaves(x)
                total = sum(jnp.sum(jnp.square(leaf)) for leaf in leaves)
                count = sum(leaf.size for leaf in leaves) * plan.count
                return jnp.sqrt(jax_sharding.psum_if_sharded(total, plan) / count)

            pid_kwargs["norm"] = _batch_rms
        if spec.mode == "fixed":
            controller = diffrax.ConstantStepSize()
            max_steps = spec.n_steps
        else:
            controller = diffrax.PIDController(rtol=ctrl["rtol"], atol=ctrl["atol"], **pid_kwargs)
            max_steps = spec.max_steps
        solver = getattr(diffrax, SOLVERS[spec.method])()
        term = diffrax.ODETerm(vector_field)
        dt0 = spec.step
        results = diffrax.RESULTS

        def diffeqsolve(u0, p):
            sol = diffrax.diffeqsolve(term, solver, t0, t1, dt0, u0, args=p, saveat=saveat,
                                      stepsize_controller=controller, max_steps=max_steps,
                                      throw=False)
            # Our status codes, from diffrax's RESULTS (compared with ==, diffrax's public API).
            status = jnp.select([sol.result == getattr(results, name) for name, _ in _STATUS_CODES],
                                [int(code) for _, code in _STATUS_CODES], default=_OTHER_CODE)
            return (sol.ys, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"],
                    sol.stats["num_steps"], status)

        def solve_batched(u0, p):
            # u0: (n_states, n), p: (n_params, n); ys comes back (len(times), n_states, n).
            if tuple_state:  # u0, p: tuples of (n,) rows; ys a tuple of (len(times), n)
                ys, *counts = diffeqsolve(tuple(u0), tuple(p))
                ys, n = jnp.stack(ys, axis=1), u0[0].shape[0]
                return (jnp.transpose(ys, (2, 0, 1)), *(jnp.broadcast_to(c, (n,)) for c in counts))
            ys, *counts = diffeqsolve(u0, p)
            n = u0.shape[1]
            return (jnp.transpose(ys, (2, 0, 1)),
                    *(jnp.broadcast_to(c, (n,)) for c in counts))

        u0, p = spec.ensemble()
        if batched:
            u0, p = np.ascontiguousarray(u0.T), np.ascontiguousarray(p.T)
        if tuple_state:  # a PyTree state: one (N,) array per component / parameter
            u0, p = tuple(np.ascontiguousarray(r) for r in u0), tuple(np.ascontiguousarray(r) for r in p)
        in_axes = (0, 0) if tuple_state else (1, 1) if batched else (0, 0)
        with self._x64():
            self.u0, self.p = jax_sharding.place((u0, p), self.plan, in_axes)
        # The callable run() dispatches (a launch counter may wrap this attribute).
        if spec.variant == "vmap-of-jit":
            # Sharded inputs (if any) are partitioned by XLA inside the per-trajectory jit.
            self.fn = jax.jit(diffeqsolve)
        elif batched:
            self.fn = jax.jit(jax_sharding.shard(solve_batched, self.plan, in_axes))
        else:
            self.fn = jax.jit(jax_sharding.shard(jax.vmap(diffeqsolve), self.plan, in_axes))

    def run(self) -> Any:
        import jax  # jax is optional: imported only when this backend runs

        with self._x64():
            if self.spec.variant == "vmap-of-jit":
                # As the paper's script: a fresh vmap of the jitted per-trajectory solve per call.
                return jax.vmap(self.fn)(self.u0, self.p)
            return self.fn(self.u0, self.p)

    def sync(self, out: Any) -> None:
        import jax  # jax is optional: imported only when this backend runs

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
            "step_scope": ("none" if self.spec.mode == "fixed" else
                           "shared" if self.spec.variant in BATCHED else "lockstep"),
            "lockstep_iterations": int(steps.max()),
            "jax_devices": self.plan.count,
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
