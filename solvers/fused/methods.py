"""Per-method code emitters: one step of each integrator as straight-line generated Python.

Each method writes up to four device functions for one trajectory, on explicit scalars
(``y0..y{n-1}`` the state, ``p0..`` the parameters; see ``solvers.fused.emit``):

``_step(y.., p.., t, h) -> yn..``
    one fixed step.
``_init(y.., p.., t) -> x..``
    the values an adaptive method carries between steps besides the state (the FSAL
    derivative ``f(y, t)`` of Tsit5 and Rosenbrock23; nothing for Rodas).
``_attempt(y.., x.., p.., t, h, rtol, atol) -> (yn.., xn.., ssq, dense..)``
    one adaptive step attempt: candidate state, candidate carried values, ``ssq`` (n times
    DiffEqGPU's squared error norm ``EEst^2``: ``norm_lines``) and, where the method has dense output, the stage values it needs.
``_dense(y.., dense.., xn.., h, th) -> ys..``
    the state at ``t + th*h`` inside an accepted step (the interpolants of Tsit5,
    Rosenbrock23, Rodas4 and Rodas5P; ``dense`` are the values the attempt returned for it,
    ``xn`` the new carried values).

Every coefficient comes from ``solvers.tableaus`` (never re-typed here) and enters the
generated source as a typed constant.
"""
from __future__ import annotations

from dataclasses import dataclass

from solvers.fused.emit import Constants, lincomb, lu_factor, lu_solve, names, targets, tup
from solvers.tableaus import (
    ROSENBROCK23, TSIT5_DENSE, ExplicitRK, Rosenbrock, Rosenbrock23Constants, Src, SrcOps, error_scales,
    get_tableau, rk_update, scaled_ssq, srcs, weighted_sum,
)


@dataclass(frozen=True)
class Shape:
    """Sizes of the problem a kernel is generated for."""

    n: int          # states
    n_params: int   # parameters
    tgrad_zero: bool = True  # the time derivative df/dt is identically zero (autonomous)


def _rhs_call(out: list[str], args: list[str], sh: Shape, t: str) -> str:
    return f"{targets(out)} = rhs({tup(args)}, {tup(names('p', sh.n_params))}, {t})"


def _time(C: Constants, t: str, h: str, c: float, name: str) -> str:
    """``t + c*h`` with the trivial nodes written exactly (c = 0: t; c = 1: t + h)."""
    if c == 0.0:
        return t
    if c == 1.0:
        return f"{t} + {h}"
    return f"{t} + {h} * {C.add(name, c)}"


def norm_lines(C: Constants, err: list[str], y: list[str], yn: list[str]) -> list[str]:
    """``ssq``: n times DiffEqGPU's ``EEst^2``, by ``solvers.tableaus.error_scales`` and
    ``scaled_ssq`` (no square root; the controller compares ``ssq`` with ``_NSTATES``)."""
    sc = error_scales(srcs(y), srcs(yn), Src("atol"), Src("rtol"), py_ops())
    lines = [f"sc{i} = {e}" for i, e in enumerate(sc)]
    lines.append(f"ssq = {scaled_ssq(srcs(err), srcs(names('sc', len(err))), Src(C.add('ONE', 1.0)))}")
    return lines


def py_ops(lines: list[str] | None = None) -> SrcOps:
    """``solvers.tableaus`` operations spelled as the generated Python (spliced snippets)."""
    return SrcOps("min", "max", "abs", "_log", "_exp", where="_sel", lines=lines)


def _function(header: str, body: list[str]) -> list[str]:
    return [header] + ["    " + line for line in body] + [""]


class MethodCode:
    """Interface of a method's emitter (see the module docstring)."""

    name: str
    order: int                 # alg_order, for DiffEqGPU's order-scaled controller
    init_evals: int = 0        # f evaluations of _init
    attempt_evals: int = 0     # f evaluations per adaptive attempt
    step_evals: int = 0        # f evaluations per fixed step
    has_dense: bool = False
    uses_jacobian: bool = False  # Rosenbrock methods call jac (and tgrad) every attempt

    def extras(self, sh: Shape) -> list[str]:
        return []

    def dense_values(self, sh: Shape) -> list[str]:
        return []

    def emit_step(self, C: Constants, sh: Shape) -> list[str]:
        raise NotImplementedError

    def emit_init(self, C: Constants, sh: Shape) -> list[str]:
        return []

    def emit_attempt(self, C: Constants, sh: Shape) -> list[str]:
        raise NotImplementedError

    def emit_dense(self, C: Constants, sh: Shape) -> list[str]:
        raise NotImplementedError


# =================================================================================================
class ExplicitRKCode(MethodCode):
    """Any ``ExplicitRK`` tableau; adaptive mode needs an FSAL embedded pair (Tsit5)."""

    def __init__(self, tab: ExplicitRK) -> None:
        self.tab = tab
        self.name = tab.name
        self.order = tab.order
        s = tab.stages
        # A fixed FSAL step needs only the stages before the one at u_new (b[-1] == 0).
        self.step_stages = s - 1 if tab.fsal else s
        self.step_evals = self.step_stages
        self.adaptive = tab.adaptive and tab.fsal
        if self.adaptive:
            self.init_evals = 1
            self.attempt_evals = s - 1
        self.has_dense = tab.name == "tsit5"

    def _sum(self, C: Constants, sh: Shape, base: str | None, row, name: str, ks: int) -> list[Src]:
        """Per state, ``solvers.tableaus.rk_update`` of ``base`` with tableau row ``row`` over
        stages ``k1..k{ks}`` (coefficient j a constant ``_{name}_{j}``), as source text."""
        const = lambda j, c: Src(C.add(f"{name}_{j}", c))  # noqa: E731
        out = []
        for s in range(sh.n):
            ks_ = srcs(f"k{j + 1}_{s}" for j in range(ks))
            out.append(rk_update(None if base is None else Src(f"{base}{s}"), Src("h"), row[:ks], ks_, const))
        return out

    def _stage_lines(self, C: Constants, sh: Shape, stages: range) -> list[str]:
        """Stages i in ``stages`` (0-based, i >= 1), each ``k{i+1} = f(y + h*(sum a_ij k_j))``."""
        tab, lines = self.tab, []
        for i in stages:
            args = self._sum(C, sh, "y", tab.a[i], f"a_{i}", i)
            lines.append(_rhs_call(names(f"k{i + 1}_", sh.n), args, sh, _time(C, "t", "h", tab.c[i], f"c_{i}")))
        return lines

    def _solution_lines(self, C: Constants, sh: Shape, stages: int) -> list[str]:
        ys = self._sum(C, sh, "y", self.tab.b, "b", stages)
        return [f"yn{s} = {ys[s]}" for s in range(sh.n)]

    def emit_step(self, C, sh):
        y, p = names("y", sh.n), names("p", sh.n_params)
        body = [_rhs_call(names("k1_", sh.n), y, sh, "t")]
        body += self._stage_lines(C, sh, range(1, self.step_stages))
        body += self._solution_lines(C, sh, self.step_stages)
        body.append(f"return {tup(names('yn', sh.n))}")
        return _function(f"def _step({', '.join(y + p)}, t, h):", body)

    def extras(self, sh):
        return names("x", sh.n) if self.adaptive else []

    def dense_values(self, sh):
        """The attempt's stages ``k1..k{s-1}``, for ``_dense``."""
        if not self.has_dense:
            return []
        return [f"k{i + 1}_{s}" for i in range(self.tab.stages - 1) for s in range(sh.n)]

    def emit_init(self, C, sh):
        y, p = names("y", sh.n), names("p", sh.n_params)
        body = [_rhs_call(names("k1_", sh.n), y, sh, "t"), f"return {tup(names('k1_', sh.n))}"]
        return _function(f"def _init({', '.join(y + p)}, t):", body)

    def emit_attempt(self, C, sh):
        """One attempt: stages, candidate ``yn`` (the FSAL stage's argument), ``k_s = f(yn)``,
        the error estimate ``h*(sum btilde_i k_i)`` and its norm, sums by ``rk_update``."""
        if not self.adaptive:
            raise ValueError(f"{self.name} has no adaptive form (needs an FSAL embedded pair)")
        tab, s_, n = self.tab, self.tab.stages, sh.n
        y, p, k1 = names("y", n), names("p", sh.n_params), names("k1_", n)
        body = self._stage_lines(C, sh, range(1, s_ - 1))
        # FSAL: the last stage is evaluated at the new solution, the argument of that stage.
        yn = self._sum(C, sh, "y", tab.a[s_ - 1], f"a_{s_ - 1}", s_ - 1)
        body += [f"yn{s} = {yn[s]}" for s in range(n)]
        body.append(_rhs_call(names(f"k{s_}_", n), names("yn", n), sh,
                              _time(C, "t", "h", tab.c[s_ - 1], f"c_{s_ - 1}")))
        err = self._sum(C, sh, None, tab.btilde, "e", s_)
        body += [f"err{s} = {err[s]}" for s in range(n)]
        body += norm_lines(C, names("err", n), y, names("yn", n))
        out = names("yn", n) + names(f"k{s_}_", n) + ["ssq"] + self.dense_values(sh)
        body.append(f"return {tup(out)}")
        return _function(f"def _attempt({', '.join(y + k1 + p)}, t, h, rtol, atol):", body)

    def emit_dense(self, C, sh):
        """Tsit5's interpolant (``solvers.tableaus.Tsit5Dense``), weights in Horner form in
        ``th``: ``y + h*(sum_i b_i(th) k_i)`` (``rk_update``) from the attempt's stages and the
        new FSAL stage ``k_s``."""
        s_ = self.tab.stages
        y = names("y", sh.n)
        ks = [names(f"k{i + 1}_", sh.n) for i in range(s_)]
        body = []
        for i, r in enumerate(TSIT5_DENSE.r):
            inner = C.add(f"r_{i}_3", r[3])
            for m in (2, 1):
                inner = f"{C.add(f'r_{i}_{m}', r[m])} + th * ({inner})"
            # r[i][0] is 0 for i >= 1: th * (0 + th*...) equals th * (th*...) exactly.
            inner = f"th * ({inner})" if r[0] == 0.0 else f"{C.add(f'r_{i}_0', r[0])} + th * ({inner})"
            body.append(f"bw_{i} = th * ({inner})")
        weights = srcs(f"bw_{i}" for i in range(s_))
        out = [rk_update(Src(y[s]), Src("h"), weights, srcs(k[s] for k in ks)) for s in range(sh.n)]
        body.append(f"return {tup(out)}")
        args = y + [v for k in ks[:-1] for v in k] + ks[-1]
        return _function(f"def _dense({', '.join(args)}, h, th):", body)


# =================================================================================================
def _jacobian_lines(sh: Shape) -> list[str]:
    y, p = tup(names("y", sh.n)), tup(names("p", sh.n_params))
    lines = [f"J = jac({y}, {p}, t)"]
    for i in range(sh.n):
        lines.append(f"{targets(names(f'j_{i}_', sh.n))} = J[{i}]")
    if not sh.tgrad_zero:
        lines.append(f"{targets(names('tg', sh.n))} = tgrad({y}, {p}, t)")
    return lines


class RodasCode(MethodCode):
    """A ``Rosenbrock`` tableau (Rodas4, Rodas5P) in the form of its docstring:

    ``W = I/(h gamma) - J``, ``W k_i = f(U_i, t + c_i h) + h d_i T + sum_j (C_ij / h) k_j``.
    """

    def __init__(self, tab: Rosenbrock) -> None:
        self.tab = tab
        self.name = tab.name
        self.order = tab.order
        self.uses_jacobian = True
        self.attempt_evals = tab.stages
        self.step_evals = tab.stages
        s = tab.stages
        self.stiffly_accurate = (tuple(tab.b) == tuple(tab.a[s - 1]) + (1.0,)
                                 and tuple(tab.btilde) == (0.0,) * (s - 1) + (1.0,))
        self.has_dense = bool(tab.H)

    def dense_values(self, sh):
        """The candidate (as ``dy``) and the stages ``k1..ks``, for ``_dense``."""
        return names("dy", sh.n) + [f"k{i + 1}_{s}" for i in range(self.tab.stages) for s in range(sh.n)]

    def emit_dense(self, C, sh):
        """The Rodas interpolant of ``solvers.tableaus.Rosenbrock`` (OrdinaryDiffEq's and
        DiffEqGPU's): with ``K_m = sum_i H_mi k_i`` and ``th1 = 1 - th``,
        ``th1*y + th*(yn + th1*(K_1 + th*(K_2 [+ th*K_3])))``."""
        tab, n = self.tab, sh.n
        y, dy = names("y", n), names("dy", n)
        ks = [names(f"k{i + 1}_", n) for i in range(tab.stages)]
        one = C.add("ONE", 1.0)
        body = [f"th1 = {one} - th"]
        out = []
        for s in range(n):
            for m, row in enumerate(tab.H):
                const = lambda j, c, m=m: Src(C.add(f"H_{m}_{j}", c))  # noqa: E731
                body.append(f"K{m}_{s} = {weighted_sum(row, srcs(k[s] for k in ks), const)}")
            inner = f"K{len(tab.H) - 1}_{s}"
            for m in reversed(range(len(tab.H) - 1)):
                inner = f"K{m}_{s} + th * ({inner})"
            out.append(f"th1 * {y[s]} + th * ({dy[s]} + th1 * ({inner}))")
        body.append(f"return {tup(out)}")
        args = y + self.dense_values(sh)
        return _function(f"def _dense({', '.join(args)}, h, th):", body)

    def _stages(self, C: Constants, sh: Shape) -> list[str]:
        tab, n = self.tab, sh.n
        one = C.add("ONE", 1.0)
        lines = _jacobian_lines(sh)
        lines.append(f"inv_h = {one} / h")
        lines.append(f"ihg = {one} / (h * {C.add('gamma', tab.gamma)})")
        for i in range(n):
            for j in range(n):
                lines.append(f"w_{i}_{j} = " + (f"ihg - j_{i}_{j}" if i == j else f"-j_{i}_{j}"))
        lu, swaps, inv = lu_factor(n, "w", one)
        lines += lu
        for i in range(tab.stages):
            u_terms = [(C.add(f"a_{i}_{j}", a), f"k{j + 1}_") for j, a in enumerate(tab.a[i]) if a != 0.0]
            stage_u = []
            for s in range(n):
                lines.append(f"U{i}_{s} = " + lincomb(f"y{s}", [(c, f"{k}{s}") for c, k in u_terms]))
                stage_u.append(f"U{i}_{s}")
            lines.append(_rhs_call(names(f"F{i}_", n), stage_u, sh, _time(C, "t", "h", tab.c[i], f"c_{i}")))
            c_terms = []
            for j, cij in enumerate(tab.C[i]):
                if cij != 0.0:
                    lines.append(f"hc_{i}_{j} = {C.add(f'C_{i}_{j}', cij)} * inv_h")
                    c_terms.append((f"hc_{i}_{j}", j))
            use_t = not sh.tgrad_zero and tab.d[i] != 0.0
            if use_t:
                lines.append(f"hd_{i} = h * {C.add(f'd_{i}', tab.d[i])}")
            rhs = []
            for s in range(n):
                terms = ([(f"hd_{i}", f"tg{s}")] if use_t else []) + [(hc, f"k{j + 1}_{s}") for hc, j in c_terms]
                lines.append(f"b{i}_{s} = " + lincomb(f"F{i}_{s}", terms))
                rhs.append(f"b{i}_{s}")
            lines += lu_solve(n, "w", swaps, inv, rhs, f"k{i + 1}_")
        s_ = tab.stages
        for s in range(n):
            if self.stiffly_accurate:
                lines.append(f"yn{s} = U{s_ - 1}_{s} + k{s_}_{s}")
            else:
                lines.append(f"yn{s} = " + lincomb(f"y{s}", [(C.add(f"b_{j}", b), f"k{j + 1}_{s}")
                                                            for j, b in enumerate(tab.b) if b != 0.0]))
        return lines

    def emit_step(self, C, sh):
        y, p = names("y", sh.n), names("p", sh.n_params)
        body = self._stages(C, sh) + [f"return {tup(names('yn', sh.n))}"]
        return _function(f"def _step({', '.join(y + p)}, t, h):", body)

    def emit_attempt(self, C, sh):
        y, p = names("y", sh.n), names("p", sh.n_params)
        body = self._stages(C, sh)
        err = []
        for s in range(sh.n):
            if self.stiffly_accurate:
                err.append(f"k{self.tab.stages}_{s}")
            else:
                body.append(f"err{s} = " + lincomb(None, [(C.add(f"e_{j}", e), f"k{j + 1}_{s}")
                                                         for j, e in enumerate(self.tab.btilde) if e != 0.0]))
                err.append(f"err{s}")
        body += norm_lines(C, err, y, names("yn", sh.n))
        body += [f"dy{s} = yn{s}" for s in range(sh.n)]
        body.append(f"return {tup(names('yn', sh.n) + ['ssq'] + self.dense_values(sh))}")
        return _function(f"def _attempt({', '.join(y + p)}, t, h, rtol, atol):", body)


# =================================================================================================
class Rosenbrock23Code(MethodCode):
    """Shampine-Reichelt's Rosenbrock23, exactly the steps of ``Rosenbrock23Constants``."""

    def __init__(self, k: Rosenbrock23Constants = ROSENBROCK23) -> None:
        self.k = k
        self.name = k.name
        self.order = k.order
        self.uses_jacobian = True
        self.init_evals = 1
        self.attempt_evals = 2     # f1 and f2; f0 is the previous step's f2 (FSAL)
        self.step_evals = 2        # f0 and f1 (a fixed step needs no f2)
        self.has_dense = True

    def extras(self, sh):
        return names("x", sh.n)

    def dense_values(self, sh):
        """The stages ``k1``, ``k2``, for ``_dense``."""
        return names("k1_", sh.n) + names("k2_", sh.n)

    def emit_dense(self, C, sh):
        """Shampine-Reichelt's interpolant (OrdinaryDiffEq's, DiffEqGPU's): with
        ``c1 = th (1 - th) / (1 - 2d)`` and ``c2 = th (th - 2d) / (1 - 2d)``,
        ``y + h*(c1 k1 + c2 k2)`` (``rk_update``)."""
        n, k = sh.n, self.k
        y = names("y", n)
        one, two = C.add("ONE", 1.0), C.add("TWO", 2.0)
        d = C.add("d", k.d)
        body = [f"den = {one} / ({one} - {two} * {d})",
                f"c1 = th * ({one} - th) * den", f"c2 = th * (th - {two} * {d}) * den"]
        out = [rk_update(Src(y[s]), Src("h"), srcs(["c1", "c2"]), srcs([f"k1_{s}", f"k2_{s}"]))
               for s in range(n)]
        body.append(f"return {tup(out)}")
        args = y + self.dense_values(sh) + names("xn", n)
        return _function(f"def _dense({', '.join(args)}, h, th):", body)

    def _solution(self, C: Constants, sh: Shape, f0: list[str]) -> list[str]:
        n, k = sh.n, self.k
        one = C.add("ONE", 1.0)
        lines = _jacobian_lines(sh)
        lines.append(f"dtd = h * {C.add('d', k.d)}")
        for i in range(n):
            for j in range(n):
                lines.append(f"w_{i}_{j} = " + (f"{one} - dtd * j_{i}_{j}" if i == j else f"-(dtd * j_{i}_{j})"))
        lu, self._swaps, self._inv = lu_factor(n, "w", one)
        lines += lu
        lines += lu_solve(n, "w", self._swaps, self._inv,
                          [f0[s] if sh.tgrad_zero else f"{f0[s]} + dtd * tg{s}" for s in range(n)], "k1_")
        half = C.add("HALF", 0.5)
        lines.append(f"hh = h * {half}")
        lines.append(_rhs_call(names("f1_", n), [f"y{s} + hh * k1_{s}" for s in range(n)], sh, "t + hh"))
        lines += lu_solve(n, "w", self._swaps, self._inv, [f"f1_{s} - k1_{s}" for s in range(n)], "z2_")
        for s in range(n):
            lines.append(f"k2_{s} = z2_{s} + k1_{s}")
        for s in range(n):
            lines.append(f"yn{s} = y{s} + h * k2_{s}")
        return lines

    def emit_step(self, C, sh):
        y, p = names("y", sh.n), names("p", sh.n_params)
        body = [_rhs_call(names("f0_", sh.n), y, sh, "t")]
        body += self._solution(C, sh, names("f0_", sh.n))
        body.append(f"return {tup(names('yn', sh.n))}")
        return _function(f"def _step({', '.join(y + p)}, t, h):", body)

    def emit_init(self, C, sh):
        y, p = names("y", sh.n), names("p", sh.n_params)
        body = [_rhs_call(names("f0_", sh.n), y, sh, "t"), f"return {tup(names('f0_', sh.n))}"]
        return _function(f"def _init({', '.join(y + p)}, t):", body)

    def emit_attempt(self, C, sh):
        n, k = sh.n, self.k
        y, p, f0 = names("y", n), names("p", sh.n_params), names("f0_", n)
        body = self._solution(C, sh, f0)
        body.append(_rhs_call(names("f2_", n), names("yn", n), sh, "t + h"))
        e32, two = C.add("e32", k.e32), C.add("TWO", 2.0)
        if not sh.tgrad_zero:
            body.append(f"hk3 = {C.add('k3T', k.k3_T_coeff)} * h")
        rhs3 = []
        for s in range(n):
            expr = f"f2_{s} - {e32} * (k2_{s} - f1_{s}) - {two} * (k1_{s} - f0_{s})"
            if not sh.tgrad_zero:
                expr += f" + hk3 * tg{s}"
            rhs3.append(expr)
        body += lu_solve(n, "w", self._swaps, self._inv, rhs3, "k3_")
        body.append(f"h6 = h / {C.add('SIX', 6.0)}")
        for s in range(n):
            body.append(f"err{s} = h6 * (k1_{s} - {two} * k2_{s} + k3_{s})")
        body += norm_lines(C, names("err", n), y, names("yn", n))
        body.append(f"return {tup(names('yn', n) + names('f2_', n) + ['ssq'] + self.dense_values(sh))}")
        return _function(f"def _attempt({', '.join(y + f0 + p)}, t, h, rtol, atol):", body)


# =================================================================================================
def method_code(method: str) -> MethodCode:
    """The emitter for ``method`` (a name of ``solvers.tableaus.METHODS``)."""
    tab = get_tableau(method)
    if isinstance(tab, ExplicitRK):
        return ExplicitRKCode(tab)
    if isinstance(tab, Rosenbrock):
        return RodasCode(tab)
    if isinstance(tab, Rosenbrock23Constants):
        return Rosenbrock23Code(tab)
    raise ValueError(f"no fused kernel for method {method!r}")
