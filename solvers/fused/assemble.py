"""What every fused ODE module shares, whatever its layout: the kernels' arguments, the module
header, the step controller's snippets, the CUDA helpers and the small source utilities.

Used by both generators, ``solvers.fused.codegen`` (the unrolled layout) and
``solvers.fused.looped`` (the looped layout for large systems), so that neither imports the
other's internals. Part of every kernel's cache key (``codegen.GENERATOR_FILES``).
"""
from __future__ import annotations

import inspect
import math
import textwrap
from dataclasses import dataclass

import numpy as np

from problems import derive
from problems.registry import get_problem
from solvers.fused.bits import bit_format
from solvers.fused.emit import Constants, free_globals
from solvers.fused.methods import MethodCode, Shape, method_code, py_ops
from solvers.tableaus import SNAP_ULPS, PIController, Src, SquaredPI, get_controller, pi_control_squared

#: Argument order of every generated kernel (see ``solvers.fused.build.kernel_args``).
KERNEL_ARGS = ("u0", "p", "t0", "tf", "dt", "n_steps", "rtol", "atol", "max_steps",
               "save_t", "save_i", "out_u", "saved", "stats", "status")
ARGS = ", ".join(KERNEL_ARGS)  # the argument list as source


@dataclass
class Parts:
    """What the templates need to know about the method and problem."""

    mc: MethodCode
    sh: Shape
    C: Constants
    ctrl: PIController | None
    lane_layout: str = "two-pass"  # of the CPU adaptive lane loop (KernelKey.lane_layout)
    lane_ways: int = 1  # lanes interleaved in the per-step lane loops (codegen.lane_ways)


def controller_for(method: str, controller: str) -> PIController:
    """DiffEqGPU's controller for ``method`` (betas scaled by its ``alg_order``)."""
    return get_controller(controller, method_code(method).order)


# ================================================================================================
# The step controller: DiffEqGPU's PI control law with a vectorisable power
# ================================================================================================

def log_exp_source(C: Constants, dtype: str) -> list[str]:
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
    margin), so only a bounded range ever reaches the log (``SquaredPI`` clamps the squared
    norm into ``n`` times this range squared).
    """
    K = SquaredPI.of(ctrl, 1)
    return math.sqrt(K.ssq_lo), math.sqrt(K.ssq_hi)


def controller_source(C: Constants, ctrl: PIController, n: int) -> list[str]:
    """Snippet ``_control(ssq, lm, h) -> (dt_accept, dt_reject, lm_new)``: DiffEqGPU's PI law on
    the squared norm ``ssq`` of an ``n``-state problem, printed from the one definition,
    ``solvers.tableaus.pi_control_squared`` (its docstring and ``SquaredPI``'s say how the
    law is rewritten: one log, one exp, no division, no square root). ``lm`` is the controller
    memory (``_LM_INIT`` before the first step); accepted when ``ssq <= _NSTATES``.
    """
    K = SquaredPI.of(ctrl, n)
    c = {k: Src(C.add(k, v)) for k, v in K.constants().items()}
    body: list[str] = []
    dta, dtr, lmn = pi_control_squared(Src("ssq"), Src("lm"), Src("h"), c, py_ops(body))
    return ["def _control(ssq, lm, h):"] + ["    " + v for v in body] + [f"    return {dta}, {dtr}, {lmn}"]


def snap_constant(C: Constants) -> str:
    """The landing window per unit of time, ``SNAP_ULPS`` ulps (``solvers.tableaus``)."""
    return C.add("TSNAP", SNAP_ULPS * float(np.finfo(C.dtype).eps))


# ================================================================================================
# Module assembly
# ================================================================================================

def cuda_helper_snippets(dtype: str) -> list[str]:
    """Source of the CUDA kernels' small helpers (spliced like every other snippet)."""
    bits, shift, bias, mant, one, emask = bit_format(dtype)
    return [
        "def _sel(c, a, b):\n    return a if c else b\n",
        f"def _mant(x):\n    return _i2f(_IB((_f2i(x) & {mant}) | {one}))\n",
        f"def _expo(x):\n    return _T(((_f2i(x) >> {shift}) & {emask}) - {bias})\n",
        f"def _pow2(n):\n    return _i2f(_IB((_IB(n) + {bias}) << {shift}))\n",
        "def _floor(x):\n    return _T(_floorlib(x))\n",
    ]


def module_header(key, P: Parts) -> list[str]:
    """The generated module's docstring, imports, kernel dtype and problem functions, for
    ``key`` (a ``codegen.KernelKey``: not imported here, codegen imports this module)."""
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
            "from solvers.fused.bits import aligned_frame, cpu_helpers",
            "",
            f"_FASTMATH = {fm}",
            "# rhs, jac and _sel stay functions: LLVM's inliner takes functions that small.",
            "_jit = numba.njit(fastmath=_FASTMATH, error_model='numpy')",
            "# The step pieces as functions of their own, for tests and reading (kernels splice them).",
            "_piece = numba.njit(cache=True, fastmath=_FASTMATH, error_model='numpy')",
            "_kernel = numba.njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model='numpy')",
            f"_mant, _expo, _pow2, _floor = cpu_helpers({key.dtype!r})",
            f"_L = {key.lanes}  # trajectories per lane block",
            "_L_PASS = _L  # lanes of a per-step lane loop (when not interleaved)",
            f"_L_PART = _L // {P.lane_ways}  # interleaved per-step lane loops: lanes l, l + _L_PART, ...",
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
        for name in free_globals(rhs_source(prob)):
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


def rhs_source(prob) -> str:
    """The source of ``prob.rhs`` (dedented), as the generators splice and translate it."""
    return textwrap.dedent(inspect.getsource(prob.rhs))


def join_lines(lines: list[str]) -> str:
    """Source lines as one text, newline-terminated."""
    return "\n".join(lines) + "\n"


def indent_lines(lines: list[str], k: int = 1) -> list[str]:
    """``lines`` indented by ``k`` levels of four spaces."""
    return ["    " * k + v for v in lines]
