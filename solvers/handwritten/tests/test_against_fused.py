"""Each hand-written backend against the fused kernel (backend "fused") at identical settings.

Fixed steps agree to rounding; adaptive steps (float64) take the same accepted step counts, on
every non-stiff problem. Skipped, with the reason, while the fused backend cannot run here.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from solvers.base import SolveResult, SolveSpec
from solvers.handwritten.tests.helpers import max_rel_diff, solve
from solvers.registry import get_backend

N = 16
# One variant per backend: the others are tested against these (test_agreement, test_pallas).
BACKENDS = [("jax-handwritten", ""), ("torch-handwritten", ""), ("pallas", "")]
BACKEND_IDS = [b for b, _ in BACKENDS]

CASES = [  # (mode, problem, dtype, tolerance on the final states)
    ("fixed", "lorenz", "float64", 1e-12),
    ("fixed", "sir", "float64", 1e-12),
    ("fixed", "lorenz", "float32", 1e-5),
    ("adaptive", "lorenz", "float64", 1e-10),
    ("adaptive", "sir", "float64", 1e-10),
]


@functools.lru_cache(maxsize=None)
def _fused(spec: SolveSpec) -> SolveResult:
    return solve("fused", spec)


def _fused_or_skip(spec: SolveSpec) -> SolveResult:
    fused = get_backend("fused")
    ok, why = fused.available("cpu")
    if not ok:
        pytest.skip(f"fused backend not available, comparison skipped: {why}")
    reason = fused.check(spec)
    if reason:
        pytest.skip(f"fused backend refuses {spec.mode} {spec.problem}: {reason}")
    return _fused(spec)


@pytest.mark.parametrize("mode,problem,dtype,tol", CASES, ids=[f"{m}-{p}-{d}" for m, p, d, _ in CASES])
@pytest.mark.parametrize("backend,variant", BACKENDS, ids=BACKEND_IDS)
def test_agrees_with_fused(backend, variant, mode, problem, dtype, tol):
    spec = SolveSpec(problem, "tsit5", mode, dtype, n=N)     # the problem's dt / dt0 and tolerances
    fused = _fused_or_skip(spec)
    ours = solve(backend, spec.with_(variant=variant))
    assert ours.u_final.dtype == fused.u_final.dtype
    assert max_rel_diff(ours.u_final, fused.u_final) < tol
    np.testing.assert_array_equal(ours.status, fused.status)
    np.testing.assert_array_equal(ours.accepted, fused.accepted)
    np.testing.assert_array_equal(ours.rejected, fused.rejected)
