"""Jacobian and time derivative, derived from the one right-hand side by tracing it with SymPy.

The result is generated Python source with the same calling convention as the right-hand side
(``f(u, p, t)`` returning nested tuples), so every backend uses it the way it uses ``rhs``:

* math functions are looked up on the module-level name ``m`` (bound per backend);
* every numeric constant is wrapped in ``_c(...)``, bound to the backend's scalar constructor
  (``numba.float32`` inside a float32 kernel), so no float64 literal can promote a float32 kernel;
* integer powers are expanded into products (``y*y``), which every backend keeps in its dtype.

Entries that are identically zero come out as ``_c(0)``: array callers broadcast them.

``derivatives(problem)`` is the entry point: an ODE problem's Jacobian and time derivative
(``derive``), a nonlinear system's residual and Jacobian (``derive_nonlinear``), derived once per
problem. It lives here, not on the problem classes, so that problems.core and
problems.nonlinear_core import without SymPy.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

from problems.core import Problem
from problems.nonlinear_core import NonlinearProblem


@functools.lru_cache(maxsize=None)
def kernel_printer() -> type:
    """The ``KernelPrinter`` class, a SymPy ``StrPrinter`` built on first use (once), so that this
    module imports without SymPy."""
    # sympy is optional: derivatives need it, importing this module does not
    import sympy as sp
    from sympy.printing.str import StrPrinter

    class KernelPrinter(StrPrinter):
        """Prints SymPy expressions as dtype-safe Python usable by every backend."""

        def _print_Integer(self, expr):
            return f"_c({int(expr)})"

        def _print_Rational(self, expr):
            return f"(_c({int(expr.p)}) / _c({int(expr.q)}))"

        def _print_Float(self, expr):
            return f"_c({float(expr)!r})"

        def _print_Zero(self, expr):
            return "_c(0)"

        def _print_One(self, expr):
            return "_c(1)"

        def _print_NegativeOne(self, expr):
            return "_c(-1)"

        def _print_Half(self, expr):
            return "(_c(1) / _c(2))"

        def _print_Pow(self, expr, rational=False):
            base, exp = expr.as_base_exp()
            if exp.is_Integer and 0 < int(exp) <= 8:
                b = self.parenthesize(base, 1000)
                return "(" + "*".join([b] * int(exp)) + ")"
            if exp.is_Integer and -8 <= int(exp) < 0:
                b = self.parenthesize(base, 1000)
                return "(_c(1) / (" + "*".join([b] * -int(exp)) + "))"
            if exp == sp.Rational(1, 2):
                return f"m.sqrt({self._print(base)})"
            return f"({self._print(base)})**({self._print(exp)})"

        def _print_Function(self, expr):
            name = expr.func.__name__
            return f"m.{name}({', '.join(self._print(a) for a in expr.args)})"

    return KernelPrinter


@dataclass(frozen=True)
class Derivatives:
    """Symbolic Jacobian ``J[i][j] = d f_i / d u_j`` and time derivative ``d f_i / d t``."""

    jac_exprs: tuple[tuple[Any, ...], ...]
    tgrad_exprs: tuple[Any, ...]
    jac_source: str
    tgrad_source: str

    def functions(self, namespace: Any = math, const: Callable = float) -> tuple[Callable, Callable]:
        """``(jac, tgrad)`` as Python functions with ``m = namespace`` and ``_c = const``."""
        glb: dict[str, Any] = {"m": namespace, "_c": const}
        exec(compile(self.jac_source, "<derived jacobian>", "exec"), glb)
        exec(compile(self.tgrad_source, "<derived tgrad>", "exec"), glb)
        return glb["jac"], glb["tgrad"]


def _function_source(name: str, n_states: int, n_params: int, body: str) -> str:
    us = ", ".join(f"_u{i}" for i in range(n_states)) + ("," if n_states == 1 else "")
    ps = ", ".join(f"_p{i}" for i in range(n_params)) + ("," if n_params == 1 else "")
    return (
        f"def {name}(u, p, t):\n"
        f"    {us} = u\n"
        f"    {ps} = p\n"
        f"    _t = t\n"
        f"    return {body}\n"
    )


def derive(problem: Problem) -> Derivatives:
    """Trace ``problem.rhs`` with SymPy symbols and differentiate it."""
    import sympy as sp  # sympy is optional: imported when a derivative is first asked for

    # seq=True: a tuple even for one name (Lorenz-96 has the single parameter F)
    u = sp.symbols(" ".join(f"_u{i}" for i in range(problem.n_states)), real=True, seq=True)
    p = sp.symbols(" ".join(f"_p{i}" for i in range(problem.n_params)), real=True, seq=True)
    t = sp.Symbol("_t", real=True)
    f = problem.rhs_for(sp)(tuple(u), tuple(p), t)
    if len(f) != problem.n_states:
        raise ValueError(f"{problem.name}: rhs returned {len(f)} entries for {problem.n_states} states")
    f = [sp.sympify(fi) for fi in f]
    jac = tuple(tuple(sp.simplify(sp.diff(fi, uj)) for uj in u) for fi in f)
    tgrad = tuple(sp.simplify(sp.diff(fi, t)) for fi in f)
    pr = kernel_printer()()

    def tup(items):
        items = list(items)
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    jac_body = tup(tup(pr.doprint(e) for e in row) for row in jac)
    tgrad_body = tup(pr.doprint(e) for e in tgrad)
    return Derivatives(
        jac_exprs=jac,
        tgrad_exprs=tgrad,
        jac_source=_function_source("jac", problem.n_states, problem.n_params, jac_body),
        tgrad_source=_function_source("tgrad", problem.n_states, problem.n_params, tgrad_body),
    )


@dataclass(frozen=True)
class NonlinearDerivatives:
    """SymPy residual ``F_i`` and Jacobian ``J[i][j] = dF_i/dx_j`` and their printed sources:
    ``residual(x, p)`` and ``jac(x, p)`` with ``m`` (math namespace) and ``_c`` (the dtype's
    scalar constructor) as free names."""

    residual_exprs: tuple[Any, ...]
    jac_exprs: tuple[tuple[Any, ...], ...]
    residual_source: str
    jac_source: str

    def functions(self, namespace: Any = math, const: Callable = float) -> tuple[Callable, Callable]:
        glb: dict[str, Any] = {"m": namespace, "_c": const}
        exec(compile(self.residual_source, "<derived residual>", "exec"), glb)
        exec(compile(self.jac_source, "<derived jacobian>", "exec"), glb)
        return glb["residual"], glb["jac"]

    def nonzero_pattern(self) -> tuple[tuple[bool, ...], ...]:
        """Which Jacobian entries are not identically zero (reported, never exploited)."""
        return tuple(tuple(e != 0 for e in row) for row in self.jac_exprs)


def derive_nonlinear(problem: NonlinearProblem) -> NonlinearDerivatives:
    """Trace ``problem.residual`` with SymPy symbols and differentiate it."""
    import sympy as sp  # sympy is optional: imported when a derivative is first asked for

    d, npar = problem.n_states, problem.n_params
    x = sp.symbols(" ".join(f"_x{i}" for i in range(d)) + " ", real=True)
    p = sp.symbols(" ".join(f"_p{i}" for i in range(npar)) + " ", real=True)
    f = problem.residual_for(sp)(tuple(x), tuple(p))
    if len(f) != d:
        raise ValueError(f"{problem.name}: residual returned {len(f)} entries for {d} unknowns")
    f = [sp.sympify(fi) for fi in f]
    jac = tuple(tuple(sp.diff(fi, xj) for xj in x) for fi in f)
    pr = kernel_printer()()

    def tup(items):
        items = list(items)
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"

    def source(name: str, body: str) -> str:
        xs = ", ".join(f"_x{i}" for i in range(d)) + ("," if d == 1 else "")
        ps = ", ".join(f"_p{i}" for i in range(npar)) + ("," if npar == 1 else "")
        return f"def {name}(x, p):\n    {xs} = x\n    {ps} = p\n    return {body}\n"

    return NonlinearDerivatives(
        residual_exprs=tuple(f), jac_exprs=jac,
        residual_source=source("residual", tup(pr.doprint(e) for e in f)),
        jac_source=source("jac", tup(tup(pr.doprint(e) for e in row) for row in jac)),
    )


def derivatives(problem: Problem | NonlinearProblem) -> Derivatives | NonlinearDerivatives:
    """The problem's derivatives, derived once per problem (cached on it): ``Derivatives`` (Jacobian
    and time derivative of ``rhs``) for an ODE problem, ``NonlinearDerivatives`` (residual and
    Jacobian) for a nonlinear system."""
    if "derivatives" not in problem._cache:
        derived = derive_nonlinear(problem) if isinstance(problem, NonlinearProblem) else derive(problem)
        problem._cache["derivatives"] = derived
    return problem._cache["derivatives"]
