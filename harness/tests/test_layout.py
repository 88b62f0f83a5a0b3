"""The house's layout rules as tests (issue 27): import layering and cycles (import-linter, with
the contracts in pyproject.toml), function-level imports, module and function sizes.

Every gate prints all its offenders, not only the first."""
from __future__ import annotations

import ast
import io
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("problems", "solvers", "harness")
#: Folders of Python code held to the size and import rules (tests excepted).
CODE_ROOTS = (*PROJECT, "benchmarks", "tools")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100

#: Optional or heavy libraries that a function may import (when it runs, so that the module
#: imports without them, or cheaply): a dotted prefix matches its submodules too.
LAZY_ALLOWED = (
    "jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax", "torch", "torchdiffeq", "torchode", "torchsde",
    "evosax", "cupy", "cupyx", "numba.cuda", "cuda", "cupti", "distributed", "dask", "dask_cuda", "matplotlib",
    "selenium", "jinja2", "markdown_it", "rich", "pyarrow", "sympy", "scipy",
)

#: Functions allowed over MAX_FUNCTION_LINES ("path::qualified name": why). Only generated-code
#: templates: the kernel they emit reads top to bottom in one place.
LONG_FUNCTIONS: dict[str, str] = {}


def _code_files() -> list[Path]:
    """Non-test Python files under CODE_ROOTS, relative to ROOT."""
    out = []
    for top in CODE_ROOTS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "tests" in rel.parts or rel.name.startswith("test_") or rel.name == "conftest.py":
                continue
            out.append(rel)
    return out


@dataclass(frozen=True)
class FunctionImport:
    line: int
    modules: tuple[str, ...]   # dotted names it binds ("numba.cuda" for ``from numba import cuda``)
    justified: bool            # a comment on its line, the line above, or an import right above that has one


def _imported_modules(node: ast.Import | ast.ImportFrom) -> tuple[str, ...]:
    if isinstance(node, ast.Import):
        return tuple(a.name for a in node.names)
    base = "." * node.level + (node.module or "")
    return tuple(f"{base}.{a.name}" if node.module else base + a.name for a in node.names)


def _comment_lines(source: str) -> tuple[set[int], set[int]]:
    """(lines holding a comment, lines that are only a comment)."""
    commented, comment_only = set(), set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            commented.add(tok.start[0])
            if not tok.line[:tok.start[1]].strip():
                comment_only.add(tok.start[0])
    return commented, comment_only


def function_imports(source: str) -> list[FunctionImport]:
    """The import statements of ``source`` inside a function body, in order."""
    commented, comment_only = _comment_lines(source)
    found: list[FunctionImport] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        previous: FunctionImport | None = None
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                justified = bool(child.lineno in commented or child.lineno - 1 in comment_only
                                 or (previous is not None and previous.justified))
                previous = FunctionImport(child.lineno, _imported_modules(child), justified)
                found.append(previous)
                continue
            previous = None
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def _allowed_lazily(module: str) -> bool:
    return any(module == lib or module.startswith(lib + ".") for lib in LAZY_ALLOWED)


def _is_project(module: str) -> bool:
    return module.startswith(".") or module.split(".")[0] in PROJECT


def import_offences(source: str, path: str) -> list[str]:
    out = []
    for imp in function_imports(source):
        where = f"{path}:{imp.line}"
        project = [m for m in imp.modules if _is_project(m)]
        other = [m for m in imp.modules if not _is_project(m) and not _allowed_lazily(m)]
        if project:
            out.append(f"{where}: project module imported inside a function: {', '.join(project)}")
        elif other:
            out.append(f"{where}: {', '.join(other)} imported inside a function (not an optional heavy library)")
        elif not imp.justified:
            out.append(f"{where}: {', '.join(imp.modules)} imported inside a function without a comment saying why")
    return out


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function of ``source`` over MAX_FUNCTION_LINES."""
    out = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        out.append((name, child.lineno, length))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return out


def _fail_with(offenders: list[str], what: str) -> None:
    if offenders:
        pytest.fail(f"{len(offenders)} {what}:\n" + "\n".join(offenders), pytrace=False)


def test_import_contracts_hold():
    """Layers (problems < solvers < harness; inside harness errors < results < measure <
    run | gpu_profile < report < cli) and no cycle between sibling modules or packages."""
    # the script installed beside this interpreter (a venv's bin/ need not be on PATH: make runs
    # .venv/bin/python directly), else one on PATH
    beside = Path(sys.executable).parent / "lint-imports"
    exe = str(beside) if beside.is_file() else shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports not found: pip install 'import-linter>=2' (the test extra)", pytrace=False)
    res = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        pytest.fail("lint-imports found broken contracts:\n" + res.stdout + res.stderr, pytrace=False)


def test_function_level_imports_are_optional_heavy_libraries_with_a_reason():
    offenders = [o for rel in _code_files() for o in import_offences((ROOT / rel).read_text(), str(rel))]
    _fail_with(offenders, "function-level imports break the rule")


def test_no_harness_module_over_the_line_limit():
    offenders = []
    for rel in _code_files():
        if rel.parts[0] == "harness":
            n = len((ROOT / rel).read_text().splitlines())
            if n > MAX_MODULE_LINES:
                offenders.append(f"{rel}: {n} lines (at most {MAX_MODULE_LINES})")
    _fail_with(offenders, "harness modules too long")


def test_no_function_over_the_line_limit():
    offenders, seen = [], set()
    for rel in _code_files():
        for name, line, length in long_functions((ROOT / rel).read_text()):
            key = f"{rel}::{name}"
            seen.add(key)
            if key not in LONG_FUNCTIONS:
                offenders.append(f"{rel}:{line}: {name} is {length} lines (at most {MAX_FUNCTION_LINES})")
    stale = sorted(set(LONG_FUNCTIONS) - seen)
    offenders += [f"{key}: listed in LONG_FUNCTIONS but no longer over the limit (remove it)" for key in stale]
    _fail_with(offenders, "functions too long")


# ---- the gates' own checks, on toy sources ---------------------------------------------------------------

TOY = """
import json


def f():
    import numpy  # a required package: not allowed here, whatever the comment says
    import jax  # optional: only this backend needs it
    # optional GPU libraries
    import cupy
    from numba import cuda
    import torch
    from solvers import base  # a project module: never inside a function

    def g():
        from harness import errors

    return lambda: __import__("os")


class C:
    import re

    def m(self):
        x = 1
        import scipy
"""


def test_function_imports_are_found_with_their_reasons():
    found = {i.line: i for i in function_imports(TOY)}
    assert sorted(found) == [6, 7, 9, 10, 11, 12, 15, 25]  # not the module's or the class body's
    assert found[10].modules == ("numba.cuda",) and found[12].modules == ("solvers.base",)
    assert found[9].justified and found[10].justified and found[11].justified  # consecutive, under one comment
    assert not found[25].justified  # after a statement: needs its own comment
    offences = import_offences(TOY, "m.py")
    assert [o.split(":")[1] for o in offences] == ["6", "12", "15", "25"]
    assert "numpy imported inside a function (not an optional heavy library)" in offences[0]
    assert "project module" in offences[1] and "harness.errors" in offences[2]
    assert "without a comment" in offences[3]


def test_long_functions_are_named_with_their_class():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    src = f"class K:\n    def long(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n\n\ndef short():\n    pass\n"
    assert long_functions(src) == [("K.long", 2, MAX_FUNCTION_LINES + 1)]
