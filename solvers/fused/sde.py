"""Fused Euler-Maruyama for SDE ensembles: one kernel per solve, random numbers in registers.

One thread (GPU) or one loop iteration / lane (CPU) integrates one trajectory over the whole
time span. Its Wiener increments come from the counter-based generator of problems.brownian
(Philox-4x32-10 keyed by (trajectory, seed), counter (step, block)), computed where they are
used: no random-number state and no increment array ever touches memory, and the numbers do not
depend on N, on the split into blocks or threads, or on the device.

The per-trajectory step is generated once as Python source (states unrolled into scalars, as the
ODE kernels do) and compiled by Numba for the CPU (``numba.njit``: ``prange`` over lane blocks,
or over trajectories for ``variant="serial"``) and for CUDA (``cuda.jit``, one thread per
trajectory). Drift and diffusion are the problem's own functions (problems/), compiled by the
same decorators.

``refine`` (kernel argument, 1 in benchmark solves) makes the increment of a step the sum of
``refine`` finer normals, so that a solve at dt and one at dt/refine see the same Brownian path
(strong-order tests).
"""
from __future__ import annotations

import math
import sys
import threading
import types
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from problems.brownian import GENERATOR
from problems.registry import get_problem
from solvers.base import SolveResult

#: Trajectories per lane block of the CPU kernel.
LANES = 16

_lock = threading.Lock()
_modules: dict[tuple, types.ModuleType] = {}


@dataclass(frozen=True)
class SDEKernelKey:
    problem: str
    dtype: str
    target: str  # "cpu" or "cuda"
    lanes: int = LANES


def _step_source(prob) -> list[str]:
    """``_step(x.., pp, t, dt, sq, key0, key1, c0, refine)`` -> new states: one EM step."""
    ns, nw = prob.n_states, prob.n_noise
    xs = [f"x{i}" for i in range(ns)]
    ws = [f"w{j}" for j in range(nw)]
    lines = [f"def _step({', '.join(xs)}, pp, t, dt, sq, key0, key1, c0, refine):"]
    lines += [f"    {w} = _ZERO" for w in ws]
    lines += ["    for r in range(refine):",
              "        c = _U(c0 * refine + r)"]
    for b in range((nw + 3) // 4):
        lines += [f"        a0, a1, a2, a3 = _philox(c, _U({b}), _U(0), _U(0), key0, key1)",
                  "        z0, z1 = _bm(a0, a1)",
                  "        z2, z3 = _bm(a2, a3)"]
        for q in range(4):
            j = 4 * b + q
            if j < nw:
                lines.append(f"        w{j} = w{j} + z{q}")
    lines += [f"    {w} = {w} * sq" for w in ws]
    lines += [f"    u = ({', '.join(xs)},)",
              "    f = drift(u, pp, t)",
              "    g = diffusion(u, pp, t)"]
    new = []
    for i in range(ns):
        if prob.noise == "diagonal":
            noise = f"g[{i}] * w{i}"
        else:
            noise = " + ".join(f"g[{i}][{j}] * w{j}" for j in range(nw))
        new.append(f"x{i} + f[{i}] * dt + ({noise})")
    lines.append(f"    return ({', '.join(new)},)")
    return lines


def _solve_one_source(prob) -> list[str]:
    ns, npar = prob.n_states, prob.n_params
    xs = ", ".join(f"x{i}" for i in range(ns))
    lines = ["def _solve_one(i, u0, p, out, seed, t0, dt, sq, n_steps, refine):"]
    lines += [f"    x{i} = u0[i, {i}]" for i in range(ns)]
    lines += [f"    pp = ({', '.join(f'p[i, {j}]' for j in range(npar))},)",
              "    key0 = _U(i)",
              "    key1 = _U(seed)",
              "    for k in range(n_steps):",
              "        t = t0 + _T(k) * dt",
              f"        {xs}, = _step({xs}, pp, t, dt, sq, key0, key1, k, refine)"]
    lines += [f"    out[i, {i}] = x{i}" for i in range(ns)]
    return lines


def _block_source(prob) -> list[str]:
    """Lanes: the time loop outside, the _L trajectories of a block inside (their states in a
    small local array), so the lanes of one step are independent iterations."""
    ns, npar = prob.n_states, prob.n_params
    xs = ", ".join(f"x{i}" for i in range(ns))
    lines = ["def _block(b, u0, p, out, seed, t0, dt, sq, n_steps, refine):",
             "    n = u0.shape[0]",
             "    lo = b * _L",
             "    hi = min(lo + _L, n)",
             f"    X = np.empty(({ns}, _L), dtype=_T)",
             "    for l in range(hi - lo):"]
    lines += [f"        X[{i}, l] = u0[lo + l, {i}]" for i in range(ns)]
    lines += ["    for k in range(n_steps):",
              "        t = t0 + _T(k) * dt",
              "        for l in range(hi - lo):",
              "            i = lo + l",
              f"            pp = ({', '.join(f'p[i, {j}]' for j in range(npar))},)"]
    lines += [f"            x{i} = X[{i}, l]" for i in range(ns)]
    lines += [f"            {xs}, = _step({xs}, pp, t, dt, sq, _U(i), _U(seed), k, refine)"]
    lines += [f"            X[{i}, l] = x{i}" for i in range(ns)]
    lines += ["    for l in range(hi - lo):"]
    lines += [f"        out[lo + l, {i}] = X[{i}, l]" for i in range(ns)]
    return lines


def generate_source(key: SDEKernelKey) -> str:
    """The module source for ``key`` (kept readable: tests and reviewers look at it)."""
    prob = get_problem(key.problem)
    np_t = "np.float32" if key.dtype == "float32" else "np.float64"
    head = [
        f'"""Generated by solvers.fused.sde for {key!r}; do not edit."""',
        "import math",
        "import numba",
        "import numpy as np",
        "from problems.brownian import box_muller_for, philox4x32_10",
        "from problems.registry import get_problem",
        f"_T = {np_t}",
        "_U = np.uint64",
        "_ZERO = _T(0.0)",
        f"_L = {key.lanes}",
    ]
    if key.target == "cpu":
        head += [
            "from numba import prange",
            "_jit = numba.njit(fastmath={'contract'}, error_model='numpy')",
            "_kernel = numba.njit(parallel=True, fastmath={'contract'}, error_model='numpy')",
        ]
    else:
        # register_jitable: plain functions the kernel compiles for its own target (no device
        # dispatcher, so compile_ptx needs no driver and the simulator runs them as Python)
        head += ["from numba import cuda", "from numba.core.extending import register_jitable as _jit"]
    head += [
        "_philox = _jit(philox4x32_10)",
        "_bm = _jit(box_muller_for(_T))",
        f"drift = get_problem({key.problem!r}).drift_for(math, wrap=_jit)",
        f"diffusion = get_problem({key.problem!r}).diffusion_for(math, wrap=_jit)",
    ]
    body = ["", "@_jit"] + _step_source(prob) + ["", "", "@_jit"] + _solve_one_source(prob)
    if key.target == "cpu":
        body += ["", "", "@_jit"] + _block_source(prob) + [
            "", "",
            "@_kernel",
            "def solve_lanes(u0, p, out, seed, t0, dt, sq, n_steps, refine):",
            "    n_blocks = (u0.shape[0] + _L - 1) // _L",
            "    for b in prange(n_blocks):",
            "        _block(b, u0, p, out, seed, t0, dt, sq, n_steps, refine)",
            "", "",
            "@_kernel",
            "def solve_serial(u0, p, out, seed, t0, dt, sq, n_steps, refine):",
            "    for i in prange(u0.shape[0]):",
            "        _solve_one(i, u0, p, out, seed, t0, dt, sq, n_steps, refine)",
        ]
    else:
        body += [
            "", "",
            "@cuda.jit",
            "def solve_kernel(u0, p, out, seed, t0, dt, sq, n_steps, refine):",
            "    i = cuda.grid(1)  # one thread per trajectory, the whole time loop inside it",
            "    if i < u0.shape[0]:",
            "        _solve_one(i, u0, p, out, seed, t0, dt, sq, n_steps, refine)",
        ]
    return "\n".join(head + body) + "\n"


def load_module(key: SDEKernelKey) -> types.ModuleType:
    """The compiled-on-first-call module of ``key`` (one per process)."""
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            name = f"_fused_sde_{key.problem}_{key.dtype}_{key.target}_{key.lanes}"
            mod = types.ModuleType(name)
            mod.__file__ = f"<{name}>"
            sys.modules[name] = mod
            exec(compile(generate_source(key), mod.__file__, "exec"), mod.__dict__)
            _modules[key] = mod
    return mod


def kernel_args(u0: np.ndarray, p: np.ndarray, out, seed: int, t0: float, dt: float, n_steps: int,
                refine: int, dtype: str) -> tuple:
    T = np.dtype(dtype).type
    return (u0, p, out, np.int64(seed), T(t0), T(dt), T(math.sqrt(dt / refine)), np.int64(n_steps),
            np.int64(refine))


def run_cpu(problem: str, u0: np.ndarray, p: np.ndarray, *, dt: float, n_steps: int, seed: int = 0,
            refine: int = 1, t0: float = 0.0, variant: str = "lanes", lanes: int = LANES) -> np.ndarray:
    """Solve on the CPU and return the final states (tests and tools)."""
    dtype = u0.dtype.name
    mod = load_module(SDEKernelKey(problem, dtype, "cpu", lanes))
    out = np.empty_like(u0)
    kern = mod.solve_lanes if variant == "lanes" else mod.solve_serial
    kern(*kernel_args(u0, p, out, seed, t0, dt, n_steps, refine, dtype))
    return out


class FusedSDEPrepared:
    """The SDE counterpart of FusedPrepared (same lifecycle; see solvers.base.Prepared)."""

    dispatch = "kernel"

    def __init__(self, spec: Any, variant: str, threads_per_block: int, lanes: int) -> None:
        self.spec = spec
        u0, p = spec.ensemble()
        t0 = spec.prob.tspan[0]
        self.target = "cuda" if spec.device == "gpu" else "cpu"
        mod = load_module(SDEKernelKey(spec.problem, spec.dtype, self.target, lanes))
        if self.target == "cpu":
            self._out = np.empty_like(u0)
            self._kernel = mod.solve_serial if variant == "serial" else mod.solve_lanes
            self._args = kernel_args(u0, p, self._out, spec.seed, t0, spec.step, spec.n_steps, 1, spec.dtype)
        else:
            from numba import cuda  # optional (numba-cuda): needed for a GPU solve only

            d_u0, d_p = cuda.to_device(u0), cuda.to_device(p)
            self._out = cuda.device_array(u0.shape, dtype=u0.dtype)
            self._args = kernel_args(d_u0, d_p, self._out, spec.seed, t0, spec.step, spec.n_steps, 1, spec.dtype)
            blocks = (u0.shape[0] + threads_per_block - 1) // threads_per_block
            self._kernel = mod.solve_kernel[blocks, threads_per_block]
            cuda.synchronize()

    def run(self) -> Any:
        self._kernel(*self._args)
        return self._out

    def sync(self, out: Any) -> None:
        if self.target == "cuda":
            from numba import cuda  # optional (numba-cuda): needed for a GPU solve only

            cuda.synchronize()

    def fetch(self, out: Any):
        u = out if isinstance(out, np.ndarray) else out.copy_to_host()
        n = u.shape[0]
        steps = np.full(n, self.spec.n_steps, dtype=np.int64)
        return SolveResult(u_final=np.array(u), status=np.where(np.isfinite(u).all(axis=1), 0, 3),
                           accepted=steps, rejected=np.zeros(n, dtype=np.int64), rhs_evals=steps,
                           notes={"increments": GENERATOR, "seed": self.spec.seed})

    def close(self) -> None:
        self._args = None
        self._out = None


def check(backend: Any, spec: Any) -> str | None:
    """The fused backend's SDE-specific check (after its generic one)."""
    if spec.variant == "serial" and spec.device != "cpu":
        return "variant 'serial' is a CPU variant"
    return "the fused SDE kernels save the final state only" if spec.saveat is not None else None


def prepare(backend: Any, spec: Any) -> FusedSDEPrepared:
    return FusedSDEPrepared(spec, spec.variant, backend.threads_per_block, LANES)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    prob, variant, threads_per_block, lanes = spec.prob, spec.variant, backend.threads_per_block, LANES
    out = {
        "step_control": "none", "method": "euler-maruyama", "strong_order": 0.5, "weak_order": 1.0,
        "noise": f"{prob.noise}, {prob.n_noise} Wiener processes", "dt": spec.step, "n_steps": spec.n_steps,
        "increments": GENERATOR + " (in registers, no state in memory)", "seed": spec.seed,
        "kernel": "one thread per trajectory (CUDA)" if spec.device == "gpu" else (
            "serial: prange over trajectories" if variant == "serial"
            else f"lanes: prange over blocks of {lanes}, time loop outside the lane loop"),
        "drift_diffusion_evals_per_step": 1,
    }
    if spec.device == "gpu":
        out["threads_per_block"] = threads_per_block
    else:
        out["threads"] = numba.get_num_threads()
    return out
