"""The fused backend: one compiled kernel per ensemble solve (Numba; CUDA or CPU).

The Python counterpart of DiffEqGPU.jl's ``EnsembleGPUKernel``: on the GPU each thread
integrates one trajectory over the whole time span (stages, error estimate, PI step control,
saving, all in registers) and one launch solves the ensemble; on the CPU the same generated
code runs in lane blocks (``variant=""``: ``prange`` over blocks of ``lanes`` trajectories, the
lanes vectorised) or one trajectory per loop iteration (``variant="serial"``).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec
from solvers.fused.assemble import controller_domain, controller_for
from solvers.fused.build import (
    KernelInputs, collect, cpu_kernel, grid_indices, kernel_args, load_module, make_outputs, module_path,
    spec_inputs,
)
from solvers.fused.codegen import LANE_LAYOUTS, KernelKey, pass_interleave
from solvers.fused.looped import unsupported_reason, uses_looped
from solvers.fused.methods import method_code
from solvers.tableaus import get_tableau

#: Float32 kernels count steps in float32 (exact integers up to 2**24).
MAX_STEPS_FLOAT32 = 2 ** 24
#: LLVM fast-math flags Numba accepts.
FASTMATH_FLAGS = frozenset({"nnan", "ninf", "nsz", "arcp", "contract", "afn", "reassoc"})


def save_mode(spec: SolveSpec) -> str:
    """How ``spec.saveat`` is served: final state only, on the fixed grid, dense output
    (adaptive Tsit5), or by clipping adaptive steps to land on the save times."""
    if spec.saveat is None:
        return "final"
    if spec.mode == "fixed":
        return "grid"
    if spec.variant == "stop":  # clipping kept for comparison with the interpolants
        return "stop"
    return "dense" if method_code(spec.method).has_dense else "stop"


class FusedPrepared(Prepared):
    """Inputs and output buffers in place (on the GPU for device="gpu"), the kernel loaded."""

    dispatch = "kernel"

    def __init__(self, spec: SolveSpec, key: KernelKey, inputs: KernelInputs, variant: str,
                 threads_per_block: int) -> None:
        self.spec = spec
        self.key = key
        self.variant = variant
        self._has_saves = inputs.save_t.shape[0] > 0
        if key.target == "cpu":
            self._kernel = cpu_kernel(key, variant)
            self._outputs = make_outputs(inputs)
            self._args = kernel_args(inputs, self._outputs)
        else:
            from numba import cuda  # optional (numba-cuda); importing it sets up the CUDA target

            self._kernel = load_module(key).solve_kernel
            dev_inputs = KernelInputs(**{
                k: (cuda.to_device(v) if isinstance(v, np.ndarray) else v) for k, v in inputs.__dict__.items()
            })
            self._outputs = make_outputs(inputs, xp=_DeviceAllocator(cuda))
            self._args = kernel_args(dev_inputs, self._outputs)
            self._n, self._requested_tpb = inputs.n, threads_per_block
            self._launch = None  # configured at the first run(), once the kernel is compiled
            self.threads_per_block = None
            cuda.synchronize()  # transfers done before the timed region starts

    def _configure_launch(self):
        """Compile for the arguments' types (what the first launch does anyway: it stays in the
        first call's time) and clamp the block size to what the compiled kernel's register use
        allows, so a large block never fails with CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES."""
        if hasattr(self._kernel, "compile"):
            types = tuple(self._kernel.typeof_pyval(a) for a in self._args)
            limit = self._kernel.compile(types).max_threads_per_block
        else:  # Numba's CUDA simulator: no registers, no limit below the request
            limit = self._requested_tpb
        blocks, tpb = launch_config(self._n, self._requested_tpb, limit)
        self.threads_per_block = tpb
        return self._kernel[blocks, tpb]

    def run(self) -> Any:
        if self.key.target == "cpu":
            self._kernel(*self._args)
        elif self._n > 0:  # an empty grid is not a valid launch: nothing to solve
            if self._launch is None:
                self._launch = self._configure_launch()
            self._launch(*self._args)  # asynchronous: sync() waits for it
        return self._outputs

    def sync(self, out: Any) -> None:
        if self.key.target == "cuda":
            from numba import cuda  # optional (numba-cuda): GPU solves only

            cuda.synchronize()

    def fetch(self, out: Any) -> SolveResult:
        if self.key.target == "cuda":
            out = {k: v.copy_to_host() for k, v in out.items()}
        r = collect(out, self._has_saves)
        return SolveResult(
            u_final=r.u_final, saved=r.saved, status=r.status, accepted=r.accepted,
            rejected=r.rejected, rhs_evals=r.rhs_evals,
            notes={"variant": self.variant, "step_scope": "per-trajectory" if self.spec.mode == "adaptive" else "none",
                   "kernel": self.key.module_name(),
                   **({"threads_per_block_used": self.threads_per_block} if self.key.target == "cuda" else {})},
        )

    def close(self) -> None:
        self._args = ()
        self._outputs = {}


def launch_config(n: int, requested: int, max_threads_per_block: int) -> tuple[int, int]:
    """(blocks, threads per block) for ``n`` trajectories: the requested block size clamped to
    the compiled kernel's limit (rounded down to whole warps of 32 where the limit allows)."""
    if n <= 0:
        raise ValueError(f"no launch for N={n}")
    tpb = min(requested, max_threads_per_block)
    if tpb >= 32:
        tpb -= tpb % 32
    tpb = max(tpb, 1)
    return (n + tpb - 1) // tpb, tpb


class _DeviceAllocator:
    """``xp.empty(shape, dtype)`` on the GPU, for ``make_outputs``."""

    def __init__(self, cuda) -> None:
        self._cuda = cuda

    def empty(self, shape, dtype):
        return self._cuda.device_array(shape, dtype=dtype)


class FusedBackend(Backend):
    """Generated fused kernels (see module docstring).

    Args:
        lanes: trajectories per lane block of the CPU kernel (a compile-time constant).
            32 = two 512-bit float32 vectors per pass: measured on the 2-core AVX-512 (Zen 4)
            machine, 32 beat 16 (one vector, whose dependency chain the core cannot hide)
            by ~10% in fixed and ~35% in adaptive mode; 64 was no better than 32.
        threads_per_block: CUDA block size.
        fastmath: LLVM fast-math flags of the CPU kernels. The default, ``("contract",)``,
            only lets a*b+c become one fused multiply-add, which NVVM also does by default on
            the GPU; no reassociation, no finite-math assumptions (NaN checks stay exact).
        lane_layout: the CPU adaptive lane loop (``KernelKey.lane_layout``); "auto" picks it
            from this machine's ISA.
    """

    compilers = {"cpu": "numba", "gpu": "cuda"}
    name = "fused"
    devices = ("cpu", "gpu")
    kinds = {
        "ode": KindSupport({"tsit5": ("fixed", "adaptive"), "rk4": ("fixed",), "rk4_38": ("fixed",),
                            "rosenbrock23": ("adaptive",), "rodas4": ("adaptive",), "rodas5p": ("adaptive",)}),
        "sde": KindSupport({"em": ("fixed",)}, "solvers.fused.sde"),  # Euler-Maruyama
        # pso: synchronised per iteration; pso-async: one launch for the whole run
        "pso": KindSupport({"pso": ("fixed",), "pso-async": ("fixed",)}, "solvers.fused.pso"),
        "nonlinear": KindSupport({"newton": ("adaptive",), "trust-region": ("adaptive",)}, "solvers.fused.nonlinear"),
        "event": KindSupport({"tsit5_event": ("adaptive",)}, "solvers.fused.events"),
    }
    variants = ("", "serial", "stop")  # "stop": lanes, adaptive saves by clipping steps

    def __init__(self, lanes: int = 32, threads_per_block: int = 256,
                 fastmath: tuple[str, ...] = ("contract",), lane_layout: str = "auto") -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 1024:
            raise ValueError(f"invalid lanes {lanes!r}: an integer in 1..1024 (16 fills a 512-bit float32 vector)")
        if (isinstance(threads_per_block, bool) or not isinstance(threads_per_block, int)
                or not 32 <= threads_per_block <= 1024 or threads_per_block % 32):
            raise ValueError(f"invalid threads_per_block {threads_per_block!r}: a multiple of 32 in 32..1024")
        bad = set(fastmath) - FASTMATH_FLAGS
        if bad:
            raise ValueError(f"invalid fastmath flags {sorted(bad)}: choose from {', '.join(sorted(FASTMATH_FLAGS))}")
        self.lanes = lanes
        self.threads_per_block = threads_per_block
        self.fastmath = tuple(fastmath)
        if lane_layout not in ("auto",) + LANE_LAYOUTS:
            raise ValueError(f"invalid lane_layout {lane_layout!r}: choose one of auto, {', '.join(LANE_LAYOUTS)}")
        self.lane_layout = lane_layout

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        if device == "cpu":
            return True, f"numba {numba.__version__}"
        if device != "gpu":
            return False, f"unknown device {device!r}"
        try:
            from numba import cuda  # optional (numba-cuda); importing it sets up the CUDA target
        except ImportError as exc:  # numba-cuda missing
            return False, f"numba.cuda cannot be imported: {exc}"
        try:
            if not cuda.is_available():
                return False, "numba.cuda.is_available() is False (no CUDA driver or GPU)"
            dev = cuda.get_current_device()
            name = getattr(dev, "name", "simulated device")  # the simulator's device has no name
            name = name.decode() if isinstance(name, bytes) else name
            return True, f"numba {numba.__version__}, {name}"
        except Exception as exc:  # driver present but unusable
            return False, f"CUDA unusable: {type(exc).__name__}: {exc}"

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.variant == "serial" and spec.device != "cpu":
            return "variant 'serial' is a CPU variant"
        why = unsupported_reason(spec.prob, spec.method, spec.mode, save_mode(spec))
        if why:
            return why
        if spec.dtype == "float32" and spec.max_steps > MAX_STEPS_FLOAT32:
            return f"float32 kernels count steps in float32: max_steps must be <= {MAX_STEPS_FLOAT32}"
        if spec.saveat is not None and spec.mode == "fixed":
            t0 = spec.prob.tspan[0]
            try:
                grid_indices(spec.saveat, t0, spec.step, spec.n_steps)
            except ValueError as exc:
                return str(exc)
        return None

    def kernel_key(self, spec: SolveSpec) -> KernelKey:
        return KernelKey(
            problem=spec.problem, method=spec.method, mode=spec.mode, dtype=spec.dtype,
            save=save_mode(spec), target="cuda" if spec.device == "gpu" else "cpu",
            lanes=self.lanes, fastmath=self.fastmath, controller=spec.controller,
            lane_layout=self.lane_layout,
        )

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        tab = get_tableau(spec.method)
        mc = method_code(spec.method)
        out: dict[str, Any] = {
            "step_control": self.step_control(spec),
            "method": spec.method,
            "tableau": tab.name,
            "order": mc.order,
            "mode": spec.mode,
            "dtype": spec.dtype,
            "save_mode": save_mode(spec),
            "kernel": "one thread per trajectory (CUDA)" if spec.device == "gpu" else (
                "serial: prange over trajectories" if spec.variant == "serial"
                else f"lanes: prange over blocks of {self.lanes}, lanes vectorised"),
            "rhs_evals_per_step": mc.step_evals if spec.mode == "fixed" else mc.attempt_evals,
            **({"layout": "looped (solvers/fused/looped.py): state and stages in local arrays, one "
                          "trajectory per prange iteration / CUDA thread, loops over the state"}
               if _looped(spec) else {}),
            "disk_cache": "numba cache=True on the CPU kernels" if spec.device == "cpu" else "none",
        }
        if spec.device == "gpu":
            out["threads_per_block"] = self.threads_per_block
            out["fastmath"] = "numba-cuda default (NVVM contracts a*b+c into fma)"
        else:
            out["lanes"] = self.lanes
            if spec.variant != "serial":
                key = self.kernel_key(spec)
                if spec.mode == "adaptive":
                    out["lane_layout"] = key.lane_layout  # chosen per ISA (codegen)
                if not _looped(spec):
                    # lanes per iteration of each per-step lane loop over the vector width: 2 or 4 where
                    # lanes run interleaved (per ISA and layout: codegen.lane_ways)
                    out["lane_interleave"] = list(pass_interleave(key))
            out["threads"] = numba.get_num_threads()
            out["fastmath"] = ",".join(self.fastmath) or "none"
        if spec.mode == "fixed":
            out.update(dt=spec.step, n_steps=spec.n_steps)
        else:
            ctrl = controller_for(spec.method, spec.controller)
            rtol, atol = spec.tol
            lo, hi = controller_domain(ctrl)
            out.update(
                dt0=spec.step, rtol=rtol, atol=atol, max_steps=spec.max_steps,
                controller=spec.controller, beta1=ctrl.beta1, beta2=ctrl.beta2, qmin=ctrl.qmin,
                qmax=ctrl.qmax, gamma=ctrl.gamma, qold_init=ctrl.qold_init, dtmin=ctrl.dtmin,
                error_norm="RMS of err / (atol + max(|u_prev|, |u_new|) * rtol)",
                controller_power="in-kernel log/exp (bit-level, vectorisable), EEst clamped to "
                                 f"[{lo:.3g}, {hi:.3g}] where the clamps decide",
            )
        return out

    def prepare_own(self, spec: SolveSpec) -> FusedPrepared:
        key = self.kernel_key(spec)
        module_path(key)  # generate (untimed) the module source before the first run
        inputs = spec_inputs(spec)
        variant = "gpu" if spec.device == "gpu" else ("serial" if spec.variant == "serial" else "lanes")
        return FusedPrepared(spec, key, inputs, variant, self.threads_per_block)


def _looped(spec: SolveSpec) -> bool:
    return uses_looped(spec.prob)
