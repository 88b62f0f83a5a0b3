"""Static checks of a right-hand side, run when a problem is registered (problems.registry.register).

The rules of problems.core, checked on the source before any backend compiles, each failure a
``ValueError`` naming the problem, the file and the line:

* no float literal (a Python float is float64: it silently promotes a float32 kernel), and no
  integer literal in arithmetic (Numba's int64 times float32 is float64) except as a ``**``
  exponent or an index;
* calls only to the math namespace ``m`` functions every backend has (``MATH_FUNCTIONS``) and
  ``abs``;
* no ``if`` (JAX traces it, SymPy cannot decide it);
* ``u`` and ``p`` unpacked into as many names as the problem has states and parameters, and
  every ``return`` a tuple of one entry per state.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any, Callable

#: The functions of ``m`` that math, NumPy, JAX, torch, CuPy and SymPy all have under one name.
MATH_FUNCTIONS = frozenset({"exp", "log", "sin", "cos", "tan", "sqrt", "sinh", "cosh", "tanh"})
#: Builtins a right-hand side may call.
BUILTINS = frozenset({"abs"})


class RhsError(ValueError):
    """A right-hand side that breaks a rule; the message names problem, file and line."""


def _source(f: Callable) -> tuple[ast.FunctionDef, str, int]:
    try:
        lines, first = inspect.getsourcelines(f)
        path = inspect.getsourcefile(f) or "<unknown>"
    except (OSError, TypeError) as exc:
        raise RhsError(f"cannot read the source of {getattr(f, '__name__', f)!r} ({exc}): "
                       f"define the right-hand side with `def` in a file") from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    fn = tree.body[0] if tree.body else None
    if not isinstance(fn, ast.FunctionDef):
        raise RhsError(f"{path}:{first}: write the right-hand side as a `def` function, not a lambda")
    return fn, path, first


def _int_ok(node: ast.Constant, parents: dict[int, ast.AST]) -> bool:
    """An int literal is fine as a ``**`` exponent, an index, or a default."""
    up = parents.get(id(node))
    while isinstance(up, ast.UnaryOp):
        node, up = up, parents.get(id(up))
    if isinstance(up, ast.BinOp) and isinstance(up.op, ast.Pow) and up.right is node:
        return True
    return isinstance(up, (ast.Subscript, ast.Slice))


def rhs_problems(f: Callable, n_states: int, n_params: int) -> list[tuple[int, str]]:
    """(line in the file, what is wrong) for every rule ``f`` breaks; ``[]`` when it is clean."""
    fn, path, first = _source(f)
    args = [a.arg for a in fn.args.args]
    if len(args) != 3:
        return [(first, f"takes {len(args)} arguments; a right-hand side is rhs(u, p, t)")]
    u_name, p_name = args[0], args[1]
    parents = {id(c): n for n in ast.walk(fn) for c in ast.iter_child_nodes(n)}
    out: list[tuple[int, str]] = []
    body = fn.body[1:] if (fn.body and isinstance(fn.body[0], ast.Expr)
                           and isinstance(fn.body[0].value, ast.Constant)) else fn.body
    for node in (n for st in body for n in ast.walk(st)):
        line = first + getattr(node, "lineno", 1) - 1
        if isinstance(node, ast.Constant) and isinstance(node.value, (float, complex)):
            out.append((line, f"float literal {node.value!r}: make it a parameter (a float64 constant "
                              f"promotes float32 arithmetic)"))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool)
              and not _int_ok(node, parents)):
            out.append((line, f"integer literal {node.value!r} in arithmetic: make it a parameter "
                              f"(int64 times float32 is float64 in Numba)"))
        elif isinstance(node, ast.Call):
            fname = node.func
            if isinstance(fname, ast.Attribute) and isinstance(fname.value, ast.Name) and fname.value.id == "m":
                if fname.attr not in MATH_FUNCTIONS:
                    out.append((line, f"m.{fname.attr} is not available on every backend "
                                      f"(use one of: {', '.join(sorted(MATH_FUNCTIONS))})"))
            elif not (isinstance(fname, ast.Name) and fname.id in BUILTINS):
                out.append((line, f"call to {ast.unparse(fname)}(): only m.<function> "
                                  f"({', '.join(sorted(MATH_FUNCTIONS))}) and abs() run on every backend"))
        elif isinstance(node, (ast.If, ast.IfExp)):
            out.append((line, "`if` in a right-hand side (JAX traces it, SymPy cannot decide it)"))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and len(node.targets) == 1:
            target = node.targets[0]
            want = {u_name: n_states, p_name: n_params}.get(node.value.id)
            if want is not None and isinstance(target, (ast.Tuple, ast.List)) and len(target.elts) != want:
                what = "states" if node.value.id == u_name else "parameters"
                out.append((line, f"unpacks {node.value.id} into {len(target.elts)} names; "
                                  f"the problem has {want} {what}"))
        elif isinstance(node, ast.Return):
            if not isinstance(node.value, ast.Tuple) or any(isinstance(e, ast.Starred) for e in node.value.elts):
                out.append((line, f"must return a tuple of {n_states} entries (one per state)"))
            elif len(node.value.elts) != n_states:
                out.append((line, f"returns {len(node.value.elts)} entries; the problem has {n_states} states"))
    return [(ln, f"{path}:{ln}: {what}") for ln, what in out]


def check_rhs(name: str, f: Callable, n_states: int, n_params: int) -> None:
    """Raise RhsError naming problem ``name`` and the first offending line, if ``f`` breaks a rule."""
    found = rhs_problems(f, n_states, n_params)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise RhsError(f"problem {name!r}: right-hand side {f.__name__}: {found[0][1]}{more}")


def check_problem(problem: Any) -> None:
    """The registration check of ``problem``'s right-hand side (problems with an ``rhs``)."""
    rhs = getattr(problem, "rhs", None)
    if rhs is not None:
        check_rhs(problem.name, rhs, problem.n_states, problem.n_params)
