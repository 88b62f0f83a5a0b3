"""Key cells for the nightly regression check (see harness/bench_compare.py).

Each cell's time is judged relative to ``test_reference_workload`` measured in the same run,
so a slower or busier machine does not raise a false alarm.
"""
import numpy as np
import pytest

from harness.bench_compare import REFERENCE_NAME

LORENZ_FIXED = dict(problem="lorenz", mode="fixed", dtype="float32")
LORENZ_ADAPTIVE = dict(problem="lorenz", mode="adaptive", dtype="float32", rtol=1e-6, atol=1e-6)


def test_reference_workload(benchmark):
    """A fixed NumPy workload: the yardstick every other cell is divided by."""
    assert REFERENCE_NAME == "test_reference_workload"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 256))
    x = rng.standard_normal(200_000)

    def work():
        return float(np.sin(x).sum() + (a @ a).trace())

    assert np.isfinite(benchmark.pedantic(work, rounds=10, iterations=1, warmup_rounds=1))


@pytest.mark.parametrize("n", [8, 8192])
def test_fused_cpu_tsit5_fixed(solve_benchmark, n):
    solve_benchmark("fused", method="tsit5", n=n, **LORENZ_FIXED)


@pytest.mark.parametrize("n", [8, 8192])
def test_fused_cpu_tsit5_adaptive(solve_benchmark, n):
    solve_benchmark("fused", method="tsit5", n=n, **LORENZ_ADAPTIVE)


@pytest.mark.parametrize("n", [8, 512])
def test_array_numpy_tsit5_fixed(solve_benchmark, n):
    solve_benchmark("array", method="tsit5", n=n, **LORENZ_FIXED)


@pytest.mark.parametrize("n", [8, 512])
def test_diffrax_tsit5_fixed(solve_benchmark, n):
    solve_benchmark("diffrax", method="tsit5", n=n, **LORENZ_FIXED)


@pytest.mark.parametrize("n", [8, 512])
def test_torchdiffeq_rk4_38_fixed(solve_benchmark, n):
    solve_benchmark("torchdiffeq", method="rk4_38", n=n, **LORENZ_FIXED)


@pytest.mark.parametrize("n", [8, 8192])
def test_jax_handwritten_tsit5_fixed(solve_benchmark, n):
    solve_benchmark("jax-handwritten", method="tsit5", n=n, **LORENZ_FIXED)
