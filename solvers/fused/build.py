"""Compile generated kernels (cached in memory and on disk) and lay out their arguments.

The generated source (``solvers.fused.codegen``) is written to a real module file,
``<cache>/fused/<module name>.py``, and imported from there: Numba's on-disk cache
(``cache=True`` on the CPU kernels) needs a source file, and finds its compiled objects in
the ``__pycache__`` beside it on the next run. The module name holds a hash of the key, the
problem definition and the generator's own source, so a changed definition gets a new file
and a stale compiled kernel is never picked up; an existing file is never rewritten (that
would change its timestamp and throw Numba's cache away). ``$ODEBENCH_CACHE`` moves the
cache root, as for the references.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from solvers.cache import cache_root, writable_cache
from solvers.fused.assemble import KERNEL_ARGS
from solvers.fused.codegen import KernelKey, generate_source

_lock = threading.Lock()
_modules: dict[KernelKey, ModuleType] = {}


def cache_dir() -> Path:
    """Where generated modules (and Numba's compiled objects for them) live."""
    return cache_root("fused")


def _writable_dir() -> Path:
    return writable_cache("fused")


def write_source(path: Path, source) -> Path:
    """``path``, written from ``source()`` if missing; an existing file is never rewritten
    (Numba's cache beside it stays valid) and a new one appears atomically (concurrent
    processes never see half a file)."""
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source())
        os.replace(tmp, path)
    return path


def import_file(path: Path) -> ModuleType:
    """Import the generated module file ``path`` under its stem (once per process, by the
    callers' caches): a real file, so Numba's ``cache=True`` kernels find their objects."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def module_path(key: KernelKey) -> Path:
    """The generated module file for ``key`` (written if missing)."""
    return write_source(_writable_dir() / f"{key.module_name()}.py", lambda: generate_source(key))


def load_module(key: KernelKey) -> ModuleType:
    """The imported generated module for ``key`` (one import per process)."""
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            mod = _modules[key] = import_file(module_path(key))
    return mod


# ================================================================================================
# Arguments
# ================================================================================================

@dataclass
class KernelInputs:
    """Host arrays and typed scalars in the order of ``codegen.KERNEL_ARGS`` (inputs only).

    Arrays are laid out trajectory-last: ``u0`` (n_states, N), ``p`` (n_params, N), so that
    consecutive CUDA threads / CPU lanes touch consecutive addresses.
    """

    u0: np.ndarray
    p: np.ndarray
    t0: np.generic
    tf: np.generic
    dt: np.generic
    n_steps: np.int64
    rtol: np.generic
    atol: np.generic
    max_steps: np.int64
    save_t: np.ndarray
    save_i: np.ndarray

    @property
    def n(self) -> int:
        return self.u0.shape[1]


def grid_indices(saveat, t0: float, dt: float, n_steps: int) -> np.ndarray:
    """Step indices of fixed-mode save times; each must lie on the step grid t0 + k*dt."""
    out = []
    for s in saveat:
        k = (float(s) - t0) / dt
        kr = int(round(k))
        if abs(k - kr) > 1e-6 * max(1.0, abs(k)) or not 0 <= kr <= n_steps:
            raise ValueError(f"saveat time {s} is not on the fixed step grid t0 + k*dt "
                             f"(t0={t0}, dt={dt}): fixed mode saves at step points only")
        out.append(kr)
    return np.asarray(out, dtype=np.int64)


def make_inputs(u0: np.ndarray, p: np.ndarray, tspan: tuple[float, float], dtype: str, *,
                mode: str, dt: float, n_steps: int = 0, rtol: float = 1e-6, atol: float = 1e-6,
                max_steps: int = 100_000, saveat=None) -> KernelInputs:
    """Kernel inputs from an ensemble in ``Problem.ensemble`` layout.

    u0: (N, n_states); p: (N, n_params); tspan: (t0, t1); dtype: "float32" / "float64";
    mode: "fixed" (``dt`` the step, ``n_steps`` steps) or "adaptive" (``dt`` the first step);
    rtol / atol: adaptive tolerances; max_steps: cap on accepted + rejected steps;
    saveat: sorted save times or None.
    """
    T = np.dtype(dtype).type
    t0, tf = float(tspan[0]), float(tspan[1])
    save = np.zeros(0) if saveat is None else np.asarray(saveat, dtype=np.float64)
    save_i = (grid_indices(save, t0, dt, n_steps) if (mode == "fixed" and save.size)
              else np.zeros(0, dtype=np.int64))
    return KernelInputs(
        u0=np.ascontiguousarray(np.asarray(u0, dtype=dtype).T),
        p=np.ascontiguousarray(np.asarray(p, dtype=dtype).T),
        t0=T(t0), tf=T(tf), dt=T(dt), n_steps=np.int64(n_steps),
        rtol=T(rtol), atol=T(atol), max_steps=np.int64(max_steps),
        save_t=save.astype(dtype), save_i=save_i,
    )


def spec_inputs(spec) -> KernelInputs:
    """The kernel inputs of a ``SolveSpec``: its ensemble, time span, step (fixed: with its
    step count) or first step and tolerances (adaptive), step cap and save times."""
    u0, p = spec.ensemble()
    rtol, atol = spec.tol
    return make_inputs(u0, p, spec.prob.tspan, spec.dtype, mode=spec.mode, dt=spec.step,
                       n_steps=spec.n_steps if spec.mode == "fixed" else 0, rtol=rtol, atol=atol,
                       max_steps=spec.max_steps, saveat=spec.saveat)


def make_outputs(inputs: KernelInputs, xp=np) -> dict[str, object]:
    """Output buffers: out_u (n_states, N), saved (n_save, n_states, N), stats (3, N) int32
    (accepted, rejected, f evaluations), status (N,) int32. ``xp``: numpy, or an object with
    ``empty(shape, dtype)`` for device arrays."""
    n, N = inputs.u0.shape
    dtype = inputs.u0.dtype
    ns = inputs.save_t.shape[0]
    return {
        "out_u": xp.empty((n, N), dtype=dtype),
        "saved": xp.empty((ns, n, N), dtype=dtype),
        "stats": xp.empty((3, N), dtype=np.int32),
        "status": xp.empty((N,), dtype=np.int32),
    }


def kernel_args(inputs: KernelInputs, outputs: dict) -> tuple:
    """All arguments in ``KERNEL_ARGS`` order."""
    vals = {**inputs.__dict__, **outputs}
    return tuple(vals[name] for name in KERNEL_ARGS)


# ================================================================================================
# Running on the CPU (tests, benchmark, backend)
# ================================================================================================

@dataclass
class KernelOutputs:
    """Host results in ensemble layout: u_final (N, n_states), saved (N, n_save, n_states)."""

    u_final: np.ndarray
    saved: np.ndarray | None
    accepted: np.ndarray
    rejected: np.ndarray
    rhs_evals: np.ndarray
    status: np.ndarray


def collect(outputs: dict, has_saves: bool) -> KernelOutputs:
    """Host outputs (NumPy arrays in kernel layout) to ensemble layout."""
    stats = np.asarray(outputs["stats"])
    saved = np.asarray(outputs["saved"])
    return KernelOutputs(
        u_final=np.ascontiguousarray(np.asarray(outputs["out_u"]).T),
        saved=np.ascontiguousarray(saved.transpose(2, 0, 1)) if has_saves else None,
        accepted=stats[0].astype(np.int64), rejected=stats[1].astype(np.int64),
        rhs_evals=stats[2].astype(np.int64), status=np.asarray(outputs["status"]).astype(np.int64),
    )


CPU_VARIANTS = ("lanes", "serial")


def cpu_kernel(key: KernelKey, variant: str = "lanes"):
    """The compiled-on-first-call CPU dispatcher of ``key`` ("lanes" or "serial")."""
    if key.target != "cpu":
        raise ValueError(f"cpu_kernel needs a cpu key, got target={key.target!r}")
    if variant not in CPU_VARIANTS:
        raise ValueError(f"invalid CPU variant {variant!r}: choose one of {', '.join(CPU_VARIANTS)}")
    mod = load_module(key)
    return mod.solve_lanes if variant == "lanes" else mod.solve_serial


def run_cpu(key: KernelKey, inputs: KernelInputs, variant: str = "lanes") -> KernelOutputs:
    """Solve on the CPU and return host results (a convenience for tests and tools)."""
    outputs = make_outputs(inputs)
    cpu_kernel(key, variant)(*kernel_args(inputs, outputs))
    return collect(outputs, inputs.save_t.shape[0] > 0)
