"""Backend "cuda-cpp": the hand-written C++ fused solver (solvers/cpp/fused.hpp).

The paper's control against "alternative CUDA C++ implementations of a similar form" (MPGOS):
is the Numba-generated fused kernel as good as what an expert writes by hand? One source:

* CPU: compiled by g++ (``-O3 -march=native -fopenmp``) into a shared library, called through
  ctypes (the GIL released for the call), OpenMP over blocks of ``LANES`` trajectories with the
  lane loop vectorised (as the Numba CPU kernel), ``spec.threads`` threads (None: every core);
* GPU: compiled at run time by NVRTC (cuda.core), one thread per trajectory, one launch per
  solve. Written and compiled (nvcc, in the tests) but not yet run on a GPU.

Compilation happens on the first ``run()`` (the harness times it as compile time); a later
process finds the library in the disk cache (``.cache/cpp/<hash>/``).
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec
from solvers.cpp import build
from solvers.cpp.source import ENTRY_POINTS, ORDERS, entry_point, translation_unit
from solvers.tableaus import get_controller

#: Per-trajectory counters are int32 in the output arrays.
MAX_STEPS_LIMIT = 2 ** 31 - 1
THREADS_PER_BLOCK = 256


def _host_args(spec: SolveSpec):
    """Inputs (trajectory-last, contiguous) and outputs for one solve."""
    T = spec.np_dtype.type
    u0, p = spec.ensemble()
    rtol, atol = spec.tol
    t0, tf = (float(x) for x in spec.prob.tspan)
    inputs = {
        "u0": np.ascontiguousarray(u0.T), "p": np.ascontiguousarray(p.T),
        "t0": T(t0), "tf": T(tf), "dt": T(spec.step),
        "n_steps": np.int64(spec.n_steps if spec.mode == "fixed" else 0),
        "rtol": T(rtol), "atol": T(atol), "max_steps": np.int64(spec.max_steps),
    }
    n_states, n = inputs["u0"].shape
    outputs = {"out_u": np.empty((n_states, n), dtype=spec.np_dtype),
               "stats": np.empty((3, n), dtype=np.int32), "status": np.empty((n,), dtype=np.int32)}
    return inputs, outputs


def _result(spec: SolveSpec, out: dict, notes: dict) -> SolveResult:
    stats = np.asarray(out["stats"])
    return SolveResult(
        u_final=np.ascontiguousarray(np.asarray(out["out_u"]).T),
        status=np.asarray(out["status"]).astype(np.int64),
        accepted=stats[0].astype(np.int64), rejected=stats[1].astype(np.int64),
        rhs_evals=stats[2].astype(np.int64),
        notes={"step_scope": "per-trajectory" if spec.mode == "adaptive" else "none", **notes},
    )


class CppHostPrepared(Prepared):
    """The g++ build, called through ctypes. The first ``run`` compiles (or loads the cache)."""

    dispatch = "kernel"

    def __init__(self, spec: SolveSpec, source: str, function: str, threads: int) -> None:
        self.spec = spec
        self._source = source
        self._function = function
        self._threads = threads
        self._inputs, self._outputs = _host_args(spec)
        # `kernel` is the one entry-point call per solve (the harness counts calls through an
        # attribute of that name); the first call compiles or loads the library, then rebinds it.
        self.kernel = self._first_call

    def _first_call(self) -> None:
        self.kernel = self._bind()
        self.kernel()

    def _bind(self):
        fn = getattr(build.load_host(self._source), self._function)
        real = ctypes.c_float if self.spec.dtype == "float32" else ctypes.c_double
        ptr = ctypes.c_void_p
        fn.argtypes = [ptr, ptr, real, real, real, ctypes.c_longlong, real, real, ctypes.c_longlong,
                       ptr, ptr, ptr, ctypes.c_longlong, ctypes.c_int]
        fn.restype = None
        i, o = self._inputs, self._outputs
        args = (i["u0"].ctypes.data, i["p"].ctypes.data, float(i["t0"]), float(i["tf"]),
                float(i["dt"]), int(i["n_steps"]), float(i["rtol"]), float(i["atol"]),
                int(i["max_steps"]), o["out_u"].ctypes.data, o["stats"].ctypes.data,
                o["status"].ctypes.data, i["u0"].shape[1], self._threads)
        return lambda: fn(*args)

    def run(self) -> Any:
        self.kernel()
        return self._outputs

    def fetch(self, out: Any) -> SolveResult:
        return _result(self.spec, out, {"entry_point": self._function, "threads": self._threads})

    def close(self) -> None:
        self.kernel = self._first_call
        self._outputs = {}


class CppCudaPrepared(Prepared):
    """NVRTC build (cuda.core), one thread per trajectory, one launch per solve.

    Device memory comes from numba-cuda (already a dependency of the fused backend's GPU path);
    both use the device's primary context. The launch goes on the legacy default stream, and
    ``sync`` synchronises the device (numba-cuda allocates on the same legacy default stream).
    """

    dispatch = "kernel"

    def __init__(self, spec: SolveSpec, source: str, function: str) -> None:
        from cuda.core import Device  # GPU libraries, optional: imported only when a GPU solve is prepared
        from numba import cuda

        self.spec = spec
        self._cuda = cuda
        self._device = Device()
        self._device.set_current()
        self._source = source
        self._function = function
        inputs, outputs = _host_args(spec)
        self._d_in = {k: cuda.to_device(v) for k, v in inputs.items() if isinstance(v, np.ndarray)}
        self._scalars = {k: v for k, v in inputs.items() if not isinstance(v, np.ndarray)}
        self._d_out = {k: cuda.device_array(v.shape, dtype=v.dtype) for k, v in outputs.items()}
        self._n = inputs["u0"].shape[1]
        self._kernel = None
        self.kernel = self._launch  # the one launch per solve, counted through this attribute
        cuda.synchronize()

    def _launch_args(self):
        ptr = lambda a: ctypes.c_void_p(a.device_ctypes_pointer.value)  # noqa: E731
        s = self._scalars
        return (ptr(self._d_in["u0"]), ptr(self._d_in["p"]), s["t0"], s["tf"], s["dt"],
                s["n_steps"], s["rtol"], s["atol"], s["max_steps"], ptr(self._d_out["out_u"]),
                ptr(self._d_out["stats"]), ptr(self._d_out["status"]), np.int64(self._n))

    def _launch(self) -> None:
        # cuda-python is optional: imported only on a GPU launch
        from cuda.core import LEGACY_DEFAULT_STREAM, LaunchConfig, launch

        if self._kernel is None:  # NVRTC compile: part of the first (compile-timed) call
            self._kernel = build.nvrtc_kernel(self._source, self._function, self._device)
            self._config = LaunchConfig(grid=(self._n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK,
                                        block=THREADS_PER_BLOCK)
            self._args = self._launch_args()
        launch(LEGACY_DEFAULT_STREAM, self._config, self._kernel, *self._args)

    def run(self) -> Any:
        self.kernel()
        return self._d_out

    def sync(self, out: Any) -> None:
        self._device.sync()

    def fetch(self, out: Any) -> SolveResult:
        host = {k: v.copy_to_host() for k, v in out.items()}
        return _result(self.spec, host, {"entry_point": self._function, "compiler": "nvrtc"})

    def close(self) -> None:
        self._d_in, self._d_out, self._kernel = {}, {}, None


class CppBackend(Backend):
    """The hand-written C++ fused solver (see the module docstring)."""

    compilers = {"cpu": "gcc", "gpu": "cuda"}
    name = "cuda-cpp"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport({"tsit5": ("fixed", "adaptive"), "rk4": ("fixed",), "rk4_38": ("fixed",)})}
    assert set(ENTRY_POINTS) == {(m, md) for m, modes in kinds["ode"].methods.items() for md in modes}

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        if device == "cpu":
            return build.host_available()
        if device != "gpu":
            return False, f"unknown device {device!r}"
        try:
            from cuda.core import Device  # optional: the GPU device reports itself unavailable without it
        except Exception as exc:  # cuda-python missing or broken
            return False, f"cuda.core cannot be imported: {type(exc).__name__}: {exc}"
        try:
            if not Device.get_all_devices():
                return False, "no CUDA device"
            dev = Device()
            return True, f"NVRTC via cuda.core, {dev.name}"
        except Exception as exc:  # no driver
            return False, f"CUDA unusable: {type(exc).__name__}: {exc}"

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.saveat is not None:
            return "cuda-cpp saves the final state only (no saveat)"
        if spec.max_steps > MAX_STEPS_LIMIT:
            return f"cuda-cpp counts steps in int32: max_steps must be <= {MAX_STEPS_LIMIT}"
        try:
            translation_unit(spec.problem, spec.dtype, spec.controller)
        except Exception as exc:  # a right-hand side SymPy cannot print as C
            return f"cannot translate {spec.problem} to C++: {type(exc).__name__}: {exc}"
        return None

    def threads(self, spec: SolveSpec) -> int:
        """OpenMP threads for ``spec`` (0: the OpenMP default, every core)."""
        t = getattr(spec, "threads", None)
        return int(t) if t else 0

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step_control": self.step_control(spec),
            "method": spec.method, "mode": spec.mode, "dtype": spec.dtype,
            "entry_point": entry_point(spec.method, spec.mode),
            "source": "hand-written solvers/cpp/fused.hpp; rhs and constants generated (solvers/cpp/source.py)",
        }
        if spec.device == "gpu":
            out.update(kernel="one thread per trajectory (CUDA, NVRTC)", threads_per_block=THREADS_PER_BLOCK,
                       compiler_options=" ".join(build.NVRTC_OPTIONS) + " (fmad on, no fast math)")
        else:
            ok, version = build.host_available()
            out.update(kernel="OpenMP over blocks of 32 lanes, lane loop vectorised (omp simd)",
                       compiler=version if ok else None, cxx_flags=" ".join(build.CXX_FLAGS),
                       threads=self.threads(spec) or "all (OpenMP default)")
        if spec.mode == "fixed":
            out.update(dt=spec.step, n_steps=spec.n_steps)
        else:
            ctrl = get_controller(spec.controller, ORDERS[spec.method])
            rtol, atol = spec.tol
            out.update(dt0=spec.step, rtol=rtol, atol=atol, max_steps=spec.max_steps,
                       controller=spec.controller, beta1=ctrl.beta1, beta2=ctrl.beta2,
                       qmin=ctrl.qmin, qmax=ctrl.qmax, gamma=ctrl.gamma, qold_init=ctrl.qold_init,
                       dtmin=ctrl.dtmin,
                       error_norm="RMS of err / (atol + max(|u_prev|, |u_new|) * rtol)",
                       controller_power="in-kernel log/exp (bit-level, vectorisable)")
        return out

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        source = translation_unit(spec.problem, spec.dtype, spec.controller)
        function = entry_point(spec.method, spec.mode)
        if spec.device == "gpu":
            return CppCudaPrepared(spec, source, function)
        return CppHostPrepared(spec, source, function, self.threads(spec))
