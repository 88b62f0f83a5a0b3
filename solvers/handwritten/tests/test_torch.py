"""torch-handwritten: compiled against eager, the CUDA-graph driver's logic, rhs evaluation counts."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.base import SolveSpec, UnsupportedError
from solvers.handwritten.torch_backend import EagerReplay, TorchGraphPrepared, TorchLoopPrepared
from solvers.handwritten.tests.helpers import max_rel_diff, solve
from solvers.registry import get_backend


def _run(prep, runs=1):
    for _ in range(runs):
        out = prep.run()
        prep.sync(out)
    res = prep.fetch(out)
    prep.close()
    return res


@pytest.mark.slow  # torch.compile of a chunk of steps: 40 s cold on 2 cores
def test_compiled_agrees_with_eager_or_says_why_not():
    backend = get_backend("torch-handwritten")
    fixed = SolveSpec("lorenz", "tsit5", "fixed", "float64", n=8, dt=0.01, variant="compiled")
    adaptive = SolveSpec("lorenz", "tsit5", "adaptive", "float64", n=8, rtol=1e-6, atol=1e-6,
                         variant="compiled")
    reason = backend.check(fixed)
    if reason is not None:
        assert reason.strip()
        with pytest.raises(UnsupportedError):
            backend.prepare(fixed)
        pytest.skip(f"torch.compile unsupported here: {reason}")
    for spec in (fixed, adaptive):
        compiled = solve("torch-handwritten", spec, runs=2)
        eager = solve("torch-handwritten", spec.with_(variant=""))
        # Inductor contracts multiply-adds into FMA (solvers.numeric_policy), eager ATen does
        # not: the states differ by rounding only
        assert max_rel_diff(compiled.u_final, eager.u_final) < 1e-9
        np.testing.assert_array_equal(compiled.accepted, eager.accepted)
        np.testing.assert_array_equal(compiled.rejected, eager.rejected)
        np.testing.assert_array_equal(compiled.status, eager.status)


def test_cudagraph_needs_a_gpu():
    reason = get_backend("torch-handwritten").check(
        SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8, variant="cudagraph"))
    assert reason is not None and "CUDA" in reason


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_graph_driver_logic_matches_eager(mode):
    """The cudagraph variant's static buffers, chunking (100 steps = 12 chunks of 8 + one of 4),
    state reset between runs and completion checks, with replay standing in for the graph."""
    spec = SolveSpec("lorenz", "tsit5", mode, "float64", n=8, dt=0.01, rtol=1e-6, atol=1e-6)
    graph = _run(TorchGraphPrepared(spec, graph=EagerReplay, steps_per_graph=8), runs=2)
    eager = _run(TorchLoopPrepared(spec, compiled=False))
    np.testing.assert_array_equal(graph.u_final, eager.u_final)
    np.testing.assert_array_equal(graph.accepted, eager.accepted)
    np.testing.assert_array_equal(graph.rejected, eager.rejected)
    np.testing.assert_array_equal(graph.status, eager.status)


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_reported_rhs_evals_match_the_calls_made(mode):
    """Count the eager solver's right-hand side calls: the lockstep loop makes exactly the slowest
    trajectory's number of evaluations (fixed: every trajectory's)."""
    spec = SolveSpec("sir", "tsit5", mode, "float32", n=8, dt=1.0, rtol=1e-6, atol=1e-6)
    prep = get_backend("torch-handwritten").prepare(spec)
    calls = []
    inner = prep.solve.f

    def counting(u, p, t):
        calls.append(1)
        return inner(u, p, t)

    prep.solve.f = counting
    res = _run(prep)
    assert len(calls) == res.rhs_evals.max()
    if mode == "fixed":
        assert np.all(res.rhs_evals == 6 * 100)
    else:
        assert res.rhs_evals.min() < res.rhs_evals.max()    # trajectories differ in work
