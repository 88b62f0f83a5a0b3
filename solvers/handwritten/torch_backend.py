"""``torch-handwritten``: Tsit5 (and friends) written directly in PyTorch, on state tensors.

The state is structure-of-arrays: a tuple of (N,) tensors, one per ODE component, which is what
``problem.rhs_for(torch)`` takes. The step arithmetic is ``solvers.handwritten.rk`` (shared with
the JAX and Pallas backends). Variants:

* "" (eager): a Python loop over steps; every array operation is one kernel launch.
* "compiled": the loop calls a ``torch.compile``d chunk of ``COMPILED_CHUNK`` steps (fixed)
  or attempts (adaptive: masked attempts, the host checks "any lane active?" once per chunk)
  (``fullgraph=True``, static shapes), as PyTorch's experts compile a time loop: one call runs
  many steps in a few fused C++/OpenMP (CPU) or Triton (GPU) kernels. Inductor contracts
  multiply-adds (``solvers.numeric_policy``: one FMA and vector-width policy for all). The
  first ``run`` compiles (the runner times it as compile time). If ``torch.compile`` does not
  work on the machine, ``check`` returns the exception text.
* "compiled-step": the same, one step or attempt per compiled call (the form before issue 33).
* "cudagraph" (GPU only): a chunk of ``steps_per_graph`` steps (fixed) or attempts (adaptive) is
  captured once in a ``torch.cuda.CUDAGraph`` on static buffers and replayed, so the host
  launches one graph per chunk instead of one kernel per operation. Adaptive mode checks on
  the host whether any lane is still running after every replay (one device sync per chunk).

Adaptive mode is DiffEqGPU's per-trajectory PI controller with masked updates; the loop runs
until every lane is done ("lockstep"), checking completion every ``check_every`` attempts.
Every ``run`` is under ``torch.inference_mode()``; ``sync`` calls ``torch.cuda.synchronize()``
on a GPU.
"""
from __future__ import annotations

import functools
import itertools
import types
from typing import Any, Callable

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec
from solvers.handwritten.common import METHODS, adaptive_result, check_common, common_settings, fixed_result
from solvers.handwritten.ops import TorchOps
from solvers import numeric_policy
from solvers.handwritten.rk import (AdaptiveState, StepConstants, adaptive_attempt, fixed_step, initial_state,
                                   state_rhs, step_constants)

VARIANTS = ("", "compiled", "compiled-step", "cudagraph")

#: Adaptive mode: attempts between host-side "all lanes done?" checks. A check costs a device
#: sync on a GPU; on a CPU it is free, and extra attempts (masked no-ops) are not.
CHECK_EVERY = {"cpu": 1, "gpu": 8}
#: CUDA-graph variant: steps (fixed) or attempts (adaptive) captured in one graph.
STEPS_PER_GRAPH = 8
#: Variant "compiled": steps (fixed) or attempts (adaptive) per compiled call, by mode. Chosen
#: by an interleaved measurement (benchmarks/variants/strongest.py; docs/fairness.md).
COMPILED_CHUNK = {"fixed": 5, "adaptive": 4}
#: The torch.compile options of the compiled variants (recorded in each row's settings).
COMPILE_OPTIONS = {"fullgraph": True, "dynamic": False, "mode": "default"}


def torch_device(device: str) -> Any:
    import torch  # torch is optional: imported only when this backend is used

    if device == "cpu":
        return torch.device("cpu")
    if device == "gpu":
        return torch.device("cuda")
    raise ValueError(f"invalid device {device!r}: choose one of cpu, gpu")


def torch_available(device: str) -> tuple[bool, str]:
    """(ok, version or reason) for running torch on ``device``."""
    return framework_available("torch", device)


@functools.lru_cache(maxsize=None)
def compile_probe(device: str) -> str | None:
    """None if ``torch.compile`` compiles and runs a small elementwise function on ``device``,
    else the exception text (cached per process)."""
    import torch  # torch is optional: imported only when this backend is used

    try:
        fn = torch.compile(lambda x, y: x * y + 1.5 * x, fullgraph=True, dynamic=False)
        x = torch.arange(8, dtype=torch.float32, device=torch_device(device))
        out = fn(x, x)
        if not torch.equal(out.cpu(), (x * x + 1.5 * x).cpu()):
            return "torch.compile ran but returned a wrong result on a probe function"
    except Exception as exc:  # any failure (missing compiler, triton, ...) is the reason
        return f"torch.compile failed on {device}: {type(exc).__name__}: {exc}"
    return None


_copy_ids = itertools.count()


def own_code_copy(fn: Callable) -> Callable:
    """A copy of the function ``fn`` with a code object of its own.

    Dynamo (``torch.compile``) keeps its compiled graphs per code object and, after
    ``torch._dynamo.config.recompile_limit`` recompilations of one code object (8 by default),
    silently runs it eagerly. A sweep prepares many solves (one per N, mode, dtype) of the same
    step function, so each compiled solve compiles its own copy instead.
    """
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{next(_copy_ids)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class _Solve:
    """Inputs, callables and constants shared by the torch variants of one spec."""

    def __init__(self, spec: SolveSpec) -> None:
        import torch  # torch is optional: imported only when this backend is used

        self.spec = spec
        self.K: StepConstants = step_constants(spec)
        self.device = torch_device(spec.device)
        self.dtype = getattr(torch, spec.dtype)
        self.f = state_rhs(spec, torch)  # tuples of components, or one (n_states, N) block
        self.ops = TorchOps()
        u0, p = spec.ensemble()
        # Structure-of-arrays: rows of an (n, N) tensor are contiguous (N,) tensors.
        rows = torch.from_numpy(np.ascontiguousarray(u0.T)).to(self.device)
        self.u0 = (rows,) if self.K.blocked else tuple(rows.unbind(0))
        self.p = tuple(torch.from_numpy(np.ascontiguousarray(p.T)).to(self.device).unbind(0))
        self.h = torch.tensor(self.K.dt, dtype=self.dtype, device=self.device)
        if spec.mode == "fixed":
            # t_i = t0 + i*dt evaluated in the solve's dtype (as the JAX backend does).
            np_dt = np.dtype(spec.dtype).type
            times = np_dt(self.K.t0) + np.arange(self.K.n_steps).astype(spec.dtype) * np_dt(self.K.dt)
            self.times = torch.from_numpy(times).to(self.device)

    def step(self, u: tuple, p: tuple, t: Any, h: Any) -> tuple:
        return fixed_step(self.f, u, p, t, h, self.K)

    def attempt(self, p: tuple, state: AdaptiveState) -> AdaptiveState:
        return adaptive_attempt(self.f, p, state, self.K, self.ops)

    def steps(self, u: tuple, p: tuple, times: Any, h: Any) -> tuple:
        """``len(times)`` fixed steps (unrolled when compiled: one graph per chunk)."""
        for i in range(times.shape[0]):
            u = fixed_step(self.f, u, p, times[i], h, self.K)
        return u

    def attempts(self, p: tuple, state: AdaptiveState, k: int) -> AdaptiveState:
        """``k`` masked attempts (a done lane's attempt changes nothing)."""
        for _ in range(k):
            state = adaptive_attempt(self.f, p, state, self.K, self.ops)
        return state

    def initial(self) -> AdaptiveState:
        return initial_state(self.f, self.u0, self.p, self.K, self.ops)

    def fetch(self, out: Any, notes: dict) -> SolveResult:
        import torch  # torch is optional: imported only when this backend is used

        cols = (lambda u: u[0].T) if self.K.blocked else (lambda u: torch.stack(u, dim=1))
        if self.spec.mode == "fixed":
            return fixed_result(cols(out).cpu().numpy(), self.K, notes)
        return adaptive_result(cols(out.u).cpu().numpy(), out.accepted.cpu().numpy(),
                               out.rejected.cpu().numpy(), out.status.cpu().numpy(), self.K, notes)

    def sync(self) -> None:
        import torch  # torch is optional: imported only when this backend is used

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class TorchLoopPrepared(Prepared):
    """Variants "", "compiled-step" and "compiled": a host loop over chunks of ``chunk`` steps
    or attempts (1 for the first two), compiled with ``torch.compile`` unless eager."""

    dispatch = "torch"

    def __init__(self, spec: SolveSpec, compiled: bool, chunk: int = 1) -> None:
        import torch  # torch is optional: imported only when this backend is used

        self.solve = s = _Solve(spec)
        self.compiled = compiled
        self.chunk = chunk
        self.check_every = CHECK_EVERY[spec.device] if chunk == 1 else 1
        steps = types.MethodType(own_code_copy(_Solve.steps), s)
        attempts = types.MethodType(own_code_copy(_Solve.attempts), s)
        if compiled:
            numeric_policy.inductor_config()
            # Compiled lazily by the first run (the runner times that call as compile time).
            steps = torch.compile(steps, **COMPILE_OPTIONS)
            attempts = torch.compile(attempts, **COMPILE_OPTIONS)
        self.steps_fn: Callable = steps
        self.attempts_fn: Callable = attempts
        if spec.mode == "fixed":
            self.time_chunks = list(s.times.split(chunk))

    def run(self) -> Any:
        import torch  # torch is optional: imported only when this backend is used

        s = self.solve
        with torch.inference_mode():
            if s.spec.mode == "fixed":
                u = s.u0
                for times in self.time_chunks:
                    u = self.steps_fn(u, s.p, times, s.h)
                return u
            state = s.initial()
            # Each active lane makes one attempt per call and stops after max_steps attempts,
            # so the loop ends after at most max_steps attempts.
            per_check = self.chunk * self.check_every
            for _ in range(0, s.K.max_steps + per_check, per_check):
                for _ in range(self.check_every):
                    state = self.attempts_fn(s.p, state, self.chunk)
                if not bool(state.active.any()):
                    return state
            raise RuntimeError("adaptive loop did not finish within max_steps attempts (bug)")

    def sync(self, out: Any) -> None:
        self.solve.sync()

    def fetch(self, out: Any) -> SolveResult:
        variant = ("eager" if not self.compiled else "compiled" if self.chunk > 1 else "compiled-step")
        return self.solve.fetch(out, {"variant": variant, "chunk": self.chunk})

    def close(self) -> None:
        self.solve = None


class CudaGraph:
    """``torch.cuda.CUDAGraph`` capture and replay of a function writing into static buffers."""

    def __init__(self, fn: Callable[[], None], device: Any) -> None:
        import torch  # torch is optional: imported only when this backend is used

        # Warm up on a side stream before capture, as the CUDA-graph documentation requires.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                fn()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            fn()

    def replay(self) -> None:
        self.graph.replay()


class EagerReplay:
    """Stand-in for :class:`CudaGraph` that calls the function on every replay.

    Lets the static-buffer logic of :class:`TorchGraphPrepared` run (and be tested) on a CPU.
    """

    def __init__(self, fn: Callable[[], None], device: Any) -> None:
        fn()      # like a capture warm-up, it may change the buffers: run() resets them
        self.fn = fn

    def replay(self) -> None:
        self.fn()


class TorchGraphPrepared(Prepared):
    """Variant "cudagraph": chunks of steps/attempts captured once, replayed from the host.

    Static buffers hold the whole loop state; a captured chunk reads them, runs
    ``steps_per_graph`` steps (fixed) or attempts (adaptive) and copies the results back.
    ``graph`` is the capture class (:class:`CudaGraph`; tests pass :class:`EagerReplay`).
    """

    dispatch = "torch"

    def __init__(self, spec: SolveSpec, graph: type = CudaGraph,
                 steps_per_graph: int = STEPS_PER_GRAPH) -> None:
        import torch  # torch is optional: imported only when this backend is used

        self.solve = s = _Solve(spec)
        self.steps_per_graph = steps_per_graph
        with torch.inference_mode():
            if spec.mode == "fixed":
                self.u = tuple(x.clone() for x in s.u0)
                self.step_index = torch.zeros((), dtype=s.dtype, device=s.device)
                full, rest = divmod(s.K.n_steps, steps_per_graph)
                self.replays = [(graph(lambda: self._fixed_chunk(steps_per_graph), s.device), full)]
                if rest:
                    self.replays.append((graph(lambda: self._fixed_chunk(rest), s.device), 1))
            else:
                self.state = AdaptiveState(*(tuple(x.clone() for x in v) if isinstance(v, tuple)
                                             else v.clone() for v in s.initial()))
                self.chunk = graph(self._adaptive_chunk, s.device)

    def _fixed_chunk(self, steps: int) -> None:
        s = self.solve
        u = self.u
        for _ in range(steps):
            u = s.step(u, s.p, s.K.t0 + self.step_index * s.h, s.h)
            self.step_index.add_(1)
        for dst, src in zip(self.u, u):
            dst.copy_(src)

    def _adaptive_chunk(self) -> None:
        s = self.solve
        state = self.state
        for _ in range(self.steps_per_graph):
            state = s.attempt(s.p, state)
        for dst, src in zip(self.state, state):
            if isinstance(dst, tuple):
                for d, x in zip(dst, src):
                    d.copy_(x)
            else:
                dst.copy_(src)

    def run(self) -> Any:
        import torch  # torch is optional: imported only when this backend is used

        s = self.solve
        with torch.inference_mode():
            if s.spec.mode == "fixed":
                for dst, src in zip(self.u, s.u0):
                    dst.copy_(src)
                self.step_index.zero_()
                for g, times in self.replays:
                    for _ in range(times):
                        g.replay()
                return self.u
            for dst, src in zip(self.state, s.initial()):
                if isinstance(dst, tuple):
                    for d, x in zip(dst, src):
                        d.copy_(x)
                else:
                    dst.copy_(src)
            for _ in range(0, s.K.max_steps + self.steps_per_graph, self.steps_per_graph):
                self.chunk.replay()
                if not bool(self.state.active.any()):     # one device sync per chunk
                    return self.state
            raise RuntimeError("adaptive loop did not finish within max_steps attempts (bug)")

    def sync(self, out: Any) -> None:
        self.solve.sync()

    def fetch(self, out: Any) -> SolveResult:
        return self.solve.fetch(out, {"variant": "cudagraph", "steps_per_graph": self.steps_per_graph})

    def close(self) -> None:
        self.solve = self.replays = self.chunk = self.state = self.u = None


class TorchHandwrittenBackend(Backend):
    """Hand-written explicit Runge-Kutta in PyTorch (see the module docstring)."""

    name = "torch-handwritten"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport(METHODS)}
    variants = VARIANTS

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return torch_available(device)

    def check_own(self, spec: SolveSpec) -> str | None:
        reason = check_common(spec)
        if reason:
            return reason
        if spec.variant == "cudagraph" and spec.device != "gpu":
            return "variant 'cudagraph' needs a CUDA device (torch.cuda.CUDAGraph)"
        if spec.variant in ("compiled", "compiled-step"):
            ok, why = torch_available(spec.device)
            if not ok:
                return why
            return compile_probe(spec.device)
        return None

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "lockstep"

    def compiler(self, spec: SolveSpec) -> str | None:
        """Inductor for the torch.compile variants, else eager ATen kernels."""
        if spec.device != "cpu":
            return None
        return "inductor" if spec.variant in ("compiled", "compiled-step") else "torch-eager"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        import torch  # torch is optional: imported only when this backend is used

        s = common_settings(spec, step_constants(spec))
        s.update(
            step_control=self.step_control(spec),
            library=f"torch {torch.__version__}",
            variant=spec.variant,
            layout="structure-of-arrays: tuple of (N,) tensors",
            inference_mode=True,
            device=spec.device,
        )
        if spec.device == "cpu":
            s["torch_threads"] = torch.get_num_threads()
        compiled = spec.variant in ("compiled", "compiled-step")
        if compiled:
            chunk = chunk_of(spec)
            unit = "steps" if spec.mode == "fixed" else "attempts"
            s["compile"] = (f"torch.compile(chunk of {chunk} {unit}, "
                            + ", ".join(f"{k}={v!r}" for k, v in COMPILE_OPTIONS.items()) + ")")
            s["compile_options"] = dict(COMPILE_OPTIONS)
            s["inductor_config"] = {"cpp.enable_floating_point_contract_flag": "fast",
                                    "cpp.simdlen": numeric_policy.vector_bits()}
            s["chunk"] = chunk
        if spec.variant == "cudagraph":
            s["steps_per_graph"] = STEPS_PER_GRAPH
            s["graph"] = "torch.cuda.CUDAGraph of steps_per_graph steps/attempts, replayed"
        if spec.mode == "adaptive":
            s["check_every"] = (STEPS_PER_GRAPH if spec.variant == "cudagraph" else chunk_of(spec)
                                if spec.variant == "compiled" else CHECK_EVERY[spec.device])
        return s

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        if spec.variant == "cudagraph":
            return TorchGraphPrepared(spec)
        return TorchLoopPrepared(spec, compiled=spec.variant in ("compiled", "compiled-step"),
                                 chunk=chunk_of(spec))


def chunk_of(spec: SolveSpec) -> int:
    """Steps or attempts per call of ``spec``'s variant ("compiled": COMPILED_CHUNK, else 1)."""
    return COMPILED_CHUNK[spec.mode] if spec.variant == "compiled" else 1
