"""torchode: a batched PyTorch solver with a step size per sample.

Settings (all explicit, all returned by ``settings()``):

* methods ``tsit5`` and ``dopri5`` (``torchode.Tsit5`` / ``torchode.Dopri5``), the whole
  ensemble as one (N, n_states) batch, ``torch.no_grad()``;
* fixed mode: ``FixedStepController`` with ``dt0 = spec.step`` per sample and
  ``max_steps=None`` (torchode flags REACHED_MAX_STEPS whenever ``n_steps >= max_steps``, also
  on the step that reaches t1, so a cap of exactly n_steps would mark every fixed-step solve as
  failed). torchode advances ``t += dt`` (no integer step counter): where ``n * dt`` rounds
  below t1 it takes one extra, tiny step (SIR, dt = 0.1: 1001 steps); ``fetch`` reports the steps
  actually taken;
* adaptive mode: ``PIDController(atol, rtol, pcoeff, icoeff, dcoeff)`` with ``dt0 = spec.step``
  and ``max_steps = spec.max_steps``; preset "diffeqgpu" maps DiffEqGPU's PI constants
  (pcoeff 0.4, icoeff 0.3, dcoeff 0, safety 0.9, factor_min 0.2, factor_max 10), preset
  "default" uses the coefficients of torchode's own ``solve_ivp`` default (pcoeff 0.2,
  icoeff 0.5). Error norm: torchode's per-sample RMS of ``err / (atol + rtol * max(|y0|, |y1|))``
  (the same as DiffEqGPU's);
* time in float64 (torchode keeps a separate time dtype and converts dt to the data dtype inside
  each step), data in the spec's dtype;
* variant "compiled": ``torch.compile(adjoint.solve)``. (torchode's README compiles the module,
  ``torch.compile(solver).solve(...)``, but ``solve`` is not ``forward``, so that path runs
  eagerly: nothing is compiled.) Dynamo breaks the graph at the loop's data-dependent exit test
  and compiles the step and controller between breaks.
* variant "jit": ``torch.jit.script(adjoint)``, the form torchode's documentation shows for
  speed. TorchScript needs the right-hand side as a scriptable ``nn.Module``: it is generated
  from the problem's one ``rhs`` (``solvers.peers._torchscript``), never hand-written. Whether
  this torch can script torchode is probed once per mode (a tiny solve); when it cannot, the
  cell is refused with TorchScript's own error as the reason.

Step control: each sample has its own dt and controller state, but the loop iterates the whole
batch until every sample has finished (finished samples are masked, still computed) and stops
the WHOLE batch when any sample fails: "lockstep", as jax.vmap.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec, Status
from solvers import numeric_policy
from solvers.peers import _common
from solvers.peers._torchscript import generated_rhs_class

#: method name -> torchode step-method class
STEP_METHODS = {"tsit5": "Tsit5", "dopri5": "Dopri5"}
#: torchode's convergence_order() of each (the order its PID coefficients are divided by)
CONVERGENCE_ORDER = {"tsit5": 5, "dopri5": 5}
#: torchode.status_codes -> ours (GENERAL_ERROR = 1 and unknown codes -> FAILED)
_STATUS = {0: Status.SUCCESS, 1: Status.FAILED, 2: Status.DT_UNDERFLOW, 3: Status.MAX_STEPS,
           4: Status.NONFINITE}
#: torchode.solve_ivp's default PID coefficients (its documentation and source)
_TORCHODE_DEFAULT_PID = {"pcoeff": 0.2, "icoeff": 0.5, "dcoeff": 0.0}


class TorchodeBackend(Backend):
    name = "torchode"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport({"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive")})}
    variants = ("", "compiled", "jit")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("torch", device, "torchode")

    def check(self, spec: SolveSpec) -> str | None:
        # Explained before the generic "explicit method" refusal.
        if spec.prob.stiff:
            return (f"torchode has no stiff solver and {spec.problem} is stiff "
                    f"(its methods are explicit Runge-Kutta)")
        return super().check(spec)

    def check_own(self, spec: SolveSpec) -> str | None:
        reason = _common.controller_reason(self.name, spec)
        if reason is None and spec.variant == "jit":
            reason = _jit_reason(self, spec)
        return reason

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "lockstep"

    def controller_settings(self, spec: SolveSpec) -> dict[str, Any]:
        """The step-size controller's arguments (also what ``prepare`` passes to torchode)."""
        if spec.mode == "fixed":
            return {"class": "FixedStepController", "dt0": spec.step}
        rtol, atol = spec.tol
        if spec.controller == "default":
            return {"class": "PIDController", "atol": atol, "rtol": rtol, **_TORCHODE_DEFAULT_PID,
                    "safety": 0.9, "factor_min": 0.2, "factor_max": 10.0,
                    "source": "torchode.solve_ivp's default coefficients; torchode's other defaults"}
        pid = _common.diffeqgpu_pid(CONVERGENCE_ORDER[spec.method], CONVERGENCE_ORDER[spec.method])
        return {
            "class": "PIDController", "atol": atol, "rtol": rtol,
            "pcoeff": pid["pcoeff"], "icoeff": pid["icoeff"], "dcoeff": pid["dcoeff"],
            "safety": pid["safety"], "factor_min": pid["factormin"],
            "factor_max": pid["factormax"],
            "mapping": (f"DiffEqGPU PI beta1={pid['diffeqgpu_beta1']:.4g}, "
                        f"beta2={pid['diffeqgpu_beta2']:.4g} -> pcoeff=beta2*k, "
                        f"icoeff=(beta1-beta2)*k with k=convergence_order=5"),
            "not_mapped": ("qold floor 1e-4 and its initial value (torchode starts the previous "
                           "error ratio at 1); torchode clamps the factor to [0.2, 10] on accept "
                           "and reject alike and keeps the P term on rejection"),
        }

    def compiler(self, spec: SolveSpec) -> str | None:
        """Inductor for the torch.compile variant, else eager ATen kernels."""
        if spec.device != "cpu":
            return None
        return "inductor" if spec.variant in ("compiled",) else "torch-eager"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        times, _ = _common.output_grid(spec)
        return {
            "library": self.available(spec.device)[1],
            "method": spec.method,
            "step_method": f"torchode.{STEP_METHODS[spec.method]}",
            "mode": spec.mode,
            "dtype": spec.dtype,
            "time_dtype": "float64",
            "dt" if spec.mode == "fixed" else "dt0": spec.step,
            "max_steps": None if spec.mode == "fixed" else spec.max_steps,
            "stepsize_controller": self.controller_settings(spec),
            "saveat": ("final state only (t_eval=None: interpolated at t_end)" if spec.saveat is None
                       else f"t_eval={list(times)}"),
            "batching": "one (N, n_states) batch through AutoDiffAdjoint.solve",
            "step_control": self.step_control(spec),
            "grad": "torch.no_grad()",
            "compilation": _COMPILATION[spec.variant],
            "rhs": ("nn.Module generated from the problem's rhs by solvers.peers._torchscript "
                    "(SymPy trace, torch namespace), scripted with the solver"
                    if spec.variant == "jit" else
                    "the problem's rhs with the torch namespace, on y.unbind(1)"),
            "sync": ("torch.cuda.synchronize() on GPU; torchode's loop also syncs every step to "
                     "test for termination"),
            "torch_threads": _torch_threads(),
        }

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return _TorchodePrepared(self, spec)


_COMPILATION = {
    "": "none (eager PyTorch)",
    "compiled": "torch.compile(adjoint.solve) (inductor), compiled on the first run()",
    "jit": "torch.jit.script(AutoDiffAdjoint(...)) in prepare (torchode's documented fast path)",
}

#: variant "jit" probe results, per (mode, method): None (torchode scripts here) or why not.
_JIT_PROBES: dict[tuple[str, str], str | None] = {}


def _jit_reason(backend: "TorchodeBackend", spec: SolveSpec) -> str | None:
    """Probe once per mode and method whether torch.jit.script of torchode's solver works."""
    key = (spec.mode, spec.method)
    if key not in _JIT_PROBES:
        probe = spec.with_(n=2, device="cpu", saveat=None, variant="jit")
        try:
            prep = _TorchodePrepared(backend, probe)
            prep.fetch(prep.run())
            _JIT_PROBES[key] = None
        except Exception as exc:  # TorchScript's own message is the reason we report
            # torch and torchode are optional: imported (again) only to name their versions
            import torch
            import torchode

            first = str(exc).strip().splitlines()
            _JIT_PROBES[key] = (f"torch.jit.script of torchode's AutoDiffAdjoint fails with "
                                f"torch {torch.__version__}, torchode {torchode.__version__}: "
                                f"{type(exc).__name__}: {' '.join(first)[:300]}")
    return _JIT_PROBES[key]


def _torch_threads() -> int | None:
    try:
        import torch  # torch is optional: the thread count is recorded only where it imports
    except ImportError:
        return None
    return torch.get_num_threads()


class _TorchodePrepared(Prepared):
    dispatch = "torch"

    def __init__(self, backend: TorchodeBackend, spec: SolveSpec) -> None:
        # torch and torchode are optional: this backend reports itself unavailable without them
        import torch
        import torchode

        self.spec = spec
        self._gpu = spec.device == "gpu"
        dev = torch.device("cuda" if self._gpu else "cpu")
        prob = spec.prob
        n = spec.n
        u0, p = spec.ensemble()
        params = tuple(torch.as_tensor(np.ascontiguousarray(p[:, j]), device=dev)
                       for j in range(p.shape[1]))
        if spec.variant == "jit":
            f = generated_rhs_class(prob)(torch.as_tensor(p, device=dev))
        else:
            rhs = prob.rhs_for(torch)

            def f(t, y):
                # y: (N, n_states) -> (N, n_states)
                return _common.torch_stack_columns(rhs(y.unbind(1), params, t), y)

        term = torchode.ODETerm(f)
        step_method = getattr(torchode, STEP_METHODS[spec.method])(term=term)
        ctrl = backend.controller_settings(spec)
        if spec.mode == "fixed":
            controller = torchode.FixedStepController()
            max_steps = None
        else:
            controller = torchode.PIDController(
                atol=ctrl["atol"], rtol=ctrl["rtol"], pcoeff=ctrl["pcoeff"],
                icoeff=ctrl["icoeff"], dcoeff=ctrl["dcoeff"], term=term, safety=ctrl["safety"],
                factor_min=ctrl["factor_min"], factor_max=ctrl["factor_max"])
            max_steps = spec.max_steps
        self.adjoint = torchode.AutoDiffAdjoint(step_method, controller, max_steps=max_steps).to(dev)
        t0, t1 = (float(x) for x in prob.tspan)
        times, self._save_index = _common.output_grid(spec)
        t_eval = None
        if spec.saveat is not None:
            t_eval = torch.tensor(times, dtype=torch.float64, device=dev).expand(n, -1)
        self.problem = torchode.InitialValueProblem(
            y0=torch.as_tensor(u0, device=dev),
            t_start=torch.full((n,), t0, dtype=torch.float64, device=dev),
            t_end=torch.full((n,), t1, dtype=torch.float64, device=dev),
            t_eval=t_eval)
        self.dt0 = torch.full((n,), spec.step, dtype=torch.float64, device=dev)
        # The callable run() uses; torch.compile only wraps here, compiling on the first call.
        self.solve = self.adjoint.solve
        if spec.variant == "compiled":
            numeric_policy.inductor_config()
            self.solve = torch.compile(self.adjoint.solve)
        elif spec.variant == "jit":
            self.solve = torch.jit.script(self.adjoint).solve

    def run(self) -> Any:
        import torch  # torch is optional: imported only when this backend runs

        with torch.no_grad():
            return self.solve(self.problem, dt0=self.dt0)

    def sync(self, out: Any) -> None:
        if self._gpu:
            import torch  # torch is optional: imported only when this backend runs

            torch.cuda.synchronize()

    def fetch(self, out: Any) -> SolveResult:
        spec, n = self.spec, self.spec.n
        ys = out.ys.detach().cpu().numpy()
        u_final, saved = _common.split_outputs(ys, self._save_index)
        raw = out.status.detach().cpu().numpy().astype(np.int64).reshape(-1)
        raw = np.broadcast_to(raw, (n,))
        status = np.array([int(_STATUS.get(int(c), Status.FAILED)) for c in raw],
                          dtype=np.int64)
        status = _common.mark_nonfinite(u_final, status)
        stats = {k: v.detach().cpu().numpy() for k, v in out.stats.items()}
        steps = _common.per_trajectory(stats["n_steps"], n)
        accepted = _common.per_trajectory(stats["n_accepted"], n)
        before, per_attempt = _common.explicit_rk_evals(spec.method)
        notes: dict[str, Any] = {
            "step_scope": "none" if spec.mode == "fixed" else "lockstep",
            "steps_source": "sol.stats n_steps / n_accepted (per sample)",
            "rhs_evals": (f"derived per trajectory: {before} + {per_attempt} x n_steps; "
                          f"torchode's n_f_evals counts batch calls (every sample is evaluated "
                          f"at every call), stored as lockstep_rhs_evals"),
            "lockstep_iterations": int(steps.max()),
        }
        if "n_f_evals" in stats:
            notes["lockstep_rhs_evals"] = int(np.max(stats["n_f_evals"]))
        if spec.mode == "fixed" and int(accepted.max()) != spec.n_steps:
            notes["fixed_steps_taken"] = (f"{int(accepted.max())} steps for n_steps={spec.n_steps}: "
                                          f"torchode accumulates t += dt and finishes with a short "
                                          f"step when n*dt rounds below t1")
        unknown = sorted({int(c) for c in raw} - set(_STATUS))
        if unknown:
            notes["other_failures"] = f"torchode status codes {unknown} reported as FAILED"
        if np.any(status != int(Status.SUCCESS)):
            notes["batch_stopped"] = ("torchode stops the whole batch when any sample fails: "
                                      "samples still marked successful may not have reached t1")
        return SolveResult(u_final=u_final, saved=saved, status=status, accepted=accepted,
                           rejected=steps - accepted, rhs_evals=before + per_attempt * steps,
                           notes=notes)

    def close(self) -> None:
        self.adjoint = self.problem = self.solve = None
        if self._gpu:
            import torch  # torch is optional: imported only when this backend runs

            torch.cuda.empty_cache()
