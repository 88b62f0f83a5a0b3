"""Fused adaptive Tsit5 with per-trajectory events, tstops and dense saving (kind "event").

One thread (CUDA) or one loop iteration (CPU) integrates one trajectory over the whole time
span, as DiffEqGPU's ``EnsembleGPUKernel`` with ``GPUContinuousCallback`` /
``GPUDiscreteCallback`` / ``tstops`` / ``saveat``:

* **steps**: Tsit5 with DiffEqGPU's PI controller and error norm, every constant in the state
  dtype, as the fused ODE kernels compute them (issue 29): the squared norm ``ssq = n EEst^2``
  (``methods.norm_lines``), accepted when ``ssq <= n``, and ``_control`` printed by
  ``assemble.controller_source`` from ``solvers.tableaus.pi_control_squared`` with the same
  ``_log``/``_exp`` snippets (one log, one exp per attempt; controller memory ``lm``). The stage sums, the error estimate and the interpolant are printed by
  ``solvers.tableaus.rk_update`` from ``TSIT5`` / ``TSIT5_DENSE`` (no coefficient copied here).
* **stops**: a step never passes the next stop (a dose time, the arming time of an event, the
  end); it is clipped to land on it exactly, as the end of the span is (``SNAP_ULPS`` window).
  At a dose time ``discrete_affect`` is applied in the thread and counted as an event.
* **continuous events**: after each accepted step the condition is evaluated at the new state;
  a sign change from the previous accepted value (in the problem's ``direction``) is located on
  the step's dense interpolant by the Illinois variant of regula falsi on theta in [0, 1],
  until the bracket is at most ``ROOT_TOL_ULPS`` ulps of the dtype wide (theta units, i.e.
  4 eps * h in time) or ``ROOT_MAX_ITER`` iterations; the left end of the bracket is taken
  (where the condition has not yet crossed: DiffEqGPU's ``LeftRootFind``). The state there is
  the interpolant's; the affect is applied; the trajectory goes on from the event time with
  ``k1`` re-evaluated at the new state (FSAL is void after an affect), the step the controller
  proposed for the accepted step and its memory ``lm`` (DiffEqGPU keeps ``dtnew`` and ``qold``
  across a callback and marks ``u_modified``; ``lm = log(n qold^2)``). A terminal event ends that trajectory only (its state
  at the event is its final state; saves after it stay NaN).
* **saving**: save times inside an accepted step (up to the event time when there is one) are
  interpolated with Tsit5's dense output; a save time equal to the step's end takes the new
  state. Output N x len(saveat) x d on every backend (kernel layout: (S, d, N)).

CPU and CUDA run the same generated per-trajectory function ``_solve_one``: ``solve_serial``
(``prange`` over trajectories), ``solve_lanes`` (``prange`` over blocks of ``LANES``
trajectories, the trajectories of a block one after another: the event kernel is not
vectorised across lanes) and ``solve_kernel`` (``cuda.jit``, one thread per trajectory), so the
CPU variants agree bit for bit.
"""
from __future__ import annotations

import hashlib
import threading
import types
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from problems.registry import get_problem
from solvers.base import SolveResult
from solvers.cache import writable_cache
from solvers.event_policy import ROOT_MAX_ITER, ROOT_TOL_ULPS
from solvers.fused.assemble import controller_for, controller_source, cuda_helper_snippets, log_exp_source
from solvers.fused.build import import_file, write_source
from solvers.fused.emit import Constants
from solvers.fused.methods import norm_lines
from solvers.tableaus import SNAP_ULPS, TSIT5, TSIT5_DENSE, Src, SquaredPI, rk_update, srcs

#: The step controller: DiffEqGPU's PI controller for Tsit5, as the fused ODE kernels take it.
CTRL = controller_for("tsit5", "diffeqgpu")

#: Trajectories per block of the CPU lanes kernel.
LANES = 16

_lock = threading.Lock()
_modules: dict[tuple, types.ModuleType] = {}


@dataclass(frozen=True)
class EventKernelKey:
    problem: str
    dtype: str
    target: str  # "cpu" or "cuda"
    lanes: int = LANES


class _Consts:
    """Typed constants of the generated module, one name per distinct value."""

    def __init__(self) -> None:
        self.names: dict[float, str] = {}

    def __call__(self, value: float) -> Src:
        v = float(value)
        if v not in self.names:
            self.names[v] = f"_C{len(self.names)}"
        return Src(self.names[v])

    def source(self) -> list[str]:
        return [f"{name} = _T({value!r})" for value, name in self.names.items()]


def _tup(items) -> str:
    items = list(items)
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _helpers(prob, C: _Consts) -> list[str]:
    """``_attempt`` (one Tsit5 trial step) and ``_interp`` (the dense output) as source."""
    d = prob.n_states
    xs = [f"x{i}" for i in range(d)]
    ks = [[f"k{s}_{i}" for i in range(d)] for s in range(1, 8)]
    const = (lambda j, c: C(c))
    lines = [f"def _attempt({', '.join(xs)}, {', '.join(ks[0])}, pp, t, h):"]
    stages = [ks[0]]
    for s in range(1, 6):  # stages 2..6
        row = TSIT5.a[s]
        for i in range(d):
            arg = rk_update(Src(xs[i]), Src("h"), row, srcs(st[i] for st in stages), const)
            lines.append(f"    y{i} = {arg}")
        tc = "t + h" if TSIT5.c[s] == 1.0 else f"t + h * {C(TSIT5.c[s])}"
        lines.append(f"    {_tup(ks[s])} = _f({_tup(f'y{i}' for i in range(d))}, pp, {tc})")
        stages.append(ks[s])
    for i in range(d):
        lines.append(f"    n{i} = {rk_update(Src(xs[i]), Src('h'), TSIT5.b[:6], srcs(st[i] for st in stages), const)}")
    lines.append(f"    {_tup(ks[6])} = _f({_tup(f'n{i}' for i in range(d))}, pp, t + h)")
    stages.append(ks[6])
    for i in range(d):
        lines.append(f"    e{i} = {rk_update(None, Src('h'), TSIT5.btilde, srcs(st[i] for st in stages), const)}")
    out = [f"n{i}" for i in range(d)] + [k for s in ks[1:] for k in s] + [f"e{i}" for i in range(d)]
    lines.append(f"    return {_tup(out)}")
    # dense output: b_i(theta) by Horner as solvers.tableaus.tsit5_dense_weights
    lines += ["", "", "@_jit",
              f"def _interp(th, h, {', '.join(xs)}, {', '.join(k for s in ks for k in s)}):"]
    for j, (r1, r2, r3, r4) in enumerate(TSIT5_DENSE.r):
        lines.append(f"    w{j} = th * ({C(r1)} + th * ({C(r2)} + th * ({C(r3)} + th * {C(r4)})))")
    ws = srcs(f"w{j}" for j in range(7))
    vals = [rk_update(Src(xs[i]), Src("h"), ws, srcs(s[i] for s in ks)) for i in range(d)]
    lines.append(f"    return {_tup(vals)}")
    return lines


def _prologue_source(prob, C: _Consts, K: Constants, X: str, K1: str, cond) -> list[str]:
    """``_solve_one``'s signature, its set-up and the processing of reached stops."""
    d, npar = prob.n_states, prob.n_params
    has_cond = prob.condition is not None
    L = ["def _solve_one(i, u0, p, t0, tf, dt0, rtol, atol, max_steps, save_t, stop_t, stop_dose, ev_from,",
         "               out_u, out_saved, out_evt, stats, status_out):"]
    L += [f"    x{j} = u0[{j}, i]" for j in range(d)]
    L += [f"    pp = {_tup(f'p[{j}, i]' for j in range(npar))}",
          "    t = t0", "    dt = dt0", f"    lm = {K.add('LM_INIT', SquaredPI.of(CTRL, d).lm_init)}",
          "    acc = 0", "    rej = 0", "    nev = 0", "    nrhs = 1", "    status = 0",
          f"    {K1} = _f({X}, pp, t)",
          "    ns = save_t.shape[0]", "    si = 0",
          "    while si < ns and save_t[si] <= t:"]
    L += [f"        out_saved[si, {j}, i] = x{j}" for j in range(d)]
    L += ["        si += 1",
          "    nst = stop_t.shape[0]", "    sti = 0", "    kmax = out_evt.shape[0]",
          "    armed = t >= ev_from",
          f"    gprev = {cond(X, 't') if has_cond else C(0.0)}",
          "    while True:",
          "        while sti < nst and stop_t[sti] <= t:  # stops reached: doses, arming",
          "            if stop_dose[sti]:"]
    if prob.discrete_affect is not None:
        L += [f"                {X} = _dis({X}, pp, t)",
              "                if nev < kmax:", "                    out_evt[nev, i] = t",
              "                nev += 1",
              f"                {K1} = _f({X}, pp, t)", "                nrhs += 1"]
    else:
        L += ["                pass"]
    L += ["            sti += 1",
          "            armed = t >= ev_from"]
    if has_cond:
        L += [f"            gprev = {cond(X, 't')}"]
    return L


def _solve_source(prob, C: _Consts, K: Constants) -> list[str]:
    """``_solve_one``. ``K`` holds the constants of the shared step-control snippets
    (``_control``, ``_log``, ``_exp``: ``_control_source``); ``C`` the kernel's own."""
    d = prob.n_states
    X = _tup(f"x{i}" for i in range(d))
    K1 = _tup(f"k1_{i}" for i in range(d))
    KS = ", ".join(f"k{s}_{i}" for s in range(1, 8) for i in range(d))
    has_cond = prob.condition is not None
    cond = (lambda x, t: f"_cond({x}, pp, {t})")
    nstates = K.add("NSTATES", float(d))
    L = _prologue_source(prob, C, K, X, K1, cond)
    L += ["        if t >= tf:", "            break",
          "        if acc + rej >= max_steps:", "            status = 1", "            break",
          "        nxt = stop_t[sti] if sti < nst else tf",
          "        remaining = nxt - t",
          "        last = dt >= remaining - _SNAP * abs(nxt)",
          "        h = remaining if last else dt",
          "        if (not last) and (h < _DTMIN or t + h == t):", "            status = 2", "            break",
          f"        {', '.join(f'n{j}' for j in range(d))}, {', '.join(f'k{s}_{j}' for s in range(2, 8) for j in range(d))}, "
          f"{', '.join(f'e{j}' for j in range(d))}, = _attempt({', '.join(f'x{j}' for j in range(d))}, "
          f"{', '.join(f'k1_{j}' for j in range(d))}, pp, t, h)",
          "        nrhs += 6"]
    # The error norm and the PI controller of the fused ODE kernels (issue 29): ``ssq`` = n
    # EEst^2 (``methods.norm_lines``), accepted when ``ssq <= n``, the controller memory ``lm``
    # and one log + one exp per attempt (``_control``, printed by ``assemble.controller_source``).
    L += ["        " + v for v in norm_lines(K, [f"e{j}" for j in range(d)], [f"x{j}" for j in range(d)],
                                             [f"n{j}" for j in range(d)])]
    L += ["        if not math.isfinite(ssq):", "            rej += 1", "            status = 3", "            break",
          "        dtn, dtr, lmn = _control(ssq, lm, h)",
          f"        if not (ssq <= {nstates}):",
          "            rej += 1",
          "            dt = dtr",
          "            continue",
          "        dt = max(dtn, dt) if h < dt else dtn  # after a clipped landing: the proposed step",
          "        acc += 1",
          "        tend = nxt if last else t + h",
          "        hit = False",
          f"        th = {C(1.0)}"]
    N = _tup(f"n{j}" for j in range(d))
    if has_cond:
        if prob.direction < 0:
            crossing = f"gprev > {C(0.0)} and gnew <= {C(0.0)}"
        elif prob.direction > 0:
            crossing = f"gprev < {C(0.0)} and gnew >= {C(0.0)}"
        else:
            crossing = (f"(gprev > {C(0.0)} and gnew <= {C(0.0)}) or (gprev < {C(0.0)} and gnew >= {C(0.0)})")
        L += ["        gnew = gprev",
              "        if armed:",
              f"            gnew = {cond(N, 'tend')}",
              f"            if {crossing}:",
              "                hit = True",
              f"                th = _root(gprev, gnew, h, t, pp, {', '.join(f'x{j}' for j in range(d))}, {KS})"]
    L += ["        tev = t + th * h if hit else tend",
          "        while si < ns and save_t[si] <= tev:",
          "            ts = save_t[si]",
          "            if ts == tend:"]
    L += [f"                out_saved[si, {j}, i] = n{j}" for j in range(d)]
    L += ["            else:",
          f"                {', '.join(f'v{j}' for j in range(d))}, = _interp((ts - t) / h, h, "
          f"{', '.join(f'x{j}' for j in range(d))}, {KS})"]
    L += [f"                out_saved[si, {j}, i] = v{j}" for j in range(d)]
    L += ["            si += 1"]
    if has_cond:
        L += ["        if hit:",
              f"            {', '.join(f'x{j}' for j in range(d))}, = _interp(th, h, {', '.join(f'x{j}' for j in range(d))}, {KS})",
              "            t = tev", "            lm = lmn",
              "            if nev < kmax:", "                out_evt[nev, i] = t",
              "            nev += 1"]
        if prob.terminal:
            L += ["            break"]
        else:
            L += [f"            {X} = _aff({X}, pp, t)",
                  f"            {K1} = _f({X}, pp, t)", "            nrhs += 1",
                  f"            gprev = {cond(X, 't')}",
                  "            continue"]
        L += ["        gprev = gnew"]
    L += [f"        {X} = {N}",
          f"        {K1} = {_tup(f'k7_{j}' for j in range(d))}",
          "        t = tend", "        lm = lmn"]
    L += [f"    out_u[{j}, i] = x{j}" for j in range(d)]
    L += ["    stats[0, i] = acc", "    stats[1, i] = rej", "    stats[2, i] = nrhs", "    stats[3, i] = nev",
          "    status_out[i] = status"]
    return L


def _root_source(prob, C: _Consts) -> list[str]:
    """``_root``: Illinois regula falsi for the crossing on the step's interpolant (theta)."""
    d = prob.n_states
    xs = ", ".join(f"x{j}" for j in range(d))
    KS = ", ".join(f"k{s}_{i}" for s in range(1, 8) for i in range(d))
    return [
        f"def _root(ga, gb, h, t, pp, {xs}, {KS}):",
        f"    a = {C(0.0)}", f"    b = {C(1.0)}", "    fa = ga", "    fb = gb", "    side = 0",
        f"    for it in range({ROOT_MAX_ITER}):",
        "        if b - a <= _THTOL:", "            break",
        "        c = b - fb * (b - a) / (fb - fa)",
        "        if not (c > a and c < b):", f"            c = (a + b) * {C(0.5)}",
        f"        u = _interp(c, h, {xs}, {KS})",
        "        fc = _cond(u, pp, t + c * h)",
        f"        if (fc > {C(0.0)}) == (fa > {C(0.0)}) and fc != {C(0.0)}:  # not crossed yet",
        "            a = c", "            fa = fc",
        "            if side == -1:", f"                fb = fb * {C(0.5)}",
        "            side = -1",
        "        else:",
        "            b = c", "            fb = fc",
        "            if side == 1:", f"                fa = fa * {C(0.5)}",
        "            side = 1",
        "    return a",
    ]


def _control_source(key: EventKernelKey, n: int, K: Constants) -> list[str]:
    """The step controller's functions, from the snippets the fused ODE kernels splice:
    ``_control`` (``assemble.controller_source``: ``solvers.tableaus.pi_control_squared``),
    ``_log`` / ``_exp`` (``assemble.log_exp_source``) and, on CUDA, the bit-level helpers
    ``_sel``, ``_mant``, ``_expo``, ``_pow2``, ``_floor`` (``assemble.cuda_helper_snippets``;
    on the CPU ``_sel`` is below and the others are ``solvers.fused.bits``' intrinsics)."""
    if key.target == "cpu":
        snippets = [["def _sel(c, a, b):", "    return a if c else b"]]
    else:
        snippets = [src.rstrip("\n").split("\n") for src in cuda_helper_snippets(key.dtype)]
    snippets += log_exp_source(K, key.dtype) + [controller_source(K, CTRL, n)]
    out: list[str] = []
    for snip in snippets:
        out += ["", "", "@_jit"] + snip
    return out


def generate_source(key: EventKernelKey) -> str:
    prob = get_problem(key.problem)
    C = _Consts()
    K = Constants(key.dtype)  # the shared controller snippets' constants (``_ONE``, ``_NSTATES``, ...)
    body = _control_source(key, prob.n_states, K)
    body += ["", "", "@_jit"] + _helpers(prob, C)
    if prob.condition is not None:
        body += ["", "", "@_jit"] + _root_source(prob, C)
    body += ["", "", "@_jit"] + _solve_source(prob, C, K)
    eps = float(np.finfo(key.dtype).eps)
    head = [f'"""Generated by solvers.fused.events for {key!r}; do not edit."""',
            "import math", "import numba", "import numpy as np",
            "from problems.registry import get_problem",
            f"_T = np.{key.dtype}", f"_L = {key.lanes}"]
    if key.target == "cpu":
        head += ["from numba import prange",
                 "from solvers.fused.bits import cpu_helpers",
                 "_jit = numba.njit(fastmath={'contract'}, error_model='numpy', cache=True)",
                 "_kernel = numba.njit(parallel=True, fastmath={'contract'}, error_model='numpy', cache=True)",
                 f"_mant, _expo, _pow2, _floor = cpu_helpers({key.dtype!r})"]
    else:
        head += ["from numba import cuda", "from numba.core.extending import register_jitable as _jit",
                 "from solvers.fused.bits import cuda_bitcasts",
                 f"_f2i, _i2f, _floorlib = cuda_bitcasts({key.dtype!r})",
                 f"_IB = np.{'int32' if key.dtype == 'float32' else 'int64'}  # the integer of the same width"]
    head += C.source() + K.source()
    head += [f"_SNAP = _T({SNAP_ULPS * eps!r})", f"_DTMIN = _T({CTRL.dtmin!r})",
             f"_THTOL = _T({ROOT_TOL_ULPS * eps!r})",
             f"_prob = get_problem({key.problem!r})",
             "_f = _prob.bound('rhs', math, _jit)"]
    for name, which in (("_cond", "condition"), ("_aff", "affect"), ("_dis", "discrete_affect")):
        if getattr(prob, which) is not None:
            head.append(f"{name} = _prob.bound({which!r}, math, _jit)")
    args = ("u0, p, t0, tf, dt0, rtol, atol, max_steps, save_t, stop_t, stop_dose, ev_from, "
            "out_u, out_saved, out_evt, stats, status_out")
    if key.target == "cpu":
        body += ["", "", "@_kernel", f"def solve_serial({args}):",
                 "    for i in prange(u0.shape[1]):", f"        _solve_one(i, {args})",
                 "", "", "@_kernel", f"def solve_lanes({args}):",
                 "    n = u0.shape[1]", "    for b in prange((n + _L - 1) // _L):",
                 "        for i in range(b * _L, min(b * _L + _L, n)):", f"            _solve_one(i, {args})"]
    else:
        body += ["", "", "@cuda.jit", f"def solve_kernel({args}):",
                 "    i = cuda.grid(1)  # one thread per trajectory, the whole time loop inside it",
                 "    if i < u0.shape[1]:", f"        _solve_one(i, {args})"]
    return "\n".join(head + body) + "\n"


def load_module(key: EventKernelKey) -> types.ModuleType:
    """The generated module of ``key``, written to the cache (Numba's disk cache needs a file)."""
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            src = generate_source(key)
            digest = hashlib.sha256((src + get_problem(key.problem).fingerprint()).encode()).hexdigest()[:12]
            name = f"_fused_events_{key.problem}_{key.dtype}_{key.target}_{key.lanes}_{digest}"
            mod = _modules[key] = import_file(write_source(writable_cache("fused_events") / f"{name}.py", lambda: src))
    return mod


# ================================================================================================
# Arguments and outputs
# ================================================================================================

def make_args(prob, u0: np.ndarray, p: np.ndarray, dtype: str, dt0: float, rtol: float, atol: float,
              max_steps: int, saveat, xp: Any = None) -> tuple[tuple, dict]:
    """(kernel arguments, the output buffers by name) for an ensemble in (N, d) layout; ``xp``:
    None for host arrays, else a ``to_device``/``device_array`` provider (numba.cuda)."""
    T = np.dtype(dtype).type
    n, d = u0.shape
    stops = prob.stops
    save = np.zeros(0) if saveat is None else np.asarray(saveat, dtype=np.float64)
    host_in = {
        "u0": np.ascontiguousarray(u0.T.astype(dtype)), "p": np.ascontiguousarray(p.T.astype(dtype)),
        "save_t": save.astype(dtype), "stop_t": np.asarray([s for s, _ in stops], dtype=dtype),
        "stop_dose": np.asarray([dose for _, dose in stops], dtype=np.bool_),
    }
    saved0 = np.full((len(save), d, n), np.nan, dtype=dtype)  # NaN: a save after a terminal event
    evt0 = np.full((prob.max_events, n), np.nan, dtype=dtype)
    outs = {"out_u": np.empty((d, n), dtype=dtype), "out_saved": saved0, "out_evt": evt0,
            "stats": np.zeros((4, n), dtype=np.int64), "status_out": np.zeros(n, dtype=np.int32)}
    if xp is not None:
        host_in = {k: xp.to_device(v) for k, v in host_in.items()}
        outs = {k: xp.to_device(v) for k, v in outs.items()}
    ev_from = prob.event_from if prob.event_from is not None else prob.tspan[0]
    args = (host_in["u0"], host_in["p"], T(prob.tspan[0]), T(prob.tspan[1]), T(dt0), T(rtol), T(atol),
            np.int64(max_steps), host_in["save_t"], host_in["stop_t"], host_in["stop_dose"], T(ev_from),
            outs["out_u"], outs["out_saved"], outs["out_evt"], outs["stats"], outs["status_out"])
    return args, outs


def to_result(outs: dict, has_saves: bool, notes: dict) -> SolveResult:
    """Host outputs (kernel layout) to a SolveResult (ensemble layout: N x S x d)."""
    h = {k: (v if isinstance(v, np.ndarray) else v.copy_to_host()) for k, v in outs.items()}
    stats = h["stats"]
    return SolveResult(
        u_final=np.ascontiguousarray(h["out_u"].T),
        saved=np.ascontiguousarray(h["out_saved"].transpose(2, 0, 1)) if has_saves else None,
        status=h["status_out"].astype(np.int64), accepted=stats[0].copy(), rejected=stats[1].copy(),
        rhs_evals=stats[2].copy(), events=stats[3].copy(), event_t=np.ascontiguousarray(h["out_evt"].T),
        notes=notes)


def run_cpu(problem: str, u0: np.ndarray, p: np.ndarray, *, dt0: float | None = None, rtol: float | None = None,
            atol: float | None = None, max_steps: int = 100_000, saveat=None, variant: str = "lanes",
            lanes: int = LANES) -> SolveResult:
    """Solve on the CPU (tests and tools)."""
    prob = get_problem(problem)
    dtype = u0.dtype.name
    mod = load_module(EventKernelKey(problem, dtype, "cpu", lanes))
    args, outs = make_args(prob, u0, p, dtype, dt0 or prob.dt0, rtol or prob.rtol, atol or prob.atol,
                           max_steps, saveat)
    (mod.solve_lanes if variant == "lanes" else mod.solve_serial)(*args)
    return to_result(outs, saveat is not None, {"variant": variant})


# ================================================================================================
# The backend's kind module (solvers.base.KindSupport)
# ================================================================================================

class FusedEventPrepared:
    """Same lifecycle as solvers.fused.backend.FusedPrepared (see solvers.base.Prepared)."""

    dispatch = "kernel"

    def __init__(self, spec: Any, threads_per_block: int) -> None:
        self.spec = spec
        prob = spec.prob
        u0, p = spec.ensemble()
        rtol, atol = spec.tol
        self.target = "cuda" if spec.device == "gpu" else "cpu"
        self.variant = "gpu" if self.target == "cuda" else ("serial" if spec.variant == "serial" else "lanes")
        mod = load_module(EventKernelKey(spec.problem, spec.dtype, self.target))
        if self.target == "cpu":
            self._args, self._outs = make_args(prob, u0, p, spec.dtype, spec.step, rtol, atol,
                                               spec.max_steps, spec.saveat)
            self._kernel = mod.solve_serial if self.variant == "serial" else mod.solve_lanes
        else:
            from numba import cuda  # optional (numba-cuda): a GPU solve only

            self._args, self._outs = make_args(prob, u0, p, spec.dtype, spec.step, rtol, atol,
                                               spec.max_steps, spec.saveat, xp=cuda)
            blocks = (spec.n + threads_per_block - 1) // threads_per_block
            self._kernel = mod.solve_kernel[blocks, threads_per_block]
            cuda.synchronize()

    def run(self) -> Any:
        self._kernel(*self._args)
        return self._outs

    def sync(self, out: Any) -> None:
        if self.target == "cuda":
            from numba import cuda  # optional (numba-cuda): a GPU solve only

            cuda.synchronize()

    def fetch(self, out: Any) -> SolveResult:
        return to_result(out, self.spec.saveat is not None,
                         {"variant": self.variant, "step_scope": "per-trajectory", "events": "per-trajectory"})

    def close(self) -> None:
        self._args = ()
        self._outs = {}


def check(backend: Any, spec: Any) -> str | None:
    """The fused backend's event-specific check (after its generic one)."""
    if spec.variant not in ("", "serial"):
        return "event kernels have the variants '' (lanes) and 'serial'"
    if spec.variant == "serial" and spec.device != "cpu":
        return "variant 'serial' is a CPU variant"
    return None


def prepare(backend: Any, spec: Any) -> FusedEventPrepared:
    return FusedEventPrepared(spec, backend.threads_per_block)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    prob = spec.prob
    rtol, atol = spec.tol
    ctrl = CTRL
    K = SquaredPI.of(ctrl, prob.n_states)
    out = {
        "step_control": "per-trajectory", "method": "tsit5", "mode": "adaptive", "dtype": spec.dtype,
        "dt0": spec.step, "rtol": rtol, "atol": atol, "max_steps": spec.max_steps,
        "controller": "diffeqgpu", "beta1": ctrl.beta1, "beta2": ctrl.beta2, "qmin": ctrl.qmin,
        "qmax": ctrl.qmax, "gamma": ctrl.gamma, "qold_init": ctrl.qold_init, "dtmin": ctrl.dtmin,
        "error_norm": "ssq = sum of (err / (atol + max(|u_prev|, |u_new|) * rtol))^2 = n EEst^2, "
                      "accepted when ssq <= n (no square root)",
        "controller_law": "solvers.tableaus.pi_control_squared (SquaredPI), the fused ODE kernels' "
                          "_control: one log and one exp per attempt, memory lm = log(max(ssq, n qold_init^2))",
        "controller_power": "in-kernel log/exp (assemble.log_exp_source, bit-level), ssq clamped to "
                            f"[{K.ssq_lo:.3g}, {K.ssq_hi:.3g}] where the clamps decide",
        "lm_init": K.lm_init,
        "events": "per-trajectory, in the thread",
        "event_detection": "sign change of the condition between accepted steps" if prob.condition else "none",
        "root_finder": (f"Illinois regula falsi on the Tsit5 interpolant, bracket <= {ROOT_TOL_ULPS} ulp of "
                        f"theta or {ROOT_MAX_ITER} iterations, left end (LeftRootFind)") if prob.condition else "none",
        "after_event": "k1 re-evaluated, dt and the controller memory lm as the controller proposed (DiffEqGPU u_modified)",
        "tstops": list(prob.tstops), "event_from": prob.event_from, "terminal": prob.terminal,
        "saveat": None if spec.saveat is None else len(spec.saveat),
        "save_mode": "dense (Tsit5 interpolant)" if spec.saveat is not None else "final",
        "kernel": "one thread per trajectory (CUDA)" if spec.device == "gpu" else (
            "serial: prange over trajectories" if spec.variant == "serial"
            else f"lanes: prange over blocks of {LANES} trajectories, not vectorised across lanes"),
    }
    if spec.device == "gpu":
        out["threads_per_block"] = backend.threads_per_block
    else:
        out["threads"] = numba.get_num_threads()
    return out
