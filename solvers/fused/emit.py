"""Small helpers for writing generated kernel source: names, tuples, typed constants, LU.

Generated code works on explicit scalar variables (``y0, y1, y2`` for a 3-state problem), so
Numba keeps every value of a trajectory in registers and LLVM can vectorise a loop over the
trajectories of a lane block. Every number in the generated code is a module-level constant
built with the kernel's dtype (``_A_2_1 = _T(0.327)``, ``_T = numpy.float32``): a Python float
literal would be float64 and promote float32 arithmetic to float64.
"""
from __future__ import annotations

import ast
import copy
import math

import numpy as np


def names(prefix: str, n: int) -> list[str]:
    """``[prefix0, prefix1, ...]``: the scalar variables of one vector quantity."""
    return [f"{prefix}{i}" for i in range(n)]


def tup(items) -> str:
    """A Python tuple expression (a 1-tuple keeps its trailing comma)."""
    items = list(items)
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def targets(items) -> str:
    """The left-hand side of a tuple unpacking (``a, b`` or ``a,``)."""
    items = list(items)
    return ", ".join(items) + ("," if len(items) == 1 else "")


class Constants:
    """Typed module-level constants of one generated module, in order of first use."""

    def __init__(self, dtype: str) -> None:
        self.dtype = np.dtype(dtype)
        self._values: dict[str, float] = {}

    def add(self, name: str, value: float) -> str:
        """Register ``_{name} = _T(value)`` and return ``_{name}``; a name is bound once."""
        ident = f"_{name}"
        value = float(value)
        if ident in self._values and not _same(self._values[ident], value):
            raise ValueError(f"constant {ident} bound twice ({self._values[ident]!r}, {value!r})")
        self._values[ident] = value
        return ident

    def source(self) -> list[str]:
        """``_NAME = _T(<exact repr>)`` lines; ``repr`` of a Python float round-trips exactly."""
        out = []
        for ident, v in self._values.items():
            if math.isinf(v):
                out.append(f"{ident} = _T({'-' if v < 0 else ''}math.inf)")
            else:
                out.append(f"{ident} = _T({v!r})")
        return out


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def lincomb(base: str | None, terms: list[tuple[str, str]]) -> str:
    """``base + c1*v1 + c2*v2 ...`` from (coefficient expression, variable) pairs.

    A coefficient expression of ``""`` means 1 (the variable is added as is). With no base the
    sum starts at the first term. Left-to-right evaluation order is kept (it fixes rounding).
    This is the Rosenbrock form (DiffEqGPU's ``gpu_rodas*_perform_step.jl`` adds each
    ``a_ij k_j`` to ``uprev`` in turn, its stages already being increments); explicit RK sums
    use ``solvers.tableaus.rk_update``.
    """
    parts = [] if base is None else [base]
    for coef, var in terms:
        parts.append(var if coef == "" else f"{coef} * {var}")
    if not parts:
        raise ValueError("empty linear combination")
    return " + ".join(parts)


def lu_factor(n: int, w: str, one: str) -> tuple[list[str], list[tuple[int, int, str]], list[str]]:
    """Unrolled LU factorisation with partial pivoting of the n x n matrix ``{w}_{i}_{j}``.

    The matrix variables must already be bound. Returns (lines, swaps, inverse_diagonal):
    after the lines run, ``{w}_{i}_{j}`` hold the unit-lower factor L below the diagonal and
    U on and above it, for the row-permuted matrix; ``swaps`` lists ``(k, i, flag)`` in the
    order the row exchanges were decided (``flag`` a bool variable: rows k and i exchanged);
    ``inverse_diagonal[k]`` names ``1 / U_kk``.

    Pivoting is branch-free (``_sel(c, a, b)`` is ``a if c else b`` in a function of its own,
    a select once LLVM inlines it), so lanes can be vectorised: for each column k, row k is compared
    with every row i > k in turn and exchanged when ``|a_ik| > |a_kk|``, which leaves the
    largest ``|a_ik|`` (the first one, on ties) in the pivot position, as partial pivoting
    requires. Whole rows are exchanged (LAPACK convention), so ``solve`` applies all
    exchanges to the right-hand side first, then the two triangular solves.
    """
    lines: list[str] = []
    swaps: list[tuple[int, int, str]] = []
    inv: list[str] = []
    a = lambda i, j: f"{w}_{i}_{j}"  # noqa: E731
    for k in range(n):
        for i in range(k + 1, n):
            flag = f"{w}_sw_{k}_{i}"
            lines.append(f"{flag} = abs({a(i, k)}) > abs({a(k, k)})")
            for j in range(n):
                lines.append(f"{a(k, j)}, {a(i, j)} = _sel({flag}, {a(i, j)}, {a(k, j)}), "
                             f"_sel({flag}, {a(k, j)}, {a(i, j)})")
            swaps.append((k, i, flag))
        d = f"{w}_inv_{k}"
        lines.append(f"{d} = {one} / {a(k, k)}")
        inv.append(d)
        for i in range(k + 1, n):
            lines.append(f"{a(i, k)} = {a(i, k)} * {d}")
            for j in range(k + 1, n):
                lines.append(f"{a(i, j)} = {a(i, j)} - {a(i, k)} * {a(k, j)}")
    return lines, swaps, inv


def lu_solve(n: int, w: str, swaps, inv: list[str], rhs: list[str], out: str) -> list[str]:
    """Lines solving ``A x = rhs`` with the factors of :func:`lu_factor`; x is ``{out}{i}``."""
    z = names(out, n)
    lines = [f"{targets(z)} = {targets(rhs)}"]
    for k, i, flag in swaps:
        lines.append(f"{z[k]}, {z[i]} = _sel({flag}, {z[i]}, {z[k]}), _sel({flag}, {z[k]}, {z[i]})")
    for i in range(1, n):  # forward: unit lower triangle
        terms = " - ".join(f"{w}_{i}_{j} * {z[j]}" for j in range(i))
        lines.append(f"{z[i]} = {z[i]} - {terms}")
    for i in reversed(range(n)):  # backward: upper triangle
        if i == n - 1:
            lines.append(f"{z[i]} = {z[i]} * {inv[i]}")
        else:
            terms = " - ".join(f"{w}_{i}_{j} * {z[j]}" for j in range(i + 1, n))
            lines.append(f"{z[i]} = ({z[i]} - {terms}) * {inv[i]}")
    return lines


# ================================================================================================
# Textual inlining
# ================================================================================================

def _assigned_names(fn: ast.FunctionDef) -> set[str]:
    out = {a.arg for a in fn.args.args}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return out


class _Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.mapping:
            return ast.copy_location(ast.Name(id=self.mapping[node.id], ctx=node.ctx), node)
        return node


class Inliner:
    """Splices straight-line "snippet" functions into the code that calls them, as source.

    Why: Numba's own ``inline='always'`` works on its IR and made compiling a Rodas kernel
    take over a minute, while LLVM's inliner declines functions as large as a Rodas step, and
    a call left inside the lane loop stops vectorisation. Splicing the step into the loop
    body as source text costs nothing at compile time. (The CUDA kernel is spliced
    completely, rhs included, so it calls no device function: ``numba.cuda.compile_ptx``
    compiles device functions for the current GPU, and there is none on a CPU machine.)

    Each expansion renames the snippet's parameters and locals with a unique prefix
    (``_attempt1_k2_0``), binds the parameters to the call's argument expressions once and
    assigns the returned expression to the call's target. Calls nested inside an expression
    are first hoisted into temporaries (snippets are pure, so order does not matter). A
    snippet is a ``def`` whose body is straight-line code ending in its only ``return``;
    snippets may call snippets added before them.
    """

    def __init__(self) -> None:
        self.snippets: dict[str, ast.FunctionDef] = {}
        self._count = 0

    def add(self, source: str, name: str | None = None) -> str:
        """Register the snippet in ``source`` (as ``name`` if given), its own calls inlined.

        Returns its source after inlining.
        """
        fn = self._parse(source)
        if name is not None:
            fn.name = name
        body = fn.body
        if not body or not isinstance(body[-1], ast.Return) or any(
                isinstance(n, ast.Return) for stmt in body[:-1] for n in ast.walk(stmt)):
            raise ValueError(f"snippet {fn.name} must end in its only return statement")
        if any(isinstance(n, (ast.If, ast.For, ast.While, ast.With, ast.Try)) for n in ast.walk(fn)):
            raise ValueError(f"snippet {fn.name} must be straight-line code")
        fn.body = self._expand(body)
        self.snippets[fn.name] = fn
        return ast.unparse(fn)

    def expand(self, source: str) -> str:
        """``source`` (one function) with every call to a registered snippet inlined."""
        fn = self._parse(source)
        fn.body = self._expand(fn.body)
        return ast.unparse(fn)

    @staticmethod
    def _parse(source: str) -> ast.FunctionDef:
        tree = ast.parse(source)
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
            raise ValueError("expected the source of exactly one function")
        return tree.body[0]

    def _is_snippet_call(self, node: ast.AST) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in self.snippets)

    def _expand(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for st in stmts:
            if isinstance(st, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Expr)):
                pre: list[ast.stmt] = []
                if isinstance(st, ast.Assign) and len(st.targets) == 1 and self._is_snippet_call(st.value):
                    call = st.value
                    call.args = [self._hoist(a, pre) for a in call.args]
                    out += pre + self._splice(self.snippets[call.func.id], call, st.targets[0])
                    continue
                if st.value is not None:
                    st.value = self._hoist(st.value, pre)
                out += pre + [st]
                continue
            for field in ("test", "iter"):
                expr = getattr(st, field, None)
                if expr is not None and any(self._is_snippet_call(n) for n in ast.walk(expr)):
                    raise ValueError("snippet calls in loop or branch conditions are not supported")
            for field in ("body", "orelse"):
                if isinstance(getattr(st, field, None), list):
                    setattr(st, field, self._expand(getattr(st, field)))
            out.append(st)
        return out

    def _hoist(self, expr: ast.expr, pre: list[ast.stmt]) -> ast.expr:
        """Replace snippet calls inside ``expr`` (innermost first) by temporaries set in ``pre``."""
        inliner = self

        class Hoist(ast.NodeTransformer):
            def visit_Call(self, node: ast.Call) -> ast.expr:
                self.generic_visit(node)
                if not inliner._is_snippet_call(node):
                    return node
                inliner._count += 1
                tmp = f"_t{inliner._count}"
                pre.extend(inliner._splice(inliner.snippets[node.func.id], node,
                                           ast.Name(id=tmp, ctx=ast.Store())))
                return ast.Name(id=tmp, ctx=ast.Load())

        return Hoist().visit(expr)

    def _splice(self, fn: ast.FunctionDef, call: ast.Call, target: ast.expr) -> list[ast.stmt]:
        params = [a.arg for a in fn.args.args]
        if call.keywords or len(call.args) != len(params):
            raise ValueError(f"call of snippet {fn.name} needs exactly {len(params)} positional arguments")
        self._count += 1
        prefix = f"_{fn.name.lstrip('_')}{self._count}_"
        renamer = _Renamer({name: prefix + name for name in _assigned_names(fn)})
        out: list[ast.stmt] = [
            ast.Assign(targets=[ast.Name(id=prefix + p, ctx=ast.Store())], value=arg, lineno=0)
            for p, arg in zip(params, call.args)
        ]
        for st in fn.body[:-1]:
            out.append(renamer.visit(copy.deepcopy(st)))
        ret = renamer.visit(copy.deepcopy(fn.body[-1]))
        out.append(ast.Assign(targets=[target], value=ret.value, lineno=0))
        return [ast.fix_missing_locations(s) for s in out]


def free_globals(source: str) -> list[str]:
    """Names a function reads but never binds (its globals and builtins), sorted."""
    fn = Inliner._parse(source)
    bound = _assigned_names(fn)
    return sorted({node.id for node in ast.walk(fn)
                   if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound})


# ================================================================================================
# Interleaving lane loops
# ================================================================================================

class _LaneCopy(ast.NodeTransformer):
    """Second copy of a loop body: locals get ``suffix``, the lane index becomes ``lane2``."""

    def __init__(self, local: set[str], index: str, lane2: str, suffix: str) -> None:
        self.local, self.index, self.lane2, self.suffix = local, index, lane2, suffix

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == self.index:
            return ast.copy_location(ast.Name(id=self.lane2, ctx=node.ctx), node)
        if node.id in self.local:
            return ast.copy_location(ast.Name(id=node.id + self.suffix, ctx=node.ctx), node)
        return node


def interleave_lane_loops(source: str, marker: str, part: str, keep: tuple[str, ...] = (), ways: int = 2) -> str:
    """Rewrite every ``for l in range(<marker>):`` loop of ``source`` (one function) so that
    each iteration runs the body for the ``ways`` lanes ``l``, ``l + <part>``, ``l + 2*<part>``,
    ..., statement by statement interleaved, over ``range(<part>)`` (``<part>`` names the
    lane count divided by ``ways``). Copy m of the body (m = 2..ways) has lane ``l_m`` and its
    locals suffixed ``__m``.

    Why: a lane loop of an adaptive step is one long dependency chain per vector of lanes
    (stages, error norm, controller), and its body is longer than the core's reorder window,
    so consecutive vector iterations barely overlap and the chain's latency is not hidden.
    Independent chains, interleaved in program order, give the core more independent work
    within the same window; and each constant a statement loads serves every copy of it in
    turn (with AVX2's 16 registers a fixed Tsit5 step reloads its tableau constants from the
    stack: four copies load each once for four vectors of lanes). The body must be
    straight-line assignments; names in ``keep`` (loop-carried reductions such as ``anyrun``)
    are shared by all copies. The result computes exactly what the plain loop computes, lane
    by lane.
    """
    if ways < 2:
        return source
    fn = Inliner._parse(source)

    class Rewrite(ast.NodeTransformer):
        def visit_For(self, node: ast.For) -> ast.AST:
            self.generic_visit(node)
            it = node.iter
            if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                    and len(it.args) == 1 and isinstance(it.args[0], ast.Name) and it.args[0].id == marker):
                return node
            if not all(isinstance(s, (ast.Assign, ast.AugAssign)) for s in node.body):
                raise ValueError("interleaved lane loops must hold straight-line assignments only")
            index = node.target.id
            local = set()
            for st in node.body:
                for t in (st.targets if isinstance(st, ast.Assign) else [st.target]):
                    elts = t.elts if isinstance(t, ast.Tuple) else [t]
                    local |= {e.id for e in elts if isinstance(e, ast.Name)}  # not S in S[r, l] = ...
            local -= set(keep)
            copies = [_LaneCopy(local, index, f"{index}_{m}", f"__{m}") for m in range(2, ways + 1)]
            body = [ast.parse(f"{index}_{m} = {index} + {part}" if m == 2 else
                              f"{index}_{m} = {index} + {m - 1} * {part}").body[0] for m in range(2, ways + 1)]
            for st in node.body:
                body.append(st)
                body += [c.visit(copy.deepcopy(st)) for c in copies]
            node.body = body
            node.iter = ast.Call(func=ast.Name(id="range", ctx=ast.Load()),
                                 args=[ast.Name(id=part, ctx=ast.Load())], keywords=[])
            return ast.fix_missing_locations(node)

    fn = Rewrite().visit(fn)
    return ast.unparse(fn)
