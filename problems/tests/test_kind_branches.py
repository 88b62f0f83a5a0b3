"""No module branches on a workload kind's name: it asks the kind's policy (problems.kinds).

Scans problems/, solvers/ and harness/ with ``ast`` for comparisons against a kind name
(``kind == "sde"``, ``p.kind != "ode"``, ``kind in ("ode", "sde")``, ``x.eq("pso")``). Only the
registries may spell kind names next to a comparison.
"""
from __future__ import annotations

import ast
from pathlib import Path

from problems.kinds import KINDS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("problems", "solvers", "harness")
#: The registries: where kind names are data, not branches.
ALLOWED = {"problems/kinds.py", "solvers/registry.py"}


def _kind_literals(node: ast.AST) -> list[str]:
    """The kind names spelled as string constants in ``node`` (a tuple/list/set or a constant)."""
    elts = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [e.value for e in elts if isinstance(e, ast.Constant) and e.value in KINDS]


def _mentions_kind(node: ast.AST) -> bool:
    """Whether ``node`` reads something called kind (``kind``, ``x.kind``, ``getattr(x, "kind")``,
    ``kind_of(x).name``)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and "kind" in n.id:
            return True
        if isinstance(n, ast.Attribute) and "kind" in n.attr:
            return True
        if isinstance(n, ast.Constant) and n.value == "kind":
            return True
    return False


def kind_branches(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_kind_literals(s) for s in sides) and any(_mentions_kind(s) for s in sides):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("eq", "ne", "isin")
              and any(_kind_literals(a) for a in node.args) and _mentions_kind(node.func.value)):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_branches_on_a_kind_name():
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in ALLOWED or "/tests/" in rel:
                continue
            found.extend(kind_branches(path))
    assert not found, "branches on a kind name (ask problems.kinds.kind_of(...) instead):\n" + "\n".join(found)


def test_the_scan_finds_a_branch(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('if prob.kind == "sde":\n    pass\nrows = df["problem"].map(kinds).eq("pso")\n'
                     'ok = kind_of(prob).shardable\n')
    assert len(kind_branches(probe, tmp_path)) == 2
