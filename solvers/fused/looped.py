"""The fused kernel for large systems: state and stages in local arrays, loops over the state.

The default generator (``solvers.fused.codegen``) writes every state component and every stage
as its own scalar variable and splices the right-hand side into every stage: code of size
O(d x stages), ideal while it fits the registers (one thread's whole state in registers is the
fused design's point), but compile time and code size grow with d and past a few dozen states
the values spill anyway. From ``LOOPED_MIN_STATES`` states on, the generator switches to this
"looped" layout (same ``KERNEL_ARGS``, same algorithm, same controller):

* one trajectory's state ``y``, stage argument ``w`` and stages ``K[j]`` are local arrays
  (``np.empty`` in a CPU kernel, ``cuda.local.array`` in a CUDA thread);
* the stages are a loop over the tableau's rows (coefficients in constant arrays), so the
  right-hand side is spliced **once**, in its "store form": the problem's component-form
  source with ``x_k`` read from ``w[k]`` and component k written to ``K[j, k]``
  (:func:`store_form`; the same source, translated, never re-written by hand);
* the linear combinations are loops over the state (vectorised by LLVM on the CPU), one branch
  per stage holding that stage's ``solvers.tableaus.rk_update`` sum.

Code size is O(d), not O(d x stages). The CPU kernel runs one trajectory per ``prange``
iteration (the state loops are its vector dimension, not lanes of trajectories); ``solve_lanes``
and ``solve_serial`` are the same kernel here. The CUDA kernel is one thread per trajectory, its
arrays in local memory (cached in L1/L2: exactly the spill the unrolled layout would suffer).

Supported: explicit RK methods (fixed step), FSAL embedded pairs (adaptive, DiffEqGPU's PI
controller and error norm), final state only. ``unsupported_reason`` says why otherwise.
"""
from __future__ import annotations

import ast
import re

import numpy as np

from problems.registry import get_problem
from solvers.base import Status
from solvers.fused.assemble import (
    ARGS, Parts, controller_for, controller_source, cuda_helper_snippets, indent_lines, join_lines,
    log_exp_source, module_header, rhs_source, snap_constant,
)
from solvers.fused.emit import Constants, Inliner
from solvers.fused.methods import Shape, method_code
from solvers.tableaus import ExplicitRK, Src, get_tableau, rk_update, srcs

#: From this many states on, fused kernels use the looped layout. Measured (CPU, Lorenz-96, see
#: docs/sizes.md): compile time of the unrolled kernels grows ~linearly with d (adaptive lane
#: kernel: ~30 s at d = 8 on the 2-core machine), the looped one's stays ~flat.
LOOPED_MIN_STATES = 16


def uses_looped(prob) -> bool:
    """Whether fused kernels of ``prob`` are generated in the looped layout."""
    return prob.n_states >= LOOPED_MIN_STATES


def unsupported_reason(prob, method: str, mode: str, save: str) -> str | None:
    """Why the looped layout cannot serve this solve (None if it can)."""
    if not uses_looped(prob):
        return None
    tab = get_tableau(method)
    if not isinstance(tab, ExplicitRK):
        return (f"{prob.n_states} states: the fused kernel's looped layout (>= {LOOPED_MIN_STATES} "
                f"states) has explicit Runge-Kutta methods only, not {method}")
    if mode == "adaptive" and not (tab.fsal and tab.btilde is not None):
        return f"{method} has no adaptive form (needs an FSAL embedded pair)"
    if save != "final":
        return (f"{prob.n_states} states: the fused kernel's looped layout saves the final state "
                f"only (saveat is not implemented there)")
    return None


# ================================================================================================
# The right-hand side's store form
# ================================================================================================

def store_form(rhs_source: str, w: str, out: str, params: list[str], t: str, prefix: str = "_r_"
               ) -> list[str]:
    """Statements computing the component-form rhs into ``out.format(k=k)`` (e.g. ``K[j, {k}]``).

    ``rhs_source`` is one ``def rhs(u, p, t)`` in the zoo's convention (``problems.core``):
    tuple unpacking of ``u`` and ``p``, straight-line assignments, one ``return`` of a tuple.
    Names unpacked from ``u`` become ``w[k]``, from ``p`` the scalars ``params[k]``, ``t``
    becomes ``t``; other locals get ``prefix``; the return tuple becomes ``out_k = expr_k``.
    """
    fn = ast.parse(rhs_source).body[0]
    if not isinstance(fn, ast.FunctionDef) or len(fn.args.args) != 3:
        raise ValueError("store_form needs one function rhs(u, p, t)")
    u_arg, p_arg, t_arg = (a.arg for a in fn.args.args)
    subst: dict[str, ast.expr] = {t_arg: ast.Name(id=t, ctx=ast.Load())}
    lines: list[str] = []
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        body = body[1:]  # docstring
    for st in body[:-1]:
        if (isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.value, ast.Name)
                and st.value.id in (u_arg, p_arg)):
            tgt = st.targets[0]
            elts = tgt.elts if isinstance(tgt, (ast.Tuple, ast.List)) else None
            if elts is None or not all(isinstance(e, ast.Name) for e in elts):
                raise ValueError("store_form: unpack u and p into plain names")
            for k, e in enumerate(elts):
                subst[e.id] = (ast.Subscript(value=ast.Name(id=w, ctx=ast.Load()),
                                             slice=ast.Constant(k), ctx=ast.Load())
                               if st.value.id == u_arg else ast.Name(id=params[k], ctx=ast.Load()))
            continue
        if not isinstance(st, ast.Assign):
            raise ValueError("store_form: the rhs must be straight-line assignments")
        for node in ast.walk(st):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                subst.setdefault(node.id, ast.Name(id=prefix + node.id, ctx=ast.Load()))
        lines.append(ast.unparse(_Subst(subst).visit(st)))
    ret = body[-1]
    if not isinstance(ret, ast.Return) or not isinstance(ret.value, ast.Tuple):
        raise ValueError("store_form: the rhs must end in `return (expr, ...)`")
    for k, e in enumerate(ret.value.elts):
        lines.append(f"{out.format(k=k)} = {ast.unparse(_Subst(subst).visit(e))}")
    return lines


class _Subst(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, ast.expr]) -> None:
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in self.mapping:
            new = self.mapping[node.id]
            if isinstance(node.ctx, ast.Store):
                return ast.copy_location(ast.Name(id=new.id, ctx=ast.Store()), node)
            return ast.copy_location(_copy(new), node)
        return node


def _copy(e: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(e), mode="eval").body


# ================================================================================================
# The trajectory body
# ================================================================================================

def _arrays(tab, mode: str) -> dict[str, np.ndarray]:
    """Tableau arrays (float64; the module casts them to the kernel dtype)."""
    s = tab.stages
    a = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        a[i, :len(row)] = row
    out = {"_TA": a, "_TC": np.asarray(tab.c, dtype=float), "_TB": np.asarray(tab.b, dtype=float)}
    if mode == "adaptive":
        out["_TE"] = np.asarray(tab.btilde, dtype=float)
    return out


def cyclic_stencil(rhs_source: str, d: int) -> str | None:
    """The rhs as one loop body over ``s`` when its components are cyclic shifts of one formula.

    Component i of ``rhs_source`` (zoo convention) is rewritten with every state ``x_k`` as
    ``x[offset]``, ``offset = k - i`` (centred mod d); if every component gives the same
    template (a lattice model such as Lorenz-96), the template is returned with ``x[offset]``
    spelled ``w[(s + offset + d) % d]``, else None. Why: Numba spends ~2 ms per statement
    compiling, so d straight-line statements take minutes at d = 1024; one loop does not.
    """
    fn = ast.parse(rhs_source).body[0]
    body = [st for st in fn.body if not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant))]
    u_arg, p_arg = fn.args.args[0].arg, fn.args.args[1].arg
    states: dict[str, int] = {}
    for st in body[:-1]:
        if not (isinstance(st, ast.Assign) and isinstance(st.value, ast.Name)
                and st.value.id in (u_arg, p_arg) and isinstance(st.targets[0], ast.Tuple)):
            return None  # intermediates: keep the straight-line store form
        if st.value.id == u_arg:
            states = {e.id: k for k, e in enumerate(st.targets[0].elts)}
    ret = body[-1]
    if not (isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple)) or len(ret.value.elts) != d:
        return None
    templates = set()
    for i, e in enumerate(ret.value.elts):
        class Rel(ast.NodeTransformer):
            def visit_Name(self, node):
                if node.id in states:
                    off = (states[node.id] - i + d // 2) % d - d // 2
                    return ast.Name(id=f"_X_{off + d}", ctx=ast.Load())
                return node
        templates.add(ast.unparse(Rel().visit(_copy(e))))
        if len(templates) > 1:
            return None
    template = templates.pop()
    return re.sub(r"_X_([0-9]+)", lambda mt: f"w[(s + {int(mt.group(1))}) % {d}]", template)


def _rhs_lines(rhs_src: str, n_params: int, row: str, t: str, d: int) -> list[str]:
    """The rhs into ``row`` (a format with ``{k}``): a loop over the state where the rhs is a
    cyclic stencil (``cyclic_stencil``), else its straight-line store form."""
    params = [f"p{j}" for j in range(n_params)]
    stencil = cyclic_stencil(rhs_src, d)
    if stencil is not None:
        fn = ast.parse(rhs_src).body[0]
        p_arg, t_arg = fn.args.args[1].arg, fn.args.args[2].arg
        mapping: dict[str, ast.expr] = {t_arg: ast.Name(id=t, ctx=ast.Load())}
        for st in fn.body[:-1]:
            if isinstance(st, ast.Assign) and isinstance(st.value, ast.Name) and st.value.id == p_arg:
                for k, e in enumerate(st.targets[0].elts):
                    mapping[e.id] = ast.Name(id=params[k], ctx=ast.Load())
        expr = ast.unparse(_Subst(mapping).visit(ast.parse(stencil, mode="eval").body))
        return [f"for s in range({d}):", f"    {row.format(k='s')} = {expr}"]
    return store_form(rhs_src, "w", row, params, t)


def _sum(base: str | None, h: str, row, array: str, count: int) -> str:
    """``solvers.tableaus.rk_update`` of ``base`` over ``K[0..count-1, s]`` with the
    coefficient q of ``row`` read from the constant array element ``array.format(q=q)``."""
    const = lambda q, c: Src(array.format(q=q))  # noqa: E731
    ks = srcs(f"K[{q}, s]" for q in range(count))
    return rk_update(None if base is None else Src(base), Src(h), row[:count], ks, const)


def _stage_arguments(tab, stages: range, h: str, d: int) -> list[str]:
    """``w = y + h*(sum_q a_jq K[q])`` for the stage ``j`` of the enclosing loop: one branch
    per stage, so each stage's sum is ``rk_update``'s, zero coefficients skipped."""
    lines = []
    for n, j in enumerate(stages):
        lines.append(f"{'if' if n == 0 else 'elif'} j == {j}:")
        lines += [f"    for s in range({d}):",
                  f"        w[s] = {_sum('y[s]', h, tab.a[j], f'_TA[{j}, {{q}}]', j)}"]
    return lines


def body_fixed(tab, d: int, n_params: int, rhs_src: str, step_stages: int) -> list[str]:
    """One fixed-step trajectory ``i`` (locals ``y``, ``w``, ``K`` allocated by the caller)."""
    L = [f"for s in range({d}):", "    y[s] = u0[s, i]"]
    L += [f"p{j} = p[{j}, i]" for j in range(n_params)]
    L += ["nacc = 0", "nfe = 0", "for n in range(n_steps):",
          "    t = t0 + _T(n) * dt",
          f"    for j in range({step_stages}):"]
    L += ["        " + x for x in _stage_arguments(tab, range(step_stages), "dt", d)]
    L += ["        tt = t + dt * _TC[j]"]
    L += ["        " + x for x in _rhs_lines(rhs_src, n_params, "K[j, {k}]", "tt", d)]
    L += [f"    for s in range({d}):",
          f"        y[s] = {_sum('y[s]', 'dt', tab.b, '_TB[{q}]', step_stages)}",
          "    nacc += 1", f"    nfe += {step_stages}"]
    L += ["fin = True", f"for s in range({d}):", "    out_u[s, i] = y[s]",
          "    fin = fin & (abs(y[s]) <= _BIG)"]
    L += ["stats[0, i] = nacc", "stats[1, i] = 0", "stats[2, i] = nfe",
          f"status[i] = {int(Status.SUCCESS)} if fin else {int(Status.NONFINITE)}"]
    return L


def body_adaptive(tab, d: int, n_params: int, rhs_src: str) -> list[str]:
    """One adaptive FSAL trajectory ``i``: the unrolled kernel's checks, controller and norm
    (``codegen._solve_one_adaptive``), on arrays. ``K[0]`` holds f(t, y) (FSAL), the last
    stage's argument ``w`` is the candidate state."""
    s_ = tab.stages
    run, ok = -1, int(Status.SUCCESS)
    L = [f"for s in range({d}):", "    y[s] = u0[s, i]", "    w[s] = y[s]"]
    L += [f"p{j} = p[{j}, i]" for j in range(n_params)]
    L += ["t = t0", "dtc = dt", "lm = _LM_INIT"]
    L += _rhs_lines(rhs_src, n_params, "K[0, {k}]", "t", d)
    L += ["nacc = 0", "nrej = 0", "nfe = 1", f"st = {run} if t < tf else {ok}",
          f"while st == {run}:",
          "    if nacc + nrej >= max_steps:", f"        st = {int(Status.MAX_STEPS)}", "        break",
          "    rem = tf - t", "    last = dtc >= rem - _TSNAP * abs(tf)", "    h = rem if last else dtc",
          "    if (not last) and ((h < _DTMIN) or (t + h == t)):",
          f"        st = {int(Status.DT_UNDERFLOW)}", "        break",
          f"    for j in range(1, {s_}):"]
    L += ["        " + x for x in _stage_arguments(tab, range(1, s_), "h", d)]
    L += ["        tt = t + h * _TC[j]"]
    L += ["        " + x for x in _rhs_lines(rhs_src, n_params, "K[j, {k}]", "tt", d)]
    L += [f"    nfe += {s_ - 1}",
          "    ssq = _ZERO", "    fin = True"]
    # solvers.tableaus.error_scales and scaled_ssq, on arrays (component order)
    L += [f"    for s in range({d}):",
          f"        e = {_sum(None, 'h', tab.btilde, '_TE[{q}]', s_)}",
          "        sc = atol + max(abs(y[s]), abs(w[s])) * rtol",
          "        r = e / sc", "        ssq = ssq + r * r",
          "        fin = fin & (abs(w[s]) <= _BIG)"]
    L += [
          "    if not ((ssq == ssq) & fin):",
          f"        for s in range({d}):", "            y[s] = w[s]",
          "        nrej += 1", f"        st = {int(Status.NONFINITE)}", "        break",
          "    dta, dtr, lmn = _control(ssq, lm, h)",
          "    if ssq <= _NSTATES:",
          "        t = tf if last else t + h",
          f"        for s in range({d}):", "            y[s] = w[s]",
          f"            K[0, s] = K[{s_ - 1}, s]",
          "        dtc = max(dta, dtc) if h < dtc else dta", "        lm = lmn", "        nacc += 1",
          "        if t >= tf:", f"            st = {ok}",
          "    else:", "        dtc = dtr", "        nrej += 1"]
    L += [f"for s in range({d}):", "    out_u[s, i] = y[s]"]
    L += ["stats[0, i] = nacc", "stats[1, i] = nrej", "stats[2, i] = nfe", "status[i] = st"]
    return L


# ================================================================================================
# Module assembly (the header, constants and controller are solvers.fused.assemble's)
# ================================================================================================

def generate_source(key) -> str:
    """The module for ``key`` in the looped layout (same entry points as codegen's modules)."""
    prob = get_problem(key.problem)
    reason = unsupported_reason(prob, key.method, key.mode, key.save)
    if reason:
        raise ValueError(reason)
    tab, mc = get_tableau(key.method), method_code(key.method)
    d, npar = prob.n_states, prob.n_params
    C = Constants(key.dtype)
    ctrl = controller_for(key.method, key.controller) if key.mode == "adaptive" else None
    P = Parts(mc, Shape(d, npar), C, ctrl)
    C.add("ZERO", 0.0)
    C.add("ONE", 1.0)
    C.add("BIG", float(np.finfo(C.dtype).max))
    rhs_src = rhs_source(prob)
    inliner = Inliner()
    funcs: list[str] = []
    if key.target == "cuda":
        for src in cuda_helper_snippets(key.dtype):
            funcs += ["", inliner.add(src), ""]
    if key.mode == "fixed":
        body = body_fixed(tab, d, npar, rhs_src, mc.step_stages)
    else:
        C.add("DTMIN", ctrl.dtmin)
        snap_constant(C)
        for snip in log_exp_source(C, key.dtype) + [controller_source(C, ctrl, d)]:
            funcs += ["", inliner.add(join_lines(snip)), ""]
        body = body_adaptive(tab, d, npar, rhs_src)
    arrays = [f"{name} = np.asarray({values.tolist()!r}, dtype=np.{key.dtype})"
              for name, values in _arrays(tab, key.mode).items()]
    if key.target == "cpu":
        alloc = [f"y = np.empty({d}, _T)", f"w = np.empty({d}, _T)",
                 f"K = np.empty(({tab.stages}, {d}), _T)"]
        one = ["@_jit", f"def _solve_one(i, {ARGS}):"] + indent_lines(alloc + body)
        funcs += ["", inliner.expand(join_lines(one)), ""]
        funcs += [
            "", "@_kernel", f"def solve_serial({ARGS}):",
            '    """One trajectory per prange iteration; loops over the state are its vector work."""',
            "    for i in prange(u0.shape[1]):", f"        _solve_one(i, {ARGS})", "",
            "", "# Looped layout: no lane blocks (the state loops vectorise instead).",
            "solve_lanes = solve_serial",
        ]
    else:
        alloc = [f"y = cuda.local.array({d}, _T)", f"w = cuda.local.array({d}, _T)",
                 f"K = cuda.local.array(({tab.stages}, {d}), _T)"]
        kernel = [f"def solve_kernel({ARGS}):",
                  "    i = cuda.grid(1)  # one thread per trajectory, its arrays in local memory",
                  "    if i < u0.shape[1]:"] + indent_lines(alloc + body, 2)
        funcs += ["", "@cuda.jit", inliner.expand(join_lines(kernel))]
    head = module_header(key, P)
    head[2] = f"{key!r} (looped layout: solvers.fused.looped)"
    lines = (head + ["", "", "# ---- constants (kernel dtype) ------------------------------------------------"]
             + C.source() + arrays + funcs)
    return join_lines(lines)
