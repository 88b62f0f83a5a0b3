"""The variants added for issue 33 agree with the fused kernel to rounding at small N:
torch-handwritten "compiled" (a compiled chunk of steps/attempts per call) and diffrax "tuple"
(a PyTree state); and JAX splits the ensemble only from the measured N on."""
import numpy as np
import pytest

from solvers import jax_sharding
from solvers.base import SolveSpec
from solvers.handwritten.tests.helpers import max_rel_diff, solve
from solvers.registry import get_backend, load_backend

N = 16
CASES = [  # (mode, dtype, tolerance on the final states against the fused kernel)
    ("fixed", "float32", 1e-5),
    ("adaptive", "float64", 1e-9),
]


def _backend_or_skip(name):
    b, why = load_backend(name)
    if b is None or not b.available("cpu")[0]:
        pytest.skip(f"{name} unavailable here: {why}")
    return b


@pytest.mark.parametrize("mode,dtype,tol", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("backend,variant", [  # torch.compile of a chunk: 10-50 s a case, `make test-all`
    pytest.param("torch-handwritten", "compiled", marks=pytest.mark.slow), ("diffrax", "tuple")])
def test_new_variant_agrees_with_fused(backend, variant, mode, dtype, tol):
    b = _backend_or_skip(backend)
    _backend_or_skip("fused")
    # dt = 0.01 (100 fixed steps) keeps the compile of the torch chunk short
    spec = SolveSpec("lorenz", "tsit5", mode, dtype, n=N, dt=0.01 if mode == "fixed" else None,
                     rtol=1e-6, atol=1e-6, threads=1)
    reason = b.check(spec.with_(variant=variant))
    if reason:
        pytest.skip(reason)
    fused = solve("fused", spec)
    ours = solve(backend, spec.with_(variant=variant))
    if backend == "diffrax" and mode == "adaptive":
        tol = 1e-3     # one shared dt for the batch: agreement to the tolerance, not to rounding
    assert max_rel_diff(ours.u_final, fused.u_final) < tol
    np.testing.assert_array_equal(ours.status, fused.status)
    if mode == "fixed" or backend == "torch-handwritten":   # diffrax "tuple" adaptive: one shared dt
        np.testing.assert_array_equal(ours.accepted, fused.accepted)


@pytest.mark.slow  # two diffrax compiles: 9 s
def test_diffrax_tuple_is_bitwise_the_batched_solve():
    _backend_or_skip("diffrax")
    spec = SolveSpec("lorenz", "tsit5", "adaptive", "float32", n=N, rtol=1e-6, atol=1e-6, threads=1)
    a, b = solve("diffrax", spec.with_(variant="batched")), solve("diffrax", spec.with_(variant="tuple"))
    np.testing.assert_array_equal(a.u_final, b.u_final)
    np.testing.assert_array_equal(a.accepted, b.accepted)
    assert get_backend("diffrax").settings(spec.with_(variant="tuple"))["step_control"] == "shared"


def test_jax_splits_only_from_the_measured_n(monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.delenv("ODEBENCH_JAX_SPLIT_MIN_N", raising=False)
    small = jax_sharding.plan("cpu", 2, 8)
    assert small.count == 1 and "no split" in small.note
    assert small.settings()["split_min_n"] == jax_sharding.SPLIT_MIN_N
    monkeypatch.setenv("ODEBENCH_JAX_SPLIT_MIN_N", "0")
    assert jax_sharding.split_min_n() == 0
