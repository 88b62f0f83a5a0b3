"""The kernel generator: one problem definition + a method -> a CPU module and a CUDA module.

``generate_source(key)`` returns the Python source of a module holding, for one problem,
method, mode, dtype and save mode:

* the problem's right-hand side (``problem.rhs_for(math)``) and the Jacobian / time
  derivative derived by SymPy (the source of ``problem.derivatives().functions(math,
  numba.float32)``, embedded so a cached kernel needs no SymPy);
* the step pieces as straight-line functions on scalars with typed constants: the method's
  step or attempt (``solvers.fused.methods``), the PI controller and its log/exp;
* ``_solve_one``: one whole trajectory (stages, error estimate, PI control, saving), the
  body of a CUDA thread and of the serial CPU loop;
* for ``target="cuda"``: ``solve_kernel``, one thread per trajectory, the whole time loop in
  the thread, everything (rhs included) spliced into it as source;
  for ``target="cpu"``: ``solve_lanes`` (``prange`` over blocks of ``lanes`` trajectories,
  time loop inside the block, the lane loop innermost so LLVM vectorises it, each lane with
  its own adaptive step under masks) and ``solve_serial`` (``prange`` over trajectories).

The step pieces are spliced into the loops as source (``emit.Inliner``), not called.
All kernels take the same arguments (``KERNEL_ARGS``): arrays laid out with the trajectory
index last, so CUDA threads and CPU lanes read and write neighbouring addresses.

Float32 kernels are float32 throughout: every constant is a module-level ``_T(...)`` value
(``_T`` = ``numpy.float32``, or ``numba.float32`` in CUDA modules), integer counters enter
float arithmetic through ``_T(i)``, and the controller's powers use an in-kernel log/exp
(``solvers.fused.bits``) instead of libm ``pow`` (which would not vectorise either).
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from problems import derive
from problems.registry import get_problem
from solvers.base import Status
from solvers.fused.bits import bit_format
from solvers.fused import looped
from solvers.fused.emit import Constants, Inliner, free_globals, interleave_lane_loops, names, targets
from solvers.fused.methods import MethodCode, Shape, method_code
from solvers.tableaus import SNAP_ULPS, PIController, get_controller

SAVE_MODES = ("final", "grid", "dense", "stop")
TARGETS = ("cpu", "cuda")
RUNNING = -1  # internal status of a trajectory still integrating
LANE_LAYOUTS = ("two-pass", "one-pass")


def default_lane_layout() -> str:
    """The CPU adaptive lane layout for this machine: "one-pass" with AVX-512F, else "two-pass"."""
    from solvers.fused.peak import cpu_isa

    return "one-pass" if cpu_isa()["isa"] == "avx512" else "two-pass"

#: Argument order of every generated kernel (see ``solvers.fused.build.kernel_args``).
KERNEL_ARGS = ("u0", "p", "t0", "tf", "dt", "n_steps", "rtol", "atol", "max_steps",
               "save_t", "save_i", "out_u", "saved", "stats", "status")
_ARGS = ", ".join(KERNEL_ARGS)

#: Files (relative to the repository root) whose content is part of every kernel's cache
#: key: the generator, the tableaus, the status codes and the Jacobian derivation. A change
#: to any of them gives every kernel a new module and a fresh compile.
GENERATOR_FILES = ("solvers/fused/codegen.py", "solvers/fused/methods.py", "solvers/fused/emit.py",
                   "solvers/fused/bits.py", "solvers/tableaus.py", "solvers/base.py", "problems/derive.py",
                   "solvers/fused/looped.py")


@dataclass(frozen=True)
class KernelKey:
    """Everything that determines a generated module.

    problem / method / mode / dtype: as in ``SolveSpec``.
    save: "final" (final state only), "grid" (fixed mode: save after given step indices),
        "dense" (adaptive Tsit5: interpolate inside accepted steps), "stop" (adaptive: clip
        steps to land on the save times).
    target: "cpu" or "cuda".
    lanes: trajectories per block of the CPU lane kernel (a compile-time constant).
    fastmath: LLVM fast-math flags of the CPU kernels (CUDA keeps Numba's default, which
        lets NVVM contract a*b+c into fma, as {"contract"} does on the CPU).
    controller: step-controller preset of ``solvers.tableaus`` (order-scaled betas).
    lane_layout: the CPU adaptive lane loop. "two-pass": an attempt loop writing a record and
        a decide pass (a controller loop, then a commit loop) updating the state from it,
        lanes interleaved in pairs (no masked
        stores: AVX2's VMASKMOVPS is slow, and a load after it cannot take the stored value
        from the store buffer); "one-pass": one loop with masked updates of the state (cheap
        with AVX-512 mask registers, and the fewest instructions there); "auto" (default):
        "one-pass" where this machine has AVX-512F, else "two-pass" (resolved on creation,
        so the module name records it). Ignored by CUDA and fixed-step kernels.
    """

    problem: str
    method: str
    mode: str
    dtype: str
    save: str = "final"
    target: str = "cpu"
    lanes: int = 32
    fastmath: tuple[str, ...] = ("contract",)
    controller: str = "diffeqgpu"
    lane_layout: str = "auto"

    def __post_init__(self) -> None:
        if self.lane_layout == "auto":
            object.__setattr__(self, "lane_layout", default_lane_layout())
        if self.lane_layout not in LANE_LAYOUTS:
            raise ValueError(f"invalid lane_layout {self.lane_layout!r}: choose one of auto, "
                             f"{', '.join(LANE_LAYOUTS)}")
        if self.save not in SAVE_MODES:
            raise ValueError(f"invalid save mode {self.save!r}: choose one of {', '.join(SAVE_MODES)}")
        if self.target not in TARGETS:
            raise ValueError(f"invalid target {self.target!r}: choose one of {', '.join(TARGETS)}")
        if self.mode not in ("fixed", "adaptive"):
            raise ValueError(f"invalid mode {self.mode!r}: choose one of fixed, adaptive")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"invalid dtype {self.dtype!r}: choose one of float32, float64")
        if not isinstance(self.lanes, int) or not 1 <= self.lanes <= 1024:
            raise ValueError(f"invalid lanes {self.lanes!r}: an integer in 1..1024")
        allowed = ("final", "grid") if self.mode == "fixed" else ("final", "dense", "stop")
        if self.save not in allowed:
            raise ValueError(f"save mode {self.save!r} does not apply to {self.mode} mode "
                             f"(choose one of {', '.join(allowed)})")
        object.__setattr__(self, "fastmath", tuple(sorted(self.fastmath)))

    def digest(self) -> str:
        """Content hash of the key, the problem definition and ``GENERATOR_FILES``."""
        return _digest(self)

    def module_name(self) -> str:
        return (f"fused_{self.problem}_{self.method}_{self.mode}_{self.dtype}_{self.save}_"
                f"{self.target}_{self.digest()}")


@functools.lru_cache(maxsize=None)
def _digest(key: KernelKey) -> str:
    root = Path(__file__).resolve().parents[2]
    blob = hashlib.sha256()
    for name in GENERATOR_FILES:
        blob.update((root / name).read_bytes())
    blob.update(repr(key).encode())
    blob.update(get_problem(key.problem).fingerprint().encode())
    return blob.hexdigest()[:16]


@dataclass
class _Parts:
    """What the templates need to know about the method and problem."""

    mc: MethodCode
    sh: Shape
    C: Constants
    ctrl: PIController | None
    lane_layout: str = "two-pass"  # of the CPU adaptive lane loop (KernelKey.lane_layout)


def controller_for(method: str, controller: str) -> PIController:
    """DiffEqGPU's controller for ``method`` (betas scaled by its ``alg_order``)."""
    return get_controller(controller, method_code(method).order)


# ================================================================================================
# The step controller: DiffEqGPU's PI control law with a vectorisable power
# ================================================================================================

def _log_exp_source(C: Constants, dtype: str) -> list[str]:
    """Snippets ``_log(x)`` for positive normal x and ``_exp(z)`` for |z| < 80, in the kernel dtype.

    log: x = 2^e * m (``_expo``/``_mant``, exact), m folded into [sqrt(1/2), sqrt(2)),
    log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172, by its series.
    exp: z = n ln2 + r with |r| <= ln2/2 (Cody-Waite two-part ln2), e^r by its Taylor series,
    times ``_pow2(n)`` (exact). The series lengths put the truncation error below half an ulp
    of the dtype; results are within a few ulps of libm.
    """
    if dtype == "float32":
        n_log, n_exp = 5, 8
        ln2_hi, ln2_lo = 0.693145751953125, 1.428606765330187045e-06
    else:
        n_log, n_exp = 11, 14
        ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
    one, half = C.add("ONE", 1.0), C.add("HALF", 0.5)
    lg = [C.add(f"LG_{k}", 1.0 / (2 * k + 1)) for k in range(n_log)]
    ex = [C.add(f"EX_{k}", 1.0 / math.factorial(k)) for k in range(n_exp)]
    log_poly = lg[-1]
    for c in reversed(lg[:-1]):
        log_poly = f"{c} + s2 * ({log_poly})"
    exp_poly = ex[-1]
    for c in reversed(ex[:-1]):
        exp_poly = f"{c} + r * ({exp_poly})"
    log_src = [
        "def _log(x):",
        "    m = _mant(x)",
        "    e = _expo(x)",
        f"    big = m > {C.add('SQRT2', math.sqrt(2.0))}",
        f"    m = _sel(big, m * {half}, m)",
        f"    e = _sel(big, e + {one}, e)",
        f"    s = (m - {one}) / (m + {one})",
        "    s2 = s * s",
        f"    return e * {C.add('LN2', math.log(2.0))} + (s + s) * ({log_poly})",
    ]
    exp_src = [
        "def _exp(z):",
        f"    z = min(max(z, {C.add('EXP_ZMIN', -80.0)}), {C.add('EXP_ZMAX', 80.0)})",
        f"    nf = _floor(z * {C.add('LOG2E', 1.0 / math.log(2.0))} + {half})",
        f"    r = (z - nf * {C.add('LN2_HI', ln2_hi)}) - nf * {C.add('LN2_LO', ln2_lo)}",
        f"    return ({exp_poly}) * _pow2(nf)",
    ]
    return [log_src, exp_src]


def controller_domain(ctrl: PIController) -> tuple[float, float]:
    """(eest_lo, eest_hi): clamping EEst into this range never changes the controller's result.

    Below ``eest_lo`` the accepted-step factor is clamped at qmax for every qold >= qold_init;
    above ``eest_hi`` the rejected-step factor is clamped at qmin (each with a factor 2 of
    margin), so only a bounded range ever reaches the log.
    """
    lo = 0.5 * (ctrl.gamma / ctrl.qmax * ctrl.qold_init ** ctrl.beta2) ** (1.0 / ctrl.beta1)
    hi = 2.0 * (ctrl.gamma / ctrl.qmin) ** (1.0 / ctrl.beta1)
    if not lo < ctrl.qold_init < 1.0 < hi:
        raise ValueError(f"controller constants out of the supported range: {ctrl}")
    return lo, hi


def _controller_source(C: Constants, ctrl: PIController) -> list[str]:
    """Snippet ``_control(eest, lq, h) -> (dt_accept, dt_reject, lq_new)``: DiffEqGPU's PI law.

    The executable specification is ``solvers.tableaus.pi_step_factor``: with
    ``q11 = eest^beta1`` and ``q = q11 / qold^beta2``, an accepted step (eest <= 1) gets
    ``dt * 1/max(1/qmax, min(1/qmin, q/gamma))`` (q = 1/qmax when eest == 0) and
    ``qold = max(eest, qold_init)``; a rejected one ``dt * 1/min(1/qmin, q11/gamma)``.
    Rewritten without divisions (they are slow in a vector loop): the factors are
    ``min(qmax, max(qmin, gamma/q))`` and ``max(qmin, gamma/q11)``, and ``gamma/q`` is one
    exp, ``exp(log(gamma) - beta1*log(eest) + beta2*lq)``, with the controller memory carried
    as ``lq = log(qold)``.
    """
    lo, hi = controller_domain(ctrl)
    one, zero = C.add("ONE", 1.0), C.add("ZERO", 0.0)
    qmin, qmax = C.add("QMIN", ctrl.qmin), C.add("QMAX", ctrl.qmax)
    # pi_step_factor at eest == 0: q = 1/qmax before the clamp.
    f0 = 1.0 / max(1.0 / ctrl.qmax, min(1.0 / ctrl.qmin, (1.0 / ctrl.qmax) / ctrl.gamma))
    C.add("LQ_INIT", math.log(ctrl.qold_init))
    return [
        "def _control(eest, lq, h):",
        f"    x = min(max(eest, {C.add('EEST_LO', lo)}), {C.add('EEST_HI', hi)})",
        "    lx = _log(x)",
        f"    zr = {C.add('BETA1', ctrl.beta1)} * lx",
        f"    z = _sel(eest <= {one}, zr - {C.add('BETA2', ctrl.beta2)} * lq, zr)",
        f"    g = _exp({C.add('LN_SAFETY', math.log(ctrl.gamma))} - z)",
        f"    fa = _sel(eest == {zero}, {C.add('FAC_ZERO', f0)}, min({qmax}, max({qmin}, g)))",
        f"    fr = max({qmin}, g)",
        "    return h * fa, h * fr, max(lx, _LQ_INIT)",
    ]


# ================================================================================================
# One trajectory (CUDA thread, serial CPU loop)
# ================================================================================================

def snap_constant(C: Constants) -> str:
    """The landing window per unit of time, ``SNAP_ULPS`` ulps (``solvers.tableaus``)."""
    return C.add("TSNAP", SNAP_ULPS * float(np.finfo(C.dtype).eps))


def _load_lines(P: _Parts, index: str) -> list[str]:
    n, npar = P.sh.n, P.sh.n_params
    return ([f"y{s} = u0[{s}, {index}]" for s in range(n)]
            + [f"p{s} = p[{s}, {index}]" for s in range(npar)])


def _finite_expr(P: _Parts, vals: list[str]) -> str:
    big = P.C.add("BIG", float(np.finfo(P.C.dtype).max))
    return " & ".join(f"(abs({v}) <= {big})" for v in vals)


def _write_saved(P: _Parts, j: str, i: str, vals: list[str]) -> list[str]:
    return [f"saved[{j}, {s}, {i}] = {v}" for s, v in enumerate(vals)]


def _solve_one_fixed(P: _Parts, save: str) -> list[str]:
    """Body of one fixed-step trajectory ``i``: exactly n_steps steps, t = t0 + s*dt.

    A non-finite state is reported (NONFINITE) at the end; the steps are all taken.
    """
    n = P.sh.n
    y, p = names("y", n), names("p", P.sh.n_params)
    body = _load_lines(P, "i")
    if save == "grid":
        body += ["ns = save_i.shape[0]", "j = 0", "while j < ns and save_i[j] == 0:"]
        body += ["    " + x for x in _write_saved(P, "j", "i", y)] + ["    j += 1"]
    # Counters by increments where the work happens (tests count independently).
    body += ["nacc = 0", "nfe = 0",
             "for s in range(n_steps):",
             "    t = t0 + _T(s) * dt",
             f"    {targets(y)} = _step({', '.join(y + p)}, t, dt)",
             "    nacc += 1", f"    nfe += {P.mc.step_evals}"]
    if save == "grid":
        body += ["    while j < ns and save_i[j] == s + 1:"]
        body += ["        " + x for x in _write_saved(P, "j", "i", y)] + ["        j += 1"]
    body += [f"out_u[{s}, i] = y{s}" for s in range(n)]
    body += ["stats[0, i] = nacc", "stats[1, i] = 0", "stats[2, i] = nfe",
             f"status[i] = {int(Status.SUCCESS)} if {_finite_expr(P, y)} else {int(Status.NONFINITE)}"]
    return body


def _solve_one_adaptive(P: _Parts, save: str) -> list[str]:
    """Body of one adaptive trajectory ``i``, checks in this order before each attempt:
    max_steps reached -> MAX_STEPS; step (not the clipped last one) below dtmin or not
    advancing t -> DT_UNDERFLOW; after it: a non-finite candidate state or a NaN EEst ->
    NONFINITE (the attempt counts as rejected, the non-finite state is returned). An
    infinite EEst with a finite state (the norm overflowed) is an ordinary rejection."""
    n, mc = P.sh.n, P.mc
    y, p, x = names("y", n), names("p", P.sh.n_params), mc.extras(P.sh)
    yn, xn, dv = names("yn", n), names("xn", len(x)), mc.dense_values(P.sh)
    one = P.C.add("ONE", 1.0)
    dtmin = P.C.add("DTMIN", P.ctrl.dtmin)
    snap = snap_constant(P.C)
    body = _load_lines(P, "i") + ["t = t0", "dtc = dt", "lq = _LQ_INIT"]
    if x:
        body.append(f"{targets(x)} = _init({', '.join(y + p)}, t)")
    body += ["nacc = 0", "nrej = 0", f"nfe = {mc.init_evals}",
             f"st = {RUNNING} if t < tf else {int(Status.SUCCESS)}"]
    if save != "final":
        body += ["ns = save_t.shape[0]", "j = 0", "while j < ns and save_t[j] <= t:"]
        body += ["    " + v for v in _write_saved(P, "j", "i", y)] + ["    j += 1"]
    loop = [
        "if nacc + nrej >= max_steps:",
        f"    st = {int(Status.MAX_STEPS)}",
        "    break",
        ("tstop = save_t[j] if j < ns else tf" if save == "stop" else "tstop = tf"),
        "rem = tstop - t",
        f"last = dtc >= rem - {snap} * abs(tstop)",  # within a few ulps: land (SNAP_ULPS)
        "h = rem if last else dtc",
        f"if (not last) and ((h < {dtmin}) or (t + h == t)):",
        f"    st = {int(Status.DT_UNDERFLOW)}",
        "    break",
        f"{targets(yn + xn + ['eest'] + dv)} = _attempt({', '.join(y + x + p)}, t, h, rtol, atol)",
        f"nfe += {mc.attempt_evals}",
        f"if not ((eest == eest) & {_finite_expr(P, yn)}):",
    ]
    loop += [f"    {a} = {b}" for a, b in zip(y, yn)]
    loop += ["    nrej += 1", f"    st = {int(Status.NONFINITE)}", "    break",
             "dta, dtr, lqn = _control(eest, lq, h)",
             f"if eest <= {one}:",
             "    tn = tstop if last else t + h"]
    if save == "dense":
        loop += ["    while j < ns and save_t[j] <= tn:",
                 "        th = (save_t[j] - t) / h",
                 f"        {targets(names('ys', n))} = _dense({', '.join(y + dv + xn)}, h, th)",
                 "        if save_t[j] == tn:",
                 f"            {targets(names('ys', n))} = {targets(yn)}"]
        loop += ["        " + v for v in _write_saved(P, "j", "i", names("ys", n))] + ["        j += 1"]
    loop += [f"    {a} = {b}" for a, b in zip(y + x, yn + xn)]
    # After a clipped landing step, go on from the step the controller had proposed.
    loop += ["    t = tn", "    dtc = max(dta, dtc) if h < dtc else dta", "    lq = lqn", "    nacc += 1"]
    if save == "stop":
        loop += ["    while j < ns and save_t[j] <= t:"]
        loop += ["        " + v for v in _write_saved(P, "j", "i", y)] + ["        j += 1"]
    loop += ["    if t >= tf:", f"        st = {int(Status.SUCCESS)}",
             "else:", "    dtc = dtr", "    nrej += 1"]
    body += [f"while st == {RUNNING}:"] + ["    " + v for v in loop]
    body += [f"out_u[{s}, i] = y{s}" for s in range(n)]
    body += ["stats[0, i] = nacc", "stats[1, i] = nrej", "stats[2, i] = nfe", "status[i] = st"]
    return body


# ================================================================================================
# CPU lane blocks: the time loop outside, the lanes innermost (vectorised), masks for adaptive
# ================================================================================================

def _block_fixed(P: _Parts, save: str, lanes: int) -> list[str]:
    n, npar = P.sh.n, P.sh.n_params
    y, p = names("y", n), names("p", npar)
    S = lambda r: f"S[{r}, l]"  # noqa: E731   rows: states 0..n-1, params n..n+npar-1
    sy, sp = [S(r) for r in range(n)], [S(n + r) for r in range(npar)]
    body = ["N = u0.shape[1]", "base = b * _L", f"S = np.empty(({n + npar}, _L), _T)",
            "for l in range(_L):", "    i = min(base + l, N - 1)"]
    body += [f"    {sy[s]} = u0[{s}, i]" for s in range(n)] + [f"    {sp[s]} = p[{s}, i]" for s in range(npar)]
    save_block = ["    for l in range(_L):", "        if base + l < N:"]
    save_block += ["            " + v for v in _write_saved(P, "j", "base + l", sy)]
    if save == "grid":
        body += ["ns = save_i.shape[0]", "j = 0", "while j < ns and save_i[j] == 0:"] + save_block + ["    j += 1"]
    # every lane of a fixed block takes the same steps: one counter per block, by increments
    body += ["nacc = 0", "nfe = 0",
             "for s in range(n_steps):",
             "    t = t0 + _T(s) * dt",
             "    nacc += 1", f"    nfe += {P.mc.step_evals}",
             "    for l in range(_L):",
             f"        {targets(y)} = _step({', '.join(sy + sp)}, t, dt)"]
    body += [f"        {sy[s]} = y{s}" for s in range(n)]
    if save == "grid":
        body += ["    while j < ns and save_i[j] == s + 1:"] + ["    " + v for v in save_block] + ["        j += 1"]
    body += ["for l in range(_L):", "    i = base + l", "    if i < N:"]
    body += [f"        out_u[{s}, i] = {sy[s]}" for s in range(n)]
    body += ["        stats[0, i] = nacc", "        stats[1, i] = 0", "        stats[2, i] = nfe",
             f"        status[i] = {int(Status.SUCCESS)} if {_finite_expr(P, sy)} else {int(Status.NONFINITE)}"]
    return ["@_jit", f"def _block(b, {_ARGS}):"] + ["    " + v for v in body] + [""]


def _block_adaptive(P: _Parts, save: str, lanes: int) -> list[str]:
    """One lane block of adaptive trajectories, each lane with its own t, dt and controller.

    Every pass of the ``while`` loop makes one step attempt in every lane; a lane's state
    changes only where its masks say so (``_sel``), a finished lane keeps computing on its
    frozen state and ignores the result, and the block ends when no lane is running. The
    lane loops hold only floats (counters and status too: exact integers below 2**24) and a
    boolean "any lane running" reduction, so LLVM vectorises them at the full float width.
    ``P.lane_layout`` chooses one lane loop or an attempt loop and a decide pass (see
    ``KernelKey.lane_layout``); both compute the same values lane by lane. Saving, whose loops
    differ per lane, runs in a scalar pass after the vector loops.
    """
    n, npar, mc = P.sh.n, P.sh.n_params, P.mc
    x, dv = mc.extras(P.sh), mc.dense_values(P.sh)
    nx = len(x)
    y, yn, xn = names("y", n), names("yn", n), names("xn", nx)
    C = P.C
    one, zero = C.add("ONE", 1.0), C.add("ZERO", 0.0)
    inf = C.add("INF", math.inf)
    dtmin = C.add("DTMIN", P.ctrl.dtmin)
    code = {st: C.add(f"ST_{st.name}", int(st)) for st in Status}
    running = C.add("ST_RUNNING", RUNNING)
    # Rows of S: states, carried values, parameters, then the scalars below.
    R_X, R_P = n, n + nx
    R_T, R_DT, R_LQ, R_NX, R_ACC, R_REJ, R_ST, R_SV, R_NFE = range(n + nx + npar, n + nx + npar + 9)
    n_rows = R_NFE + 1
    attempt_evals = C.add("ATTEMPT_EVALS", mc.attempt_evals)
    S = lambda r: f"S[{r}, l]"  # noqa: E731
    sy, sx, sp = [S(r) for r in range(n)], [S(R_X + r) for r in range(nx)], [S(R_P + r) for r in range(npar)]
    # Two-pass layout: rows from n_rows on hold the attempt's record (see below).
    rec_names = y + x + yn + xn + ["eest", "h", "tn", "t", "dtc", "lq", "nacc", "nrej", "nfe", "st"]
    ctl_names = ["dta", "dtr", "lqn"]  # written by the two-pass layout's control loop
    n_alloc = n_rows + (len(rec_names) + len(ctl_names) if P.lane_layout == "two-pass" else 0)
    body = ["N = u0.shape[1]", "base = b * _L", f"S = np.empty(({n_alloc}, _L), _T)",
            "J = np.zeros(_L, np.int64)  # next save index per lane",
            "ns = save_t.shape[0]", "msteps = _T(max_steps)"]
    # Dense output needs the step's start, stages and size once the lane loop has moved on.
    d_rows = n + len(dv) + nx + 2
    if save == "dense":
        body.append(f"D = np.empty(({d_rows}, _L), _T)")
    body += ["for l in range(_L):", "    i = min(base + l, N - 1)"]
    body += [f"    {sy[s]} = u0[{s}, i]" for s in range(n)] + [f"    {sp[s]} = p[{s}, i]" for s in range(npar)]
    body += [f"    {S(R_T)} = t0", f"    {S(R_DT)} = dt", f"    {S(R_LQ)} = _LQ_INIT",
             f"    {S(R_ACC)} = {zero}", f"    {S(R_REJ)} = {zero}", f"    {S(R_SV)} = {zero}",
             f"    {S(R_NFE)} = {C.add('INIT_EVALS', mc.init_evals)}",
             f"    {S(R_NX)} = {inf}",
             f"    {S(R_ST)} = {running} if t0 < tf else {code[Status.SUCCESS]}"]
    if nx:
        body += ["for l in range(_L):", f"    {targets(x)} = _init({', '.join(sy + sp)}, {S(R_T)})"]
        body += [f"    {sx[s]} = {x[s]}" for s in range(nx)]
    if save != "final":
        body += ["for l in range(_L):", "    j = 0", "    while j < ns and save_t[j] <= t0:",
                 "        if base + l < N:"]
        body += ["            " + v for v in _write_saved(P, "j", "base + l", sy)]
        body += ["        j += 1", "    J[l] = j", f"    {S(R_NX)} = save_t[j] if j < ns else {inf}"]

    # Both layouts start a lane's attempt alike: read its row of S, choose h, pre-checks.
    prelude = [f"st = {S(R_ST)}", f"nacc = {S(R_ACC)}", f"nrej = {S(R_REJ)}", f"nfe = {S(R_NFE)}",
               f"t = {S(R_T)}", f"dtc = {S(R_DT)}", f"lq = {S(R_LQ)}"]
    prelude += [f"{y[s]} = {sy[s]}" for s in range(n)] + [f"{x[s]} = {sx[s]}" for s in range(nx)]
    prelude += [f"p{s} = {sp[s]}" for s in range(npar)]
    prelude += [
        (f"tstop = min({S(R_NX)}, tf)" if save == "stop" else "tstop = tf"),
        "rem = tstop - t",
        f"last = dtc >= rem - {snap_constant(C)} * abs(tstop)",  # within a few ulps: land (SNAP_ULPS)
        "h = _sel(last, rem, dtc)",
        f"run = st == {running}",
        "maxed = nacc + nrej >= msteps",
        f"under = (not last) & ((h < {dtmin}) | (t + h == t))",
    ]
    if P.lane_layout == "one-pass":
        # One lane loop: attempt, control and a masked update of the state rows. LLVM turns
        # each ``S[r, l] = _sel(m, new, S[r, l])`` into a masked store: one instruction with
        # AVX-512's mask registers, but a slow VMASKMOVPS on AVX2 (see KernelKey.lane_layout).
        lane = list(prelude)
        lane += [
            f"{targets(yn + xn + ['eest'] + dv)} = _attempt({', '.join(y + x + names('p', npar))}, t, h, rtol, atol)",
            f"fin = (eest == eest) & {_finite_expr(P, yn)}",
            "dta, dtr, lqn = _control(eest, lq, h)",
            "go = run & (not maxed) & (not under)",
            f"acc = go & fin & (eest <= {one})",
            f"rej = go & fin & (not (eest <= {one}))",
            "bad = go & (not fin)",
            "tn = _sel(last, tstop, t + h)",
        ]
        lane += [f"{sy[s]} = _sel(acc | bad, {yn[s]}, {y[s]})" for s in range(n)]
        lane += [f"{sx[s]} = _sel(acc, {xn[s]}, {x[s]})" for s in range(nx)]
        lane += [
            f"{S(R_T)} = _sel(acc, tn, t)",
            f"{S(R_DT)} = _sel(acc, _sel(h < dtc, max(dta, dtc), dta), _sel(rej, dtr, dtc))",
            f"{S(R_LQ)} = _sel(acc, lqn, lq)",
            f"{S(R_ACC)} = _sel(acc, nacc + {one}, nacc)",
            f"{S(R_REJ)} = _sel(rej | bad, nrej + {one}, nrej)",
            f"{S(R_NFE)} = _sel(go, nfe + {attempt_evals}, nfe)",
            f"st = _sel(run & maxed, {code[Status.MAX_STEPS]}, st)",
            f"st = _sel(run & (not maxed) & under, {code[Status.DT_UNDERFLOW]}, st)",
            f"st = _sel(bad, {code[Status.NONFINITE]}, st)",
            f"st = _sel(acc & (tn >= tf), {code[Status.SUCCESS]}, st)",
            f"{S(R_ST)} = st",
            f"anyrun = anyrun | (st == {running})",
        ]
        if save != "final":
            lane.append(f"{S(R_SV)} = _sel(acc & ({S(R_NX)} <= tn), {one}, {zero})")
        if save == "dense":
            for r, v in enumerate(y + dv + xn + ["t", "h"]):
                lane.append(f"D[{r}, l] = {v}")
        body += ["while True:", "    anyrun = False", "    for l in range(_L):"] + ["        " + v for v in lane]
    else:
        # Pass 1, attempt: every lane makes one step attempt from its state and writes a record
        # of it (rows of S from n_rows on): the state it started from, the candidate, EEst, h, the
        # end time and the status after the pre-attempt checks. Pass 2, decide: the controller and
        # the masked update, from the record alone. Two loops, not one: each body is short enough
        # for the core to overlap consecutive vector iterations (one loop's body was longer than
        # the reorder window, so its long attempt -> norm -> log/exp chain ran unhidden), and pass 2
        # never reads a row it writes, so its selects stay plain stores (a select between a new
        # value and the value loaded from the same address becomes a masked store, slow on AVX2).
        # Pass 2 is itself two loops: the controller alone (EEst -> log -> exp -> new step sizes,
        # the longest dependency chain of the step, in a body short enough that the core overlaps
        # several vectors of lanes), then the commit (selects and counters) from the record.
        R = {v: n_rows + k for k, v in enumerate(rec_names + ctl_names)}
        attempt = list(prelude)
        attempt += [
            # Lanes stopped here are not running in pass 2 (go == (st == RUNNING) there).
            f"st = _sel(run & maxed, {code[Status.MAX_STEPS]}, st)",
            f"st = _sel(run & (not maxed) & under, {code[Status.DT_UNDERFLOW]}, st)",
            f"{targets(yn + xn + ['eest'] + dv)} = _attempt({', '.join(y + x + names('p', npar))}, t, h, rtol, atol)",
            "tn = _sel(last, tstop, t + h)",
        ]
        attempt += [f"{S(R[v])} = {v}" for v in rec_names]
        if save == "dense":
            for r, v in enumerate(y + dv + xn + ["t", "h"]):
                attempt.append(f"D[{r}, l] = {v}")

        control = [f"{v} = {S(R[v])}" for v in ("eest", "lq", "h")]
        control += ["dta, dtr, lqn = _control(eest, lq, h)"] + [f"{S(R[v])} = {v}" for v in ctl_names]
        decide = [f"{v} = {S(R[v])}" for v in rec_names + ctl_names]
        decide += [
            f"fin = (eest == eest) & {_finite_expr(P, yn)}",
            f"go = st == {running}",
            f"acc = go & fin & (eest <= {one})",
            f"rej = go & fin & (not (eest <= {one}))",
            "bad = go & (not fin)",
        ]
        decide += [f"{sy[s]} = _sel(acc | bad, {yn[s]}, {y[s]})" for s in range(n)]
        decide += [f"{sx[s]} = _sel(acc, {xn[s]}, {x[s]})" for s in range(nx)]
        decide += [
            f"{S(R_T)} = _sel(acc, tn, t)",
            f"{S(R_DT)} = _sel(acc, _sel(h < dtc, max(dta, dtc), dta), _sel(rej, dtr, dtc))",
            f"{S(R_LQ)} = _sel(acc, lqn, lq)",
            f"{S(R_ACC)} = _sel(acc, nacc + {one}, nacc)",
            f"{S(R_REJ)} = _sel(rej | bad, nrej + {one}, nrej)",
            f"{S(R_NFE)} = _sel(go, nfe + {attempt_evals}, nfe)",
            f"st = _sel(bad, {code[Status.NONFINITE]}, st)",
            f"st = _sel(acc & (tn >= tf), {code[Status.SUCCESS]}, st)",
            f"{S(R_ST)} = st",
            f"anyrun = anyrun | (st == {running})",
        ]
        if save != "final":
            decide.append(f"{S(R_SV)} = _sel(acc & ({S(R_NX)} <= tn), {one}, {zero})")
        # All three loops are straight-line lane loops over range(_L_PASS): interleaved in pairs
        # of lanes by ``emit.interleave_lane_loops`` when _L is even (see generate_source).
        body += ["while True:", "    for l in range(_L_PASS):"] + ["        " + v for v in attempt]
        body += ["    for l in range(_L_PASS):"] + ["        " + v for v in control]
        body += ["    anyrun = False", "    for l in range(_L_PASS):"] + ["        " + v for v in decide]

    if save != "final":
        dl = lambda r: f"D[{r}, l]"  # noqa: E731
        scalar = ["for l in range(_L):", f"    if {S(R_SV)} != {zero}:",
                  "        j = J[l]", f"        tn = {S(R_T)}",
                  "        while j < ns and save_t[j] <= tn:"]
        if save == "dense":
            args = [dl(r) for r in range(d_rows - 2)]
            scalar += [f"            th = (save_t[j] - {dl(d_rows - 2)}) / {dl(d_rows - 1)}",
                       f"            {targets(names('ys', n))} = _dense({', '.join(args)}, {dl(d_rows - 1)}, th)",
                       "            if save_t[j] == tn:",
                       f"                {targets(names('ys', n))} = {targets(sy)}"]
            vals = names("ys", n)
        else:
            vals = sy
        scalar += ["            if base + l < N:"]
        scalar += ["                " + v for v in _write_saved(P, "j", "base + l", vals)]
        scalar += ["            j += 1", "        J[l] = j",
                   f"        {S(R_NX)} = save_t[j] if j < ns else {inf}"]
        body += ["    " + v for v in scalar]
    body += ["    if not anyrun:", "        break"]
    body += ["for l in range(_L):", "    i = base + l", "    if i < N:"]
    body += [f"        out_u[{s}, i] = {sy[s]}" for s in range(n)]
    body += [f"        stats[0, i] = int({S(R_ACC)})", f"        stats[1, i] = int({S(R_REJ)})",
             f"        stats[2, i] = int({S(R_NFE)})",
             f"        status[i] = int({S(R_ST)})"]
    return ["@_jit", f"def _block(b, {_ARGS}):"] + ["    " + v for v in body] + [""]


# ================================================================================================
# Module assembly
# ================================================================================================

def _cuda_helper_snippets(dtype: str) -> list[str]:
    """Source of the CUDA kernels' small helpers (spliced like every other snippet)."""
    bits, shift, bias, mant, one, emask = bit_format(dtype)
    return [
        "def _sel(c, a, b):\n    return a if c else b\n",
        f"def _mant(x):\n    return _i2f(_IB((_f2i(x) & {mant}) | {one}))\n",
        f"def _expo(x):\n    return _T(((_f2i(x) >> {shift}) & {emask}) - {bias})\n",
        f"def _pow2(n):\n    return _i2f(_IB((_IB(n) + {bias}) << {shift}))\n",
        "def _floor(x):\n    return _T(_floorlib(x))\n",
    ]


def _header(key: KernelKey, P: _Parts) -> list[str]:
    prob = get_problem(key.problem)
    nb_t = "numba.float32" if key.dtype == "float32" else "numba.float64"
    lines = [
        '"""Generated by solvers.fused.codegen; do not edit (regenerated when its key changes).',
        "",
        f"{key!r}",
        "",
        "Straight-line pieces (the method's step, the step controller and its log/exp) are",
        "written as functions and spliced as source into the trajectory loops (emit.Inliner).",
        '"""',
        "import math",
        "",
        "import numba",
        "import numpy as np",
        "",
        "from problems.registry import get_problem",
    ]
    if key.target == "cpu":
        np_t = "np.float32" if key.dtype == "float32" else "np.float64"
        fm = "{" + ", ".join(repr(f) for f in key.fastmath) + "}" if key.fastmath else "False"
        lines += [
            "from numba import prange",
            "",
            "from solvers.fused.bits import cpu_helpers",
            "",
            f"_FASTMATH = {fm}",
            "# rhs, jac and _sel stay functions: LLVM's inliner takes functions that small.",
            "_jit = numba.njit(fastmath=_FASTMATH, error_model='numpy')",
            "# The step pieces as functions of their own, for tests and reading (kernels splice them).",
            "_piece = numba.njit(cache=True, fastmath=_FASTMATH, error_model='numpy')",
            "_kernel = numba.njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model='numpy')",
            f"_mant, _expo, _pow2, _floor = cpu_helpers({key.dtype!r})",
            f"_L = {key.lanes}  # trajectories per lane block",
            "_L_PASS = _L  # lanes of an adaptive pass loop (when not interleaved)",
            "_L_HALF = _L // 2  # interleaved adaptive pass loops: lanes l and l + _L_HALF",
            "_STRANDS = 256  # interleaved block sequences the threads share (balance; see solve_lanes)",
            "_sqrt = math.sqrt",
            "",
            f"_T = {np_t}  # the kernel dtype: every constant below is built with it",
            "",
            "",
            "@_jit",
            "def _sel(c, a, b):",
            '    """a if c else b, as a function: a select, not a branch, once inlined."""',
            "    return a if c else b",
            "",
            "",
            "# ---- the problem, defined once in problems/ ------------------------------------------",
            f"rhs = _jit(get_problem({key.problem!r}).rhs_for(math))",
        ]
    else:
        nb_i = "numba.int32" if key.dtype == "float32" else "numba.int64"
        lines += [
            "from numba import cuda",
            "",
            "from solvers.fused.bits import cuda_bitcasts, cuda_simulated",
            "",
            "# The kernel calls no device function: everything below is spliced into it as source.",
            f"_f2i, _i2f, _floorlib = cuda_bitcasts({key.dtype!r})",
            "# math.sqrt on the device; NumPy's under the simulator, where math.sqrt of a float32",
            "# would return a Python (double) float.",
            "_sqrt = np.sqrt if cuda_simulated() else math.sqrt",
            f"_T = {nb_t}  # the kernel dtype: every constant below is built with it",
            f"_IB = {nb_i}  # the integer of the same width",
            "",
            "# ---- the problem, defined once in problems/ (its rhs source is spliced in) -----------",
            "m = math",
        ]
        rhs_globals = prob.rhs.__globals__
        for name in free_globals(_rhs_source(prob)):
            if name != "m" and name in rhs_globals:
                lines.append(f"{name} = get_problem({key.problem!r}).rhs.__globals__[{name!r}]")
    if P.mc.uses_jacobian:
        d = derive.derivatives(prob)
        lines += [
            "",
            "# Jacobian and time derivative derived by SymPy: the source of",
            f"# get_problem({key.problem!r}).derivatives().functions(math, {nb_t}).",
            "m = math",
            f"_c = {nb_t}",
            "",
            d.jac_source.rstrip(),
            "",
            "",
            d.tgrad_source.rstrip(),
            "",
        ]
        if key.target == "cpu":
            lines += ["", "jac = _jit(jac)", "tgrad = _jit(tgrad)"]
    return lines


def _rhs_source(prob) -> str:
    return textwrap.dedent(inspect.getsource(prob.rhs))


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _indent(lines: list[str], k: int = 1) -> list[str]:
    return ["    " * k + v for v in lines]


def generate_source(key: KernelKey) -> str:
    """The Python source of the module for ``key`` (see the module docstring)."""
    prob = get_problem(key.problem)
    if looped.uses_looped(prob):  # large systems: local arrays, loops over the state
        return looped.generate_source(key)
    mc = method_code(key.method)
    if key.mode == "adaptive" and not mc.attempt_evals:
        raise ValueError(f"method {key.method!r} has no adaptive mode")
    if key.save == "dense" and not mc.has_dense:
        raise ValueError(f"method {key.method!r} has no dense output: use save='stop'")
    tgrad_zero = True
    if mc.uses_jacobian:
        tgrad_zero = all(e == 0 for e in derive.derivatives(prob).tgrad_exprs)
    sh = Shape(prob.n_states, prob.n_params, tgrad_zero)
    C = Constants(key.dtype)
    ctrl = controller_for(key.method, key.controller) if key.mode == "adaptive" else None
    P = _Parts(mc, sh, C, ctrl, key.lane_layout)

    # Snippets: straight-line functions spliced into the trajectory loops (emit.Inliner).
    inliner = Inliner()
    funcs: list[str] = []
    if key.target == "cuda":
        for src in _cuda_helper_snippets(key.dtype):
            funcs += ["", inliner.add(src), ""]
        funcs += ["", inliner.add(_rhs_source(prob), name="rhs"), ""]
        if mc.uses_jacobian:
            d = derive.derivatives(prob)
            inliner.add(d.jac_source)
            inliner.add(d.tgrad_source)
    deco = ["@_piece"] if key.target == "cpu" else []
    snippets: list[list[str]] = []
    if key.mode == "fixed":
        snippets.append(mc.emit_step(C, sh))
        one, block = _solve_one_fixed(P, key.save), _block_fixed
    else:
        snippets += _log_exp_source(C, key.dtype) + [_controller_source(C, ctrl)]
        if mc.extras(sh):
            snippets.append(mc.emit_init(C, sh))
        snippets.append(mc.emit_attempt(C, sh))
        if key.save == "dense":
            snippets.append(mc.emit_dense(C, sh))
        one, block = _solve_one_adaptive(P, key.save), _block_adaptive
    for snip in snippets:
        funcs += [""] + deco + [inliner.add(_join(snip)), ""]
    if key.target == "cpu":
        funcs += ["", "@_jit", inliner.expand(_join([f"def _solve_one(i, {_ARGS}):"] + _indent(one))), ""]
        blk = inliner.expand(_join(block(P, key.save, key.lanes)))
        if key.mode == "adaptive" and key.lane_layout == "two-pass" and key.lanes % 2 == 0:
            blk = interleave_lane_loops(blk, "_L_PASS", "_L_HALF", keep=("anyrun",))
        funcs += ["", blk, ""]
        funcs += [
            "",
            "@_kernel",
            f"def solve_lanes({_ARGS}):",
            "    \"\"\"Blocks of _L trajectories in parallel; lanes of a block vectorised.",
            "",
            "    Strand k takes blocks k, k + S, k + 2S, ... (S strands, split among the threads):",
            "    neighbouring trajectories need similar numbers of steps, contiguous halves of a",
            "    parameter sweep do not (Lorenz's high-rho half takes ~1.5x the steps of the low-rho",
            "    half), so strided blocks balance the threads.",
            "    \"\"\"",
            "    n_blocks = (u0.shape[1] + _L - 1) // _L",
            "    n_strands = min(_STRANDS, n_blocks)",
            "    for k in prange(n_strands):",
            "        for b in range(k, n_blocks, n_strands):",
            f"            _block(b, {_ARGS})",
            "",
            "",
            "@_kernel",
            f"def solve_serial({_ARGS}):",
            "    \"\"\"One trajectory per loop iteration (no lane blocking), strided as above.\"\"\"",
            "    n = u0.shape[1]",
            "    n_strands = min(_STRANDS * _L, n)",
            "    for k in prange(n_strands):",
            "        for i in range(k, n, n_strands):",
            f"            _solve_one(i, {_ARGS})",
        ]
    else:
        kernel = [f"def solve_kernel({_ARGS}):",
                  "    i = cuda.grid(1)  # one thread per trajectory, the whole time loop inside it",
                  "    if i < u0.shape[1]:"] + _indent(one, 2)
        funcs += ["", "@cuda.jit", inliner.expand(_join(kernel))]
    lines = (_header(key, P) + ["", "", "# ---- constants (kernel dtype) ------------------------------------------------"]
             + C.source() + funcs)
    return _join(lines)
