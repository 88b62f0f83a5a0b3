"""The generator itself, without compiling: inlining, unrolled LU, typed constants, keys."""
import ast

import numpy as np
import pytest

from solvers.fused.codegen import KernelKey, generate_source
from solvers.fused.emit import Inliner, free_globals, lu_factor, lu_solve, names


def _sel(c, a, b):
    return a if c else b


def _run_lu(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(b)
    lines = [f"w_{i}_{j} = A[{i}, {j}]" for i in range(n) for j in range(n)]
    lu, swaps, inv = lu_factor(n, "w", "1.0")
    lines += lu + lu_solve(n, "w", swaps, inv, [f"b[{i}]" for i in range(n)], "x")
    env = {"A": A, "b": b, "_sel": _sel}
    exec("\n".join(lines), env)
    return np.array([env[v] for v in names("x", n)])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_unrolled_lu_solves_like_numpy(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        A = rng.normal(size=(n, n))
        b = rng.normal(size=n)
        np.testing.assert_allclose(_run_lu(A, b), np.linalg.solve(A, b), rtol=1e-10, atol=1e-12)


def test_unrolled_lu_pivots():
    # A zero leading pivot: without row exchanges this divides by zero.
    A = np.array([[0.0, 2.0, 1.0], [1.0, 1.0, 0.0], [3.0, 0.0, 1.0]])
    b = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(_run_lu(A, b), np.linalg.solve(A, b), rtol=1e-12)
    # Partial pivoting keeps a tiny pivot from amplifying rounding errors.
    A = np.array([[1e-17, 1.0], [1.0, 1.0]])
    b = np.array([1.0, 2.0])
    np.testing.assert_allclose(_run_lu(A, b), np.linalg.solve(A, b), rtol=1e-12)


def test_inliner_renames_binds_and_hoists():
    inl = Inliner()
    inl.add("def sq(x):\n    y = x * x\n    return y\n")
    inl.add("def f(a, b):\n    y = sq(a) + sq(b)\n    return y, a\n")
    out = inl.expand("def g(y, a):\n    z, w = f(y + 1, a)\n    q = 2 * f(a, a)[0]\n    return z, w, q\n")
    env = {}
    exec(out, env)
    assert env["g"](2, 3) == (18, 3, 36)
    tree = ast.parse(out)
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & {"sq", "f"}, out  # every snippet call was spliced


def test_inliner_refuses_branching_snippets():
    with pytest.raises(ValueError, match="straight-line"):
        Inliner().add("def f(x):\n    if x:\n        x = 1\n    return x\n")
    with pytest.raises(ValueError, match="only return"):
        Inliner().add("def f(x):\n    x = 1\n")


def test_free_globals():
    assert free_globals("def f(u, p, t):\n    x, y = u\n    return (m.sin(x) * K, abs(y))\n") == ["K", "abs", "m"]


@pytest.mark.parametrize("key", [
    KernelKey("lorenz", "tsit5", "adaptive", "float32", save="dense"),
    KernelKey("robertson", "rodas5p", "adaptive", "float32", save="stop", target="cuda"),
    KernelKey("sir", "rk4_38", "fixed", "float32", save="grid"),
])
def test_generated_functions_hold_no_float_literals(key):
    """Every number in generated code is a module-level typed constant: no float literal
    appears inside a function (one would promote float32 code to float64)."""
    tree = ast.parse(generate_source(key))
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert any(f.name in ("solve_kernel", "_block") for f in fns)
    for fn in fns:
        floats = [c.value for c in ast.walk(fn) if isinstance(c, ast.Constant) and isinstance(c.value, float)]
        assert not floats, f"{fn.name} holds float literals {floats[:5]}"


def test_kernel_key_rejects_bad_choices():
    with pytest.raises(ValueError, match="save mode"):
        KernelKey("lorenz", "tsit5", "fixed", "float32", save="dense")
    with pytest.raises(ValueError, match="target"):
        KernelKey("lorenz", "tsit5", "fixed", "float32", target="tpu")
    with pytest.raises(ValueError, match="dtype"):
        KernelKey("lorenz", "tsit5", "fixed", "float16")
    with pytest.raises(ValueError, match="no adaptive mode"):
        generate_source(KernelKey("lorenz", "rk4", "adaptive", "float32"))
    with pytest.raises(ValueError, match="no dense output"):
        generate_source(KernelKey("lorenz", "dopri5", "adaptive", "float64", save="dense"))


def test_key_digest_tracks_the_definition():
    a = KernelKey("lorenz", "tsit5", "fixed", "float32")
    assert a.digest() == KernelKey("lorenz", "tsit5", "fixed", "float32").digest()
    assert a.digest() != KernelKey("lorenz", "tsit5", "fixed", "float64").digest()
    assert a.digest() != KernelKey("lorenz", "tsit5", "fixed", "float32", lanes=8).digest()
