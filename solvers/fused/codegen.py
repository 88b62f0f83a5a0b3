"""The kernel generator: one problem definition + a method -> a CPU module and a CUDA module.

``generate_source(key)`` returns the Python source of a module holding, for one problem,
method, mode, dtype and save mode:

* the problem's right-hand side (``problem.rhs_for(math)``) and the Jacobian / time
  derivative derived by SymPy (the source of ``derive.derivatives(problem).functions(math,
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
All kernels take the same arguments (``assemble.KERNEL_ARGS``): arrays laid out with the trajectory
index last, so CUDA threads and CPU lanes read and write neighbouring addresses.

Float32 kernels are float32 throughout: every constant is a module-level ``_T(...)`` value
(``_T`` = ``numpy.float32``, or ``numba.float32`` in CUDA modules), integer counters enter
float arithmetic through ``_T(i)``, and the controller's powers use an in-kernel log/exp
(``solvers.fused.bits``) instead of libm ``pow`` (which would not vectorise either).
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from problems import derive
from problems.registry import get_problem
from solvers.base import Status
from solvers.fused import looped
from solvers.fused.assemble import (
    ARGS, Parts, controller_for, controller_source, cuda_helper_snippets, indent_lines, join_lines,
    log_exp_source, module_header, rhs_source, snap_constant,
)
from solvers.fused.emit import Constants, Inliner, interleave_lane_loops, names, targets
from solvers.fused.methods import Shape, method_code
from solvers.fused.peak import cpu_isa

SAVE_MODES = ("final", "grid", "dense", "stop")
TARGETS = ("cpu", "cuda")
RUNNING = -1  # internal status of a trajectory still integrating
LANE_LAYOUTS = ("two-pass", "one-pass")


def default_lane_layout() -> str:
    """The CPU adaptive lane layout for this machine: "one-pass" with AVX-512F, else "two-pass"."""
    return "one-pass" if cpu_isa()["isa"] == "avx512" else "two-pass"


def lane_ways(key: "KernelKey") -> int:
    """How many lanes ``key``'s CPU lane block runs interleaved in its per-step lane loops
    (``emit.interleave_lane_loops``: independent chains in the core's reorder window, each
    loaded constant serving all of them; 1: plain loops). It needs a lane count divisible by
    the ways, and:

    - adaptive two-pass: pairs, in its attempt and control loops, always (``pass_interleave``);
    - adaptive one-pass: pairs, for explicit methods only, where it was measured (Tsit5,
      Zen 4: 4% faster on average, issue 29); a Rosenbrock attempt (Jacobian, LU) is long
      already, and doubling it doubled its compile time for no measured gain;
    - fixed step, where the lane layout is "two-pass" (the choice of a core without AVX-512:
      16 vector registers), explicit methods only, as above. There a Tsit5 step's chain
      spills and reloads its tableau constants from the stack, one vector of lanes fills the
      core's scheduler, and consecutive iterations barely overlap: pairs ran the Lorenz
      float32 step 0.78-0.84x the time of the plain loop at 16, 32 and 64 lanes, and four
      ways where each way still fills a 256-bit vector (lanes / 4 >= 8 float32 or 4 float64
      lanes; otherwise pairs) 0.82-0.85x the time of pairs (Zen 3, one thread, 32 lanes;
      Lorenz float64 0.90x, Lorenz-96 of 8 states 0.98x, of 4 states 1.01x; results bitwise
      equal; four ways in the adaptive attempt loop gained 2-4% only, and are not used). With
      32 registers (AVX-512) the fixed step's plain loop is kept: it reached 92% of the
      FMA-bound floor on Zen 4, with no chain to hide.
    """
    if key.target != "cpu" or key.lanes % 2:
        return 1
    explicit = not method_code(key.method).uses_jacobian
    if key.mode == "adaptive":
        return 2 if (key.lane_layout == "two-pass" or explicit) else 1
    if key.lane_layout != "two-pass" or not explicit:
        return 1
    vector_lanes = 256 // (32 if key.dtype == "float32" else 64)  # AVX2: the two-pass layout's ISA
    return 4 if key.lanes % 4 == 0 and key.lanes // 4 >= vector_lanes else 2


def pass_interleave(key: "KernelKey") -> tuple[int, ...]:
    """Lanes interleaved in each iteration of ``key``'s per-step lane loops, in program order
    (1: a plain loop): fixed step and one-pass ``(lane_ways(key),)``; two-pass (attempt,
    control, commit) = (2, 2, 1): the commit is bound by its loads and stores, and a second
    chain there only adds spills (llvm-mca, znver3, Lorenz Tsit5 float32, 32 lanes: 2.19
    cycles per lane-step plain, 3.22 interleaved; ``python -m solvers.fused.isa``)."""
    ways = lane_ways(key)
    if key.mode == "adaptive" and key.target == "cpu" and key.lane_layout == "two-pass":
        return (ways, ways, 1)
    return (ways,)


#: Files (relative to the repository root) whose content is part of every kernel's cache
#: key: the generator, the tableaus, the status codes and the Jacobian derivation. A change
#: to any of them gives every kernel a new module and a fresh compile.
GENERATOR_FILES = ("solvers/fused/codegen.py", "solvers/fused/methods.py", "solvers/fused/emit.py",
                   "solvers/fused/bits.py", "solvers/tableaus.py", "solvers/base.py", "problems/derive.py",
                   "solvers/fused/looped.py", "solvers/fused/assemble.py")


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
        a decide pass (a controller loop, then a commit loop) updating the state from it (no
        masked stores: AVX2's VMASKMOVPS is slow, and a load after it cannot take the stored
        value from the store buffer); "one-pass": one loop with masked updates of the state
        (cheap with AVX-512 mask registers, and the fewest instructions there); "auto"
        (default): "one-pass" where this machine has AVX-512F, else "two-pass" (resolved on
        creation, so the module name records it). With an even lane count the lanes are
        interleaved in pairs (``lane_ways``: two-pass in its attempt and control loops,
        one-pass for explicit methods; ``pass_interleave``). Fixed-step kernels have one lane
        loop, which "two-pass" (the layout of a core without AVX-512) also interleaves, four
        ways where the lanes allow. Ignored by CUDA kernels.
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


# ================================================================================================
# One trajectory (CUDA thread, serial CPU loop)
# ================================================================================================


def _load_lines(P: Parts, index: str) -> list[str]:
    n, npar = P.sh.n, P.sh.n_params
    return ([f"y{s} = u0[{s}, {index}]" for s in range(n)]
            + [f"p{s} = p[{s}, {index}]" for s in range(npar)])


def _finite_expr(P: Parts, vals: list[str]) -> str:
    big = P.C.add("BIG", float(np.finfo(P.C.dtype).max))
    return " & ".join(f"(abs({v}) <= {big})" for v in vals)


def _write_saved(P: Parts, j: str, i: str, vals: list[str]) -> list[str]:
    return [f"saved[{j}, {s}, {i}] = {v}" for s, v in enumerate(vals)]


def _solve_one_fixed(P: Parts, save: str) -> list[str]:
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


def _solve_one_adaptive(P: Parts, save: str) -> list[str]:
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
    body = _load_lines(P, "i") + ["t = t0", "dtc = dt", "lm = _LM_INIT"]
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
        f"{targets(yn + xn + ['ssq'] + dv)} = _attempt({', '.join(y + x + p)}, t, h, rtol, atol)",
        f"nfe += {mc.attempt_evals}",
        f"if not ((ssq == ssq) & {_finite_expr(P, yn)}):",
    ]
    loop += [f"    {a} = {b}" for a, b in zip(y, yn)]
    loop += ["    nrej += 1", f"    st = {int(Status.NONFINITE)}", "    break",
             "dta, dtr, lmn = _control(ssq, lm, h)",
             "if ssq <= _NSTATES:",
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
    loop += ["    t = tn", "    dtc = max(dta, dtc) if h < dtc else dta", "    lm = lmn", "    nacc += 1"]
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

def _block_fixed(P: Parts, save: str, lanes: int) -> list[str]:
    n, npar = P.sh.n, P.sh.n_params
    y, p = names("y", n), names("p", npar)
    S = lambda r: f"S[{r}, l]"  # noqa: E731   rows: states 0..n-1, params n..n+npar-1
    sy, sp = [S(r) for r in range(n)], [S(n + r) for r in range(npar)]
    body = ["N = aligned_frame(u0.shape[1])", "base = b * _L", f"S = np.empty(({n + npar}, _L), _T)",
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
             # the step's lane loop: over _L_PASS, interleaved where ``lane_ways`` says so
             "    for l in range(_L_PASS):",
             f"        {targets(y)} = _step({', '.join(sy + sp)}, t, dt)"]
    body += [f"        {sy[s]} = y{s}" for s in range(n)]
    if save == "grid":
        body += ["    while j < ns and save_i[j] == s + 1:"] + ["    " + v for v in save_block] + ["        j += 1"]
    body += ["for l in range(_L):", "    i = base + l", "    if i < N:"]
    body += [f"        out_u[{s}, i] = {sy[s]}" for s in range(n)]
    body += ["        stats[0, i] = nacc", "        stats[1, i] = 0", "        stats[2, i] = nfe",
             f"        status[i] = {int(Status.SUCCESS)} if {_finite_expr(P, sy)} else {int(Status.NONFINITE)}"]
    return ["@_jit", f"def _block(b, {ARGS}):"] + ["    " + v for v in body] + [""]


@dataclass
class _LaneRows:
    """The adaptive lane block's names: its state pieces, typed constants and the rows of ``S``
    (states, carried values, parameters, then the scalars ``R_*``; rows from ``n_rows`` on
    hold the two-pass layout's attempt record). Built once, read by every piece of the block."""

    P: Parts
    save: str
    n: int
    npar: int
    x: list[str]
    dv: list[str]
    y: list[str]
    yn: list[str]
    xn: list[str]
    one: str
    zero: str
    inf: str
    dtmin: str
    code: dict
    running: str
    R_T: int
    R_DT: int
    R_LM: int
    R_NX: int
    R_ACC: int
    R_REJ: int
    R_ST: int
    R_SV: int
    n_rows: int
    init_evals: str
    attempt_evals: str
    sy: list[str]
    sx: list[str]
    sp: list[str]
    rec_names: list[str]
    d_rows: int

    @staticmethod
    def S(r) -> str:
        return f"S[{r}, l]"


def _lane_rows(P: Parts, save: str) -> _LaneRows:
    """The block's names, its constants added to ``P.C`` in the generated module's order."""
    n, npar, mc = P.sh.n, P.sh.n_params, P.mc
    x, dv = mc.extras(P.sh), mc.dense_values(P.sh)
    nx = len(x)
    y = names("y", n)
    C = P.C
    one, zero = C.add("ONE", 1.0), C.add("ZERO", 0.0)
    inf = C.add("INF", math.inf)
    dtmin = C.add("DTMIN", P.ctrl.dtmin)
    code = {st: C.add(f"ST_{st.name}", int(st)) for st in Status}
    running = C.add("ST_RUNNING", RUNNING)
    R_X, R_P = n, n + nx
    R_T, R_DT, R_LM, R_NX, R_ACC, R_REJ, R_ST, R_SV = range(n + nx + npar, n + nx + npar + 8)
    init_evals = C.add("INIT_EVALS", mc.init_evals)
    attempt_evals = C.add("ATTEMPT_EVALS", mc.attempt_evals)
    S = _LaneRows.S
    return _LaneRows(
        P, save, n, npar, x, dv, y, names("yn", n), names("xn", nx), one, zero, inf, dtmin, code, running,
        R_T, R_DT, R_LM, R_NX, R_ACC, R_REJ, R_ST, R_SV, R_SV + 1, init_evals, attempt_evals,
        [S(r) for r in range(n)], [S(R_X + r) for r in range(nx)], [S(R_P + r) for r in range(npar)],
        # Two-pass layout: rows from n_rows on hold the attempt's record (see _two_pass_loops).
        # No evaluation counter: every attempt costs attempt_evals (stats[2] from nacc + nrej).
        y + x + names("yn", n) + names("xn", nx) + ["ssq", "h", "tn", "t", "dtc", "lm", "nacc", "nrej", "st"],
        # Dense output needs the step's start, stages and size once the lane loop has moved on.
        n + len(dv) + nx + 2,
    )


def _lane_setup(B: _LaneRows) -> list[str]:
    """Scratch rows, every lane's state, counters and status loaded, the saves at t0."""
    P, S, save, n, npar, nx, x = B.P, B.S, B.save, B.n, B.npar, len(B.x), B.x
    sy, sx, sp, inf, zero = B.sy, B.sx, B.sp, B.inf, B.zero
    n_alloc = B.n_rows + (len(B.rec_names) if P.lane_layout == "two-pass" else 0)
    body = ["N = aligned_frame(u0.shape[1])", "base = b * _L", f"S = np.empty(({n_alloc}, _L), _T)",
            "J = np.zeros(_L, np.int64)  # next save index per lane",
            "ns = save_t.shape[0]", "msteps = _T(max_steps)"]
    if save == "dense":
        body.append(f"D = np.empty(({B.d_rows}, _L), _T)")
    body += ["for l in range(_L):", "    i = min(base + l, N - 1)"]
    body += [f"    {sy[s]} = u0[{s}, i]" for s in range(n)] + [f"    {sp[s]} = p[{s}, i]" for s in range(npar)]
    body += [f"    {S(B.R_T)} = t0", f"    {S(B.R_DT)} = dt", f"    {S(B.R_LM)} = _LM_INIT",
             f"    {S(B.R_ACC)} = {zero}", f"    {S(B.R_REJ)} = {zero}", f"    {S(B.R_SV)} = {zero}",
             f"    {S(B.R_NX)} = {inf}",
             f"    {S(B.R_ST)} = {B.running} if t0 < tf else {B.code[Status.SUCCESS]}"]
    if nx:
        body += ["for l in range(_L):", f"    {targets(x)} = _init({', '.join(sy + sp)}, {S(B.R_T)})"]
        body += [f"    {sx[s]} = {x[s]}" for s in range(nx)]
    if save != "final":
        body += ["for l in range(_L):", "    j = 0", "    while j < ns and save_t[j] <= t0:",
                 "        if base + l < N:"]
        body += ["            " + v for v in _write_saved(P, "j", "base + l", sy)]
        body += ["        j += 1", "    J[l] = j", f"    {S(B.R_NX)} = save_t[j] if j < ns else {inf}"]
    return body


def _lane_prelude(B: _LaneRows) -> list[str]:
    """Both layouts start a lane's attempt alike: read its row of S, choose h, pre-checks."""
    S, y, x = B.S, B.y, B.x
    prelude = [f"st = {S(B.R_ST)}", f"nacc = {S(B.R_ACC)}", f"nrej = {S(B.R_REJ)}",
               f"t = {S(B.R_T)}", f"dtc = {S(B.R_DT)}", f"lm = {S(B.R_LM)}"]
    prelude += [f"{y[s]} = {B.sy[s]}" for s in range(B.n)] + [f"{x[s]} = {B.sx[s]}" for s in range(len(x))]
    prelude += [f"p{s} = {B.sp[s]}" for s in range(B.npar)]
    prelude += [
        (f"tstop = min({S(B.R_NX)}, tf)" if B.save == "stop" else "tstop = tf"),
        "rem = tstop - t",
        f"last = dtc >= rem - {snap_constant(B.P.C)} * abs(tstop)",  # within a few ulps: land (SNAP_ULPS)
        "h = _sel(last, rem, dtc)",
        f"run = st == {B.running}",
        "maxed = nacc + nrej >= msteps",
        f"under = (not last) & ((h < {B.dtmin}) | (t + h == t))",
    ]
    return prelude


def _next_dt_lm(B: _LaneRows, go: str) -> list[str]:
    """The lane's next step size and controller memory after an attempt (running: ``go``).

    Accepted (``ssq <= n``): DiffEqGPU's ``dta``, after a shortened landing step (h < dtc)
    not below the step size proposed before it; rejected: ``dtr``; lanes not running keep
    theirs (a frozen lane's step size never drifts into subnormals). A running lane whose
    attempt was not finite stops (NONFINITE), so what it gets here is never read: the test is
    the accept rule alone, without the finiteness mask the state update needs; and ``lm``
    (bounded by the controller's clamps) is read by running lanes only."""
    S = B.S
    return ["ok = ssq <= _NSTATES",
            f"{S(B.R_DT)} = _sel({go}, _sel(ok, _sel(h < dtc, max(dta, dtc), dta), dtr), dtc)",
            f"{S(B.R_LM)} = _sel(ok, lmn, lm)"]


def _one_pass_loop(B: _LaneRows, prelude: list[str]) -> list[str]:
    """One lane loop: attempt, control and a masked update of the state rows. LLVM turns
    each ``S[r, l] = _sel(m, new, S[r, l])`` into a masked store: one instruction with
    AVX-512's mask registers, but a slow VMASKMOVPS on AVX2 (see KernelKey.lane_layout)."""
    S, y, x, yn, xn, one, zero, code = B.S, B.y, B.x, B.yn, B.xn, B.one, B.zero, B.code
    lane = list(prelude)
    lane += [
        f"{targets(yn + xn + ['ssq'] + B.dv)} = _attempt({', '.join(y + x + names('p', B.npar))}, t, h, rtol, atol)",
        f"fin = (ssq == ssq) & {_finite_expr(B.P, yn)}",
        "dta, dtr, lmn = _control(ssq, lm, h)",
        "go = run & (not maxed) & (not under)",
        f"acc = go & fin & (ssq <= _NSTATES)",
        f"rej = go & fin & (not (ssq <= _NSTATES))",
        "bad = go & (not fin)",
        "tn = _sel(last, tstop, t + h)",
    ]
    lane += [f"{B.sy[s]} = _sel(acc | bad, {yn[s]}, {y[s]})" for s in range(B.n)]
    lane += [f"{B.sx[s]} = _sel(acc, {xn[s]}, {x[s]})" for s in range(len(x))]
    lane += [
        f"{S(B.R_T)} = _sel(acc, tn, t)",
        *_next_dt_lm(B, "go"),
        f"{S(B.R_ACC)} = _sel(acc, nacc + {one}, nacc)",
        f"{S(B.R_REJ)} = _sel(rej | bad, nrej + {one}, nrej)",
        f"st = _sel(run & maxed, {code[Status.MAX_STEPS]}, st)",
        f"st = _sel(run & (not maxed) & under, {code[Status.DT_UNDERFLOW]}, st)",
        f"st = _sel(bad, {code[Status.NONFINITE]}, st)",
        f"st = _sel(acc & (tn >= tf), {code[Status.SUCCESS]}, st)",
        f"{S(B.R_ST)} = st",
        f"anyrun = anyrun | (st == {B.running})",
    ]
    if B.save != "final":
        lane.append(f"{S(B.R_SV)} = _sel(acc & ({S(B.R_NX)} <= tn), {one}, {zero})")
    if B.save == "dense":
        for r, v in enumerate(y + B.dv + xn + ["t", "h"]):
            lane.append(f"D[{r}, l] = {v}")
    return ["while True:", "    anyrun = False", "    for l in range(_L_PASS):"] + ["        " + v for v in lane]


def _two_pass_loops(B: _LaneRows, prelude: list[str]) -> list[str]:
    """Pass 1, attempt: every lane makes one step attempt from its state and writes a record
    of it (rows of S from n_rows on): the state it started from, the candidate, EEst, h, the
    end time and the status after the pre-attempt checks. Pass 2, decide: the controller and
    the masked update, from the record alone. Two passes, not one: each body is short enough
    for the core to overlap consecutive vector iterations (one loop's body was longer than
    the reorder window, so its long attempt -> norm -> log/exp chain ran unhidden), and pass 2
    never reads a row it writes, so its selects stay plain stores (a select between a new
    value and the value loaded from the same address becomes a masked store, slow on AVX2).
    Pass 2 is itself two loops: the controller alone (EEst -> log -> exp -> the next step
    size and controller memory, written to the state rows: ``_next_dt_lm``; the longest
    dependency chain of the step, in a body short enough that the core overlaps several
    vectors of lanes), then the commit (state, time, counters and status) from the record."""
    S, y, x, yn, xn, one, zero, code = B.S, B.y, B.x, B.yn, B.xn, B.one, B.zero, B.code
    rec_names = B.rec_names
    R = {v: B.n_rows + k for k, v in enumerate(rec_names)}
    attempt = list(prelude)
    attempt += [
        # Lanes stopped here are not running in pass 2 (go == (st == RUNNING) there).
        f"st = _sel(run & maxed, {code[Status.MAX_STEPS]}, st)",
        f"st = _sel(run & (not maxed) & under, {code[Status.DT_UNDERFLOW]}, st)",
        f"{targets(yn + xn + ['ssq'] + B.dv)} = _attempt({', '.join(y + x + names('p', B.npar))}, t, h, rtol, atol)",
        "tn = _sel(last, tstop, t + h)",
    ]
    attempt += [f"{S(R[v])} = {v}" for v in rec_names]
    if B.save == "dense":
        for r, v in enumerate(y + B.dv + xn + ["t", "h"]):
            attempt.append(f"D[{r}, l] = {v}")

    control = [f"{v} = {S(R[v])}" for v in ("ssq", "lm", "h", "dtc", "st")]
    control += ["dta, dtr, lmn = _control(ssq, lm, h)", f"go = st == {B.running}"] + _next_dt_lm(B, "go")
    decide = [f"{v} = {S(R[v])}" for v in rec_names if v not in ("h", "dtc", "lm")]
    decide += [
        f"fin = (ssq == ssq) & {_finite_expr(B.P, yn)}",
        f"go = st == {B.running}",
        f"acc = go & fin & (ssq <= _NSTATES)",
        f"rej = go & fin & (not (ssq <= _NSTATES))",
        "bad = go & (not fin)",
    ]
    decide += [f"{B.sy[s]} = _sel(acc | bad, {yn[s]}, {y[s]})" for s in range(B.n)]
    decide += [f"{B.sx[s]} = _sel(acc, {xn[s]}, {x[s]})" for s in range(len(x))]
    decide += [
        f"{S(B.R_T)} = _sel(acc, tn, t)",
        f"{S(B.R_ACC)} = _sel(acc, nacc + {one}, nacc)",
        f"{S(B.R_REJ)} = _sel(rej | bad, nrej + {one}, nrej)",
        f"st = _sel(bad, {code[Status.NONFINITE]}, st)",
        f"st = _sel(acc & (tn >= tf), {code[Status.SUCCESS]}, st)",
        f"{S(B.R_ST)} = st",
        f"anyrun = anyrun | (st == {B.running})",
    ]
    if B.save != "final":
        decide.append(f"{S(B.R_SV)} = _sel(acc & ({S(B.R_NX)} <= tn), {one}, {zero})")
    # All three loops are straight-line lane loops. Those over range(_L_PASS), the attempt and
    # the control, whose bodies are long dependency chains, are interleaved in pairs of lanes
    # by ``emit.interleave_lane_loops`` when _L is even (see generate_source, lane_ways);
    # the commit is short and bound by its loads and stores, which a second chain only adds to.
    body = ["while True:", "    for l in range(_L_PASS):"] + ["        " + v for v in attempt]
    body += ["    for l in range(_L_PASS):"] + ["        " + v for v in control]
    body += ["    anyrun = False", "    for l in range(_L):"] + ["        " + v for v in decide]
    return body


def _lane_saves(B: _LaneRows) -> list[str]:
    """The scalar save pass after the vector loops (its loops differ per lane)."""
    S, n, d_rows = B.S, B.n, B.d_rows
    dl = lambda r: f"D[{r}, l]"  # noqa: E731
    scalar = ["for l in range(_L):", f"    if {S(B.R_SV)} != {B.zero}:",
              "        j = J[l]", f"        tn = {S(B.R_T)}",
              "        while j < ns and save_t[j] <= tn:"]
    if B.save == "dense":
        args = [dl(r) for r in range(d_rows - 2)]
        scalar += [f"            th = (save_t[j] - {dl(d_rows - 2)}) / {dl(d_rows - 1)}",
                   f"            {targets(names('ys', n))} = _dense({', '.join(args)}, {dl(d_rows - 1)}, th)",
                   "            if save_t[j] == tn:",
                   f"                {targets(names('ys', n))} = {targets(B.sy)}"]
        vals = names("ys", n)
    else:
        vals = B.sy
    scalar += ["            if base + l < N:"]
    scalar += ["                " + v for v in _write_saved(B.P, "j", "base + l", vals)]
    scalar += ["            j += 1", "        J[l] = j",
               f"        {S(B.R_NX)} = save_t[j] if j < ns else {B.inf}"]
    return scalar


def _block_adaptive(P: Parts, save: str, lanes: int) -> list[str]:
    """One lane block of adaptive trajectories, each lane with its own t, dt and controller.

    Every pass of the ``while`` loop makes one step attempt in every lane; a lane's state
    changes only where its masks say so (``_sel``), a finished lane keeps computing on its
    frozen state and ignores the result, and the block ends when no lane is running. The
    lane loops hold only floats (counters and status too: exact integers below 2**24) and a
    boolean "any lane running" reduction, so LLVM vectorises them at the full float width.
    ``P.lane_layout`` chooses one lane loop (``_one_pass_loop``) or an attempt loop and a
    decide pass (``_two_pass_loops``; see ``KernelKey.lane_layout``); both compute the same
    values lane by lane. Saving, whose loops differ per lane, runs in a scalar pass after the
    vector loops (``_lane_saves``).
    """
    B = _lane_rows(P, save)
    S = B.S
    body = _lane_setup(B)
    prelude = _lane_prelude(B)
    if P.lane_layout == "one-pass":
        body += _one_pass_loop(B, prelude)
    else:
        body += _two_pass_loops(B, prelude)
    if save != "final":
        body += ["    " + v for v in _lane_saves(B)]
    body += ["    if not anyrun:", "        break"]
    body += ["for l in range(_L):", "    i = base + l", "    if i < N:"]
    body += [f"        out_u[{s}, i] = {B.sy[s]}" for s in range(B.n)]
    body += [f"        stats[0, i] = int({S(B.R_ACC)})", f"        stats[1, i] = int({S(B.R_REJ)})",
             # Every attempt costs the same evaluations: no counter of its own (one row less).
             f"        stats[2, i] = int({B.init_evals}) + int({B.attempt_evals}) * "
             f"(int({S(B.R_ACC)}) + int({S(B.R_REJ)}))",
             f"        status[i] = int({S(B.R_ST)})"]
    return ["@_jit", f"def _block(b, {ARGS}):"] + ["    " + v for v in body] + [""]


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
    P = Parts(mc, sh, C, ctrl, key.lane_layout, lane_ways(key))

    # Snippets: straight-line functions spliced into the trajectory loops (emit.Inliner).
    inliner = Inliner()
    funcs: list[str] = []
    if key.target == "cuda":
        for src in cuda_helper_snippets(key.dtype):
            funcs += ["", inliner.add(src), ""]
        funcs += ["", inliner.add(rhs_source(prob), name="rhs"), ""]
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
        snippets += log_exp_source(C, key.dtype) + [controller_source(C, ctrl, sh.n)]
        if mc.extras(sh):
            snippets.append(mc.emit_init(C, sh))
        snippets.append(mc.emit_attempt(C, sh))
        if key.save == "dense":
            snippets.append(mc.emit_dense(C, sh))
        one, block = _solve_one_adaptive(P, key.save), _block_adaptive
    for snip in snippets:
        funcs += [""] + deco + [inliner.add(join_lines(snip)), ""]
    if key.target == "cpu":
        funcs += ["", "@_jit", inliner.expand(join_lines([f"def _solve_one(i, {ARGS}):"] + indent_lines(one))), ""]
        blk = inliner.expand(join_lines(block(P, key.save, key.lanes)))
        blk = interleave_lane_loops(blk, "_L_PASS", "_L_PART", keep=("anyrun",), ways=P.lane_ways)
        funcs += ["", blk, ""]
        funcs += [
            "",
            "@_kernel",
            f"def solve_lanes({ARGS}):",
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
            f"            _block(b, {ARGS})",
            "",
            "",
            "@_kernel",
            f"def solve_serial({ARGS}):",
            "    \"\"\"One trajectory per loop iteration (no lane blocking), strided as above.\"\"\"",
            "    n = u0.shape[1]",
            "    n_strands = min(_STRANDS * _L, n)",
            "    for k in prange(n_strands):",
            "        for i in range(k, n, n_strands):",
            f"            _solve_one(i, {ARGS})",
        ]
    else:
        kernel = [f"def solve_kernel({ARGS}):",
                  "    i = cuda.grid(1)  # one thread per trajectory, the whole time loop inside it",
                  "    if i < u0.shape[1]:"] + indent_lines(one, 2)
        funcs += ["", "@cuda.jit", inliner.expand(join_lines(kernel))]
    lines = (module_header(key, P) + ["", "", "# ---- constants (kernel dtype) ------------------------------------------------"]
             + C.source() + funcs)
    return join_lines(lines)
