"""torchdiffeq as its users batch an ensemble: the whole ensemble is one (N, n_states) tensor.

Settings (all explicit, all returned by ``settings()``):

* ``rk4_38``, fixed step: ``odeint(..., method="rk4", options={"step_size": dt})`` with
  ``t = [t0, t1]`` (plus any saveat times). torchdiffeq's "rk4" is Kutta's 3/8 rule
  (``solvers.tableaus.RK4_38``), not the classic RK4, hence our name. Its grid is
  ``t0 + i * dt`` (an integer step counter, as DiffEqGPU), the last point set to t1; outputs
  between grid points are linearly interpolated (torchdiffeq's default ``interp="linear"``).
* ``dopri5``, adaptive: ``odeint(..., method="dopri5", rtol, atol, options={first_step,
  max_num_steps, safety, ifactor, dfactor})``. torchdiffeq takes ONE step size for the whole
  batch from ONE error norm over the batch: step control "shared". Variant "" keeps
  torchdiffeq's norm (RMS over all N x n_states entries, so one inaccurate trajectory is diluted
  by the others); variant "max-norm" passes ``norm=`` the largest per-trajectory RMS, so every
  trajectory meets the tolerance (still one shared step). Its controller is an I controller
  (exponent 1/5) that cannot be made PI: preset "diffeqgpu" sets safety=0.9, ifactor=10,
  dfactor=0.2 (DiffEqGPU's gamma, qmax, qmin, which are also torchdiffeq's defaults).
* ``tsit5``: unsupported (torchdiffeq has no Tsit5); stiff problems: unsupported (no stiff
  solver).
* variant "vmap": the paper ran ``torch.vmap`` over a patched torchdiffeq fork; we try
  ``torch.func.vmap`` over upstream ``odeint`` (probed once per method) and report the
  exception as the reason when it fails.
* variant "compiled": the right-hand side evaluation compiled with ``torch.compile``
  (inductor fuses the n_states component expressions and the stack into one kernel) and the
  solve run under ``torch.inference_mode()`` (no autograd bookkeeping at all, stronger than
  ``no_grad``); torchdiffeq's own loop stays Python, as a user can compile only the function
  they hand to it. torchdiffeq's norm and step control are the default variant's.
* ``torch.no_grad()`` for the other variants (kept, so "" stays the form the paper ran);
  ``torch.cuda.synchronize()`` in ``sync`` on a GPU.

Counting: the right-hand side is wrapped to count its calls (each call evaluates all N
trajectories), and torchdiffeq's step callbacks (``callback_step`` / ``callback_accept_step``
/ ``callback_reject_step``) count steps. With a shared step every trajectory gets the same
counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec, Status
from solvers import numeric_policy
from solvers.peers import _common

#: our method name -> torchdiffeq's
TORCHDIFFEQ_METHOD = {"rk4_38": "rk4", "dopri5": "dopri5"}

#: torchdiffeq's AssertionError messages -> our status (its adaptive loop asserts, not returns).
_ASSERTION_STATUS = (("max_num_steps exceeded", Status.MAX_STEPS),
                     ("underflow in dt", Status.DT_UNDERFLOW),
                     ("non-finite values", Status.NONFINITE))

#: variant "vmap" probe results, per method: None (works) or the reason it does not.
_VMAP_PROBES: dict[str, str | None] = {}


def odeint_times(spec: SolveSpec) -> list[float]:
    """The ``t`` odeint is given: t0 first (odeint starts at t[0]), then the output grid."""
    times, _ = _common.output_grid(spec)
    t0 = float(spec.prob.tspan[0])
    return list(times) if times[0] == t0 else [t0, *times]


def _torch_device(device: str):
    import torch  # torch is optional: imported only when this backend runs

    return torch.device("cuda" if device == "gpu" else "cpu")


class _CountingRHS:
    """The problem's rhs for torchdiffeq: ``f(t, y)`` on the (N, n_states) batch, counting calls.

    Each call evaluates all N trajectories. Subclasses add torchdiffeq's documented step hooks:
    torchdiffeq warns about hooks a solver does not support, so each solver family gets only
    its own.
    """

    def __init__(self, rhs, params) -> None:
        self.rhs = rhs
        self.params = params  # tuple of (N,) parameter columns
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.steps = 0
        self.accepted = 0
        self.rejected = 0

    def __call__(self, t, y):
        self.calls += 1
        return self.evaluate(t, y)

    def evaluate(self, t, y):
        return _common.torch_stack_columns(self.rhs(y.unbind(-1), self.params, t), y)

    def compile(self) -> None:
        """Variant "compiled": the evaluation (not the counter) through torch.compile."""
        import torch  # torch is optional: imported only when this backend runs

        numeric_policy.inductor_config()
        self.evaluate = torch.compile(self.evaluate, dynamic=False)


class _FixedGridCountingRHS(_CountingRHS):
    """For fixed-grid solvers: ``callback_step`` runs once per grid step."""

    def callback_step(self, t0, y0, dt) -> None:
        self.steps += 1


class _AdaptiveCountingRHS(_CountingRHS):
    """For adaptive solvers: one accept or reject callback per step attempt."""

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.accepted += 1

    def callback_reject_step(self, t0, y0, dt) -> None:
        self.rejected += 1


def _max_trajectory_rms(x):
    """Error norm of variant "max-norm": the largest per-trajectory RMS of a (N, n) tensor."""
    return x.pow(2).mean(dim=-1).sqrt().max()


class TorchdiffeqBackend(Backend):
    name = "torchdiffeq"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport({"rk4_38": ("fixed",), "dopri5": ("adaptive",)}),
             "event": KindSupport({"dopri5_event": ("adaptive",)}, "solvers.peers.torchdiffeq_events")}
    variants = ("", "max-norm", "vmap", "compiled")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("torch", device, "torchdiffeq")

    def check(self, spec: SolveSpec) -> str | None:
        # What torchdiffeq's names would suggest, explained before the generic "no method" refusal.
        if spec.method == "tsit5":
            return "torchdiffeq has no Tsit5 (its 5(4) pair is dopri5; its 'rk4' is rk4_38)"
        if spec.method == "rk4":
            return ("torchdiffeq's 'rk4' is Kutta's 3/8 rule, not the classic RK4: "
                    "request method 'rk4_38'")
        if spec.prob.stiff:
            return (f"torchdiffeq has no stiff solver and {spec.problem} is stiff (its methods "
                    f"are explicit; 'implicit_adams' is fixed-step with fixed-point iteration)")
        if spec.variant == "max-norm" and spec.mode != "adaptive":
            return "variant 'max-norm' changes the error norm: adaptive mode only"
        return super().check(spec)

    def check_own(self, spec: SolveSpec) -> str | None:
        reason = _common.controller_reason(self.name, spec)
        if reason:
            return reason
        if spec.variant == "vmap":
            return _vmap_reason(spec)
        return None

    def step_control(self, spec: SolveSpec) -> str:
        if spec.mode == "fixed":
            return "none"
        return "per-trajectory" if spec.variant == "vmap" else "shared"

    def options(self, spec: SolveSpec) -> dict[str, Any]:
        """torchdiffeq's ``options`` for ``spec``, as prepare passes them (variant "max-norm" adds
        ``norm``)."""
        if spec.mode == "fixed":
            return {"step_size": spec.step}
        opts: dict[str, Any] = {"first_step": spec.step, "max_num_steps": spec.max_steps}
        if spec.controller == "diffeqgpu":
            ctrl = _common.diffeqgpu_pid(5, 5)
            opts.update(safety=ctrl["safety"], ifactor=ctrl["factormax"], dfactor=ctrl["factormin"])
        return opts

    def compiler(self, spec: SolveSpec) -> str | None:
        """Inductor for the torch.compile variant, else eager ATen kernels."""
        if spec.device != "cpu":
            return None
        return "inductor" if spec.variant in ("compiled",) else "torch-eager"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        times, _ = _common.output_grid(spec)
        s: dict[str, Any] = {
            "library": self.available(spec.device)[1],
            "method": spec.method,
            "torchdiffeq_method": TORCHDIFFEQ_METHOD[spec.method],
            "mode": spec.mode,
            "dtype": spec.dtype,
            "time_dtype": "float64 (t tensor; torchdiffeq's adaptive default)",
            "t": odeint_times(spec),
            "options": self.options(spec),
            "saveat": "final state only" if spec.saveat is None else f"outputs at {list(times)}",
            "batching": ("torch.func.vmap over a per-trajectory odeint" if spec.variant == "vmap"
                         else "one (N, n_states) tensor through one odeint call"),
            "step_control": self.step_control(spec),
            "grad": "torch.inference_mode()" if spec.variant == "compiled" else "torch.no_grad()",
            "compilation": ("torch.compile of the rhs evaluation (inductor), compiled on the "
                            "first run(); torchdiffeq's loop stays eager Python"
                            if spec.variant == "compiled" else "none (eager PyTorch)"),
            "sync": "torch.cuda.synchronize() on GPU; none needed on CPU",
            "torch_threads": _torch_threads(),
        }
        if spec.mode == "fixed":
            s["method_note"] = "torchdiffeq 'rk4' = Kutta's 3/8 rule (solvers.tableaus.RK4_38)"
            s["interp"] = "linear between grid points (torchdiffeq default) for saveat times"
        else:
            s["rtol"], s["atol"] = spec.tol
            s["max_num_steps_scope"] = ("torchdiffeq counts step attempts per output interval "
                                        "(between consecutive t), not per solve")
            s["error_norm"] = ("max over trajectories of the per-trajectory RMS"
                               if spec.variant == "max-norm"
                               else "torchdiffeq default: RMS over all N x n_states entries")
            s["controller"] = ("I controller: dt *= clamp(safety / E**(1/5), dfactor (reject only), "
                               "ifactor); PI coefficients cannot be set in torchdiffeq")
            s["dopri5_note"] = ("torchdiffeq's embedded weights are Shampine's alternative 4th-order "
                                "set (see solvers.tableaus.DOPRI5)")
        return s

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return _TorchdiffeqPrepared(self, spec)


def _torch_threads() -> int | None:
    try:
        import torch  # torch is optional: the thread count is recorded only where it imports
    except ImportError:
        return None
    return torch.get_num_threads()


def _vmap_reason(spec: SolveSpec) -> str | None:
    """Probe (once per method) whether torch.func.vmap over upstream odeint works at all."""
    if spec.method not in _VMAP_PROBES:
        import torch  # torch is optional: imported only when this backend runs

        probe = spec.with_(n=2, device="cpu", saveat=None)
        t0 = float(spec.prob.tspan[0])
        try:
            with torch.no_grad():
                _VmapSolve(probe, [t0, t0 + 2 * spec.step])()
            _VMAP_PROBES[spec.method] = None
        except Exception as exc:  # the exact failure is the reason we report
            _VMAP_PROBES[spec.method] = (
                f"torch.func.vmap over upstream torchdiffeq.odeint ({spec.method}) fails: "
                f"{type(exc).__name__}: {exc}")
    return _VMAP_PROBES[spec.method]


class _VmapSolve:
    """``torch.func.vmap`` of a per-trajectory odeint, as the paper's PyTorch script did.

    Args:
        spec: the solve.
        t_list: the times odeint outputs, starting at t0.
    """

    def __init__(self, spec: SolveSpec, t_list: list[float]) -> None:
        import torch  # torch is optional: imported only when this backend runs

        dev = _torch_device(spec.device)
        u0, p = spec.ensemble()
        self.u0 = torch.as_tensor(u0, device=dev)
        self.p = torch.as_tensor(p, device=dev)
        self.t = torch.tensor(t_list, dtype=torch.float64, device=dev)
        self.rhs = spec.prob.rhs_for(torch)
        self.method = TORCHDIFFEQ_METHOD[spec.method]
        self.kwargs = {"rtol": spec.tol[0], "atol": spec.tol[1]} if spec.mode == "adaptive" else {}
        self.options = TorchdiffeqBackend().options(spec)

    def solve_one(self, u, p):
        from torchdiffeq import odeint  # torchdiffeq is optional: imported only when this backend runs

        rhs = self.rhs

        def f(t, y):
            return _common.torch_stack_columns(rhs(y.unbind(-1), p.unbind(-1), t), y)

        return odeint(f, u, self.t, method=self.method, options=dict(self.options), **self.kwargs)

    def __call__(self):
        import torch  # torch is optional: imported only when this backend runs

        return torch.func.vmap(self.solve_one)(self.u0, self.p)  # (N, len(t), n_states)


@dataclass
class _Run:
    """What one ``run`` leaves for ``sync``/``fetch``."""

    ys: Any = None                    # (len(t), N, n_states) tensor, or (N, len(t), n) for vmap
    calls: int = 0
    steps: int = 0
    accepted: int = 0
    rejected: int = 0
    failure: Status | None = None
    message: str = ""


class _TorchdiffeqPrepared(Prepared):
    dispatch = "torch"

    def __init__(self, backend: TorchdiffeqBackend, spec: SolveSpec) -> None:
        import torch  # torch is optional: imported only when this backend runs

        self.spec = spec
        self._gpu = spec.device == "gpu"
        times, self._save_index = _common.output_grid(spec)
        self._t_list = odeint_times(spec)
        # odeint outputs at every t: drop the leading t0 unless it is an output time too.
        self._offset = len(self._t_list) - len(times)
        if spec.variant == "vmap":
            self._vmap = _VmapSolve(spec, self._t_list)
            return
        self._vmap = None
        dev = _torch_device(spec.device)
        u0, p = spec.ensemble()
        self.u0 = torch.as_tensor(u0, device=dev)
        params = tuple(torch.as_tensor(np.ascontiguousarray(p[:, j]), device=dev)
                       for j in range(p.shape[1]))
        counting = _FixedGridCountingRHS if spec.mode == "fixed" else _AdaptiveCountingRHS
        self.func = counting(spec.prob.rhs_for(torch), params)
        if spec.variant == "compiled":
            self.func.compile()
        self.t = torch.tensor(self._t_list, dtype=torch.float64, device=dev)
        self.method = TORCHDIFFEQ_METHOD[spec.method]
        self.kwargs: dict[str, Any] = {}
        if spec.mode == "adaptive":
            self.kwargs = {"rtol": spec.tol[0], "atol": spec.tol[1]}
        self.opts = backend.options(spec)
        if spec.variant == "max-norm":
            self.opts["norm"] = _max_trajectory_rms

    def run(self) -> _Run:
        import torch  # torch and torchdiffeq are optional: imported only when this backend runs
        from torchdiffeq import odeint

        if self._vmap is not None:
            with torch.no_grad():
                return _Run(ys=self._vmap())
        self.func.reset()
        out = _Run()
        grad_mode = torch.inference_mode if self.spec.variant == "compiled" else torch.no_grad
        try:
            with grad_mode():
                out.ys = odeint(self.func, self.u0, self.t, method=self.method,
                                options=dict(self.opts), **self.kwargs)
        except AssertionError as exc:
            # torchdiffeq stops the whole batch with an assertion; a shared status for all.
            text = str(exc)
            matched = [code for key, code in _ASSERTION_STATUS if key in text]
            if not matched:
                raise
            out.failure, out.message = matched[0], text
        out.calls, out.steps = self.func.calls, self.func.steps
        out.accepted, out.rejected = self.func.accepted, self.func.rejected
        return out

    def sync(self, out: _Run) -> None:
        if self._gpu:
            import torch  # torch is optional: imported only when this backend runs

            torch.cuda.synchronize()

    def fetch(self, out: _Run) -> SolveResult:
        spec, n = self.spec, self.spec.n
        if out.failure is not None:
            nan = np.full((n, spec.prob.n_states), np.nan, dtype=spec.np_dtype)
            saved = None if spec.saveat is None else np.full(
                (n, len(spec.saveat), spec.prob.n_states), np.nan, dtype=spec.np_dtype)
            return SolveResult(u_final=nan, saved=saved, status=np.full(n, int(out.failure)),
                               accepted=_common.per_trajectory(out.accepted, n),
                               rejected=_common.per_trajectory(out.rejected, n),
                               rhs_evals=_common.per_trajectory(out.calls, n),
                               notes={"step_scope": self.backend_scope(),
                                      "failure": out.message})
        ys = out.ys.detach().cpu().numpy()
        if self._vmap is None:
            ys = np.moveaxis(ys, 0, 1)          # (N, len(t), n_states)
        ys = ys[:, self._offset:, :]
        u_final, saved = _common.split_outputs(ys, self._save_index)
        status = _common.mark_nonfinite(u_final, np.zeros(n, dtype=np.int64))
        notes: dict[str, Any] = {"step_scope": self.backend_scope()}
        if self._vmap is not None:
            notes["counts"] = "not available under vmap"
            return SolveResult(u_final=u_final, saved=saved, status=status, notes=notes)
        if spec.mode == "fixed":
            accepted, rejected = out.steps, 0
            notes["steps_source"] = "torchdiffeq callback_step (one per grid step)"
        else:
            accepted, rejected = out.accepted, out.rejected
            notes["steps_source"] = "torchdiffeq callback_accept_step / callback_reject_step"
        notes["rhs_evals"] = ("counted: calls of the batched rhs (each evaluates all N "
                              "trajectories); shared by every trajectory")
        return SolveResult(u_final=u_final, saved=saved, status=status,
                           accepted=_common.per_trajectory(accepted, n),
                           rejected=_common.per_trajectory(rejected, n),
                           rhs_evals=_common.per_trajectory(out.calls, n), notes=notes)

    def backend_scope(self) -> str:
        if self.spec.mode == "fixed":
            return "none"
        return "per-trajectory" if self._vmap is not None else "shared"

    def close(self) -> None:
        self.u0 = self.func = self.t = self._vmap = None
        if self._gpu:
            import torch  # torch is optional: imported only when this backend runs

            torch.cuda.empty_cache()
