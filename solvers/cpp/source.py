"""The C++ translation unit of the hand-written fused solver, for one problem and dtype.

``translation_unit(problem, dtype)`` returns the whole source: a generated prelude (the float
type, the problem's right-hand side printed by SymPy's C code printer, every tableau and
controller constant from ``solvers.tableaus``, the status codes of ``solvers.base``) followed
by the hand-written ``fused.hpp``. The same text compiles for the host (g++) and for CUDA
(NVRTC / nvcc): ``fused.hpp`` switches on ``__CUDACC__``.

``cuda_source(problem, method, mode, dtype)`` is the entry point for GPU tooling (the SASS
profiler): the CUDA source and the name of its kernel for that solve.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import sympy as sp
from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter

from problems.registry import get_problem
from solvers.base import Status
from solvers.tableaus import (
    RK4, RK4_38, TSIT5, PIController, Src, SquaredPI, SrcOps, error_scales, get_controller, pi_control_squared,
    rk_update, scaled_ssq, srcs,
)

HEADER = Path(__file__).with_name("fused.hpp")

#: (method, mode) -> kernel / host entry-point name in fused.hpp.
ENTRY_POINTS = {
    ("tsit5", "fixed"): "tsit5_fixed",
    ("tsit5", "adaptive"): "tsit5_adaptive",
    ("rk4", "fixed"): "rk4_fixed",
    ("rk4_38", "fixed"): "rk4_38_fixed",
}
#: Alg order of each method, for DiffEqGPU's order-scaled controller betas.
ORDERS = {"tsit5": TSIT5.order, "rk4": RK4.order, "rk4_38": RK4_38.order}
#: Series lengths of fused.hpp's klog / kexp: truncation below half an ulp of the dtype.
SERIES_TERMS = {"float32": (5, 8), "float64": (11, 14)}
#: Cody-Waite split of ln 2 (fdlibm's ln2_hi / ln2_lo for double; 12 exact bits for float).
LN2_SPLIT = {"float32": (0.693145751953125, 1.428606765330187045e-06),
             "float64": (6.93147180369123816490e-01, 1.90821492927058770002e-10)}


class _RealPrinter(C99CodePrinter):
    """C99 printer in which every number is a literal of the kernel's float type and small
    integer powers are products (``y*y``): nothing promotes a float kernel to double."""

    def __init__(self, dtype: str) -> None:
        super().__init__({"type_aliases": {real: float32 if dtype == "float32" else float64}})
        self._suffix = "f" if dtype == "float32" else ""

    def _lit(self, value: float) -> str:
        return literal(value, self._suffix)

    def _print_Integer(self, expr):
        return self._lit(float(int(expr)))

    _print_Zero = _print_One = _print_NegativeOne = _print_Integer

    def _print_Rational(self, expr):
        return f"({self._lit(float(expr.p))}/{self._lit(float(expr.q))})"

    _print_Half = _print_Rational

    def _print_Float(self, expr):
        return self._lit(float(expr))

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 0 < int(exp) <= 8:
            return "(" + "*".join([self.parenthesize(base, 1000)] * int(exp)) + ")"
        if exp.is_Integer and -8 <= int(exp) < 0:
            return f"({self._lit(1.0)}/(" + "*".join([self.parenthesize(base, 1000)] * -int(exp)) + "))"
        return super()._print_Pow(expr, rational)


def literal(value: float, suffix: str) -> str:
    """A C literal that round-trips ``value`` (float64 repr), with ``suffix`` ("f" or "")."""
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"non-finite constant {v!r}")
    text = repr(v)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + suffix


def rhs_source(problem: str, dtype: str) -> str:
    """``rhs(u, p, t, du)`` in C++, translated from the problem's Python right-hand side."""
    prob = get_problem(problem)
    u = sp.symbols(" ".join(f"u_{i}" for i in range(prob.n_states)), real=True, seq=True)
    p = sp.symbols(" ".join(f"p_{i}" for i in range(prob.n_params)), real=True, seq=True)
    t = sp.Symbol("t", real=True)
    exprs = [sp.sympify(e) for e in prob.rhs_for(sp)(tuple(u), tuple(p), t)]
    if len(exprs) != prob.n_states:
        raise ValueError(f"{problem}: rhs returned {len(exprs)} entries for {prob.n_states} states")
    pr = _RealPrinter(dtype)
    used = set().union(*(e.free_symbols for e in exprs))
    lines = [f"// {problem}: {prob.citation.split(';')[0]}",
             f"// translated by SymPy's C99 printer from {prob.rhs.__module__}.{prob.rhs.__name__}",
             "HD void rhs(const real (&u)[NS], const real (&p)[NP], real t, real (&du)[NS]) {"]
    lines += [f"  const real u_{i} = u[{i}];  // {name}" for i, name in enumerate(prob.state_names)
              if u[i] in used]
    lines += [f"  const real p_{i} = p[{i}];  // {name}" for i, name in enumerate(prob.param_names)
              if p[i] in used]
    if t not in used:
        lines.append("  (void)t;")
    lines += [f"  du[{i}] = {pr.doprint(e)};" for i, e in enumerate(exprs)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _tableau_constants(prefix: str, tab, lit) -> list[str]:
    out = [f"// {tab.name}: solvers.tableaus.{prefix}"]
    out += [f"constexpr real {prefix}_C_{i} = {lit(c)};" for i, c in enumerate(tab.c)]
    for i, row in enumerate(tab.a):
        out += [f"constexpr real {prefix}_A_{i}_{j} = {lit(a)};" for j, a in enumerate(row)]
    out += [f"constexpr real {prefix}_B_{i} = {lit(b)};" for i, b in enumerate(tab.b)]
    if tab.btilde is not None:
        out += [f"constexpr real {prefix}_E_{i} = {lit(e)};" for i, e in enumerate(tab.btilde)]
    return out


def _sum_functions(prefix: str, tab) -> list[str]:
    """The tableau's sums as C++ functions printed from ``solvers.tableaus.rk_update`` (so the
    C++ arm sums exactly as every other implementation): ``{prefix}_stage_{i}(y, h, k1..k{i})``
    the argument of stage i (0-based), ``{prefix}_solution(y, h, k1..)`` the fixed step's new
    state (an FSAL tableau's last stage has b = 0 and is left out) and, for an embedded pair,
    ``{prefix}_error(h, k1..k{s})`` the error estimate."""
    def fn(label: str, base: str | None, row, count: int, const_name: str) -> str:
        ks = srcs(f"k{j + 1}" for j in range(count))
        const = lambda j, c: Src(f"{const_name}_{j}")  # noqa: E731
        expr = rk_update(None if base is None else Src(base), Src("h"), row[:count], ks, const)
        params = ([] if base is None else ["real y"]) + ["real h"] + [f"real {k}" for k in ks]
        return f"HD real {prefix.lower()}_{label}({', '.join(params)}) {{ return {expr}; }}"

    out = [f"// {tab.name}: sums printed from solvers.tableaus.rk_update"]
    out += [fn(f"stage_{i}", "y", tab.a[i], i, f"{prefix}_A_{i}") for i in range(1, tab.stages)]
    out.append(fn("solution", "y", tab.b, tab.stages - 1 if tab.fsal else tab.stages, f"{prefix}_B"))
    if tab.btilde is not None:
        out.append(fn("error", None, tab.btilde, tab.stages, f"{prefix}_E"))
    return out


def _controller_constants(ctrl: PIController, lit, n: int) -> list[str]:
    vals = {**SquaredPI.of(ctrl, n).constants(), "DTMIN": ctrl.dtmin}
    return [f"// PI controller: solvers.tableaus {ctrl!r}, on the squared norm (SquaredPI, n = {n})"] + [
        f"constexpr real CTRL_{k} = {lit(v)};" for k, v in vals.items()]


def controller_functions(n: int) -> str:
    """``pi_control`` and ``error_ssq`` printed from ``solvers.tableaus`` (``pi_control_squared``,
    ``error_scales``, ``scaled_ssq``) for ``n`` states: the op sequence of every implementation."""
    body: list[str] = []
    ops = SrcOps("vmin", "vmax", "vabs", "klog", "kexp", lines=body, assign="const real {} = {};")
    c = {k: Src(f"CTRL_{k}") for k in SquaredPI.of(PIController(), n).constants()}
    dta, dtr, lmn = pi_control_squared(Src("ssq"), Src("lm"), Src("h"), c, ops)
    out = ["HD void pi_control(real ssq, real lm, real h, real& dt_acc, real& dt_rej, real& lm_new) {"]
    out += ["  " + v for v in body]
    out += [f"  dt_acc = {dta};", f"  dt_rej = {dtr};", f"  lm_new = {lmn};", "}", ""]
    sc = error_scales([Src(f"y[{i}]") for i in range(n)], [Src(f"yn[{i}]") for i in range(n)],
                      Src("atol"), Src("rtol"), ops)
    out += ["HD real error_ssq(const real (&err)[NS], const real (&y)[NS], const real (&yn)[NS],",
            "                  real rtol, real atol) {"]
    out += [f"  const real sc{i} = {e};" for i, e in enumerate(sc)]
    ssq = scaled_ssq([Src(f"err[{i}]") for i in range(n)], srcs(f"sc{i}" for i in range(n)), Src("K_ONE"))
    out += [f"  return {ssq};", "}"]
    return "\n".join(out)


def prelude(problem: str, dtype: str, controller: str = "diffeqgpu") -> str:
    """Everything fused.hpp expects in front of it (see its header comment)."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"invalid dtype {dtype!r}: choose one of float32, float64")
    prob = get_problem(problem)
    suffix = "f" if dtype == "float32" else ""
    lit = functools.partial(literal, suffix=suffix)
    n_log, n_exp = SERIES_TERMS[dtype]
    ln2_hi, ln2_lo = LN2_SPLIT[dtype]
    ctype = "float" if dtype == "float32" else "double"
    itype = "int" if dtype == "float32" else "long long"
    lines = [
        f"// Generated by solvers/cpp/source.py for problem {problem!r}, {dtype}: do not edit.",
        f"typedef {ctype} real;",
        f"typedef {itype} lane_int;  // as wide as real: lane masks and counters vectorise with it",
        f"#define NS {prob.n_states}",
        f"#define NP {prob.n_params}",
        "",
        "// status codes: solvers.base.Status (and -1 while a trajectory runs)",
        *[f"constexpr int ST_{st.name} = {int(st)};" for st in Status],
        "constexpr int ST_RUNNING = -1;",
        "",
        "// numbers of the kernel's own arithmetic",
        f"constexpr real K_ZERO = {lit(0.0)};",
        f"constexpr real K_ONE = {lit(1.0)};",
        f"constexpr real K_HALF = {lit(0.5)};",
        f"constexpr real K_BIG = {lit(float(np.finfo(dtype).max))};  // largest finite",
        f"constexpr real K_SQRT2 = {lit(math.sqrt(2.0))};",
        f"constexpr real K_LN2 = {lit(math.log(2.0))};",
        f"constexpr real K_LOG2E = {lit(1.0 / math.log(2.0))};",
        f"constexpr real K_LN2_HI = {lit(ln2_hi)};",
        f"constexpr real K_LN2_LO = {lit(ln2_lo)};",
        f"constexpr real K_ROUND = {lit(1.5 * 2.0 ** np.finfo(dtype).nmant)};  // 1.5 * 2^mantissa bits",
        f"constexpr real K_EXP_ZMIN = {lit(-80.0)};",
        f"constexpr real K_EXP_ZMAX = {lit(80.0)};",
        f"constexpr int LOG_TERMS = {n_log};",
        f"constexpr int EXP_TERMS = {n_exp};",
        "",
        *_tableau_constants("TSIT5", TSIT5, lit),
        *_tableau_constants("RK4", RK4, lit),
        *_tableau_constants("RK4_38", RK4_38, lit),
        "",
        *_controller_constants(get_controller(controller, ORDERS["tsit5"]), lit, prob.n_states),
        "",
    ]
    return "\n".join(lines) + "\n"


def hd_prelude() -> str:
    """The HD macro must exist before the generated rhs: fused.hpp's first lines define it."""
    return ("#if defined(__CUDACC__)\n#define HD __host__ __device__ __forceinline__\n"
            "#else\n#define HD inline __attribute__((always_inline))\n#endif\n")


def translation_unit(problem: str, dtype: str, controller: str = "diffeqgpu") -> str:
    """The whole C++ source for ``problem`` in ``dtype``: every method's host entry points and
    CUDA kernels (see ``ENTRY_POINTS``)."""
    sums = [line for tab, prefix in ((TSIT5, "TSIT5"), (RK4, "RK4"), (RK4_38, "RK4_38"))
            for line in _sum_functions(prefix, tab)]
    return (prelude(problem, dtype, controller) + hd_prelude() + "\n"
            + rhs_source(problem, dtype) + "\n" + "\n".join(sums) + "\n\n"
            + HEADER.read_text().replace("// @CONTROLLER@", controller_functions(get_problem(problem).n_states)))


def entry_point(method: str, mode: str) -> str:
    """The kernel / host function name of ``(method, mode)``; ValueError if there is none."""
    try:
        return ENTRY_POINTS[(method, mode)]
    except KeyError:
        have = ", ".join(f"{m} {md}" for m, md in ENTRY_POINTS)
        raise ValueError(f"cuda-cpp has no {method} {mode} solver (has: {have})") from None


def cuda_source(problem: str, method: str, mode: str, dtype: str,
                controller: str = "diffeqgpu") -> tuple[str, tuple[str, ...]]:
    """(CUDA C++ source, kernel names) of the hand-written solver for one solve.

    The source defines every method's kernel; the tuple names the one for ``(method, mode)``
    (``extern "C"``, so the name is the symbol: compile with NVRTC or ``nvcc -cubin`` and look
    it up as is). Each kernel takes ``(u0, p, t0, tf, dt, n_steps, rtol, atol, max_steps,
    out_u, stats, status, N)``, arrays trajectory-last.
    """
    get_problem(problem)
    return translation_unit(problem, dtype, controller), (entry_point(method, mode),)
