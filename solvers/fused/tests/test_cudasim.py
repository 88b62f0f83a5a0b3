"""The CUDA kernel, run by Numba's CUDA simulator in its own process, against the CPU kernels.

The simulator executes the generated kernel's Python source with NumPy scalars, one
operation at a time, so it must match the CPU kernel compiled without FMA contraction bit
for bit, step counts and saved states included. Against the default CPU kernel (which, like
NVVM on a real GPU, fuses a*b+c) results agree to rounding; float32 adaptive step counts may
then differ by a few steps, because a rounding-level change of the error estimate can flip
an accept/reject decision.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, "-m", "solvers.fused.tests.cudasim_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = ["tsit5-fixed-f32", "tsit5-adaptive-f32-dense", "tsit5-adaptive-f64",
         "rosenbrock23-adaptive-f64", "rodas4-adaptive-f32-stop", "lorenz96-16-adaptive-f32-looped"]


@pytest.mark.cudasim
@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_simulated_cuda_kernel_matches_cpu(report, case):
    row = report[case]
    assert row["all_success"] and row["steps_max"] >= 10
    # the same arithmetic, operation by operation: identical
    assert row["nofma_ulps"] == 0.0
    assert row["nofma_counts_equal"]
    if "nofma_saved_ulps" in row:
        assert row["nofma_saved_ulps"] == 0.0 and row["saved_end_is_final"]
    # with FMA contraction on the CPU: equal to rounding (amplified by Lorenz's transient
    # growth, up to ~1e4 over [0, 1])
    if row["dtype"] == "float64":
        assert row["fma_counts_equal"]
        assert row["fma_rel"] <= 1e-9
    elif row["mode"] == "fixed":
        assert row["fma_counts_equal"]
        assert row["fma_rel"] <= 1e-5
    else:
        # Within the solutions' own error at rtol = 1e-4 (Lorenz: 1.2e-2 against the float64
        # reference): a flipped decision moves the solution by the method's error, not more.
        assert row["fma_rel"] <= 1e-2
        assert row["fma_max_count_diff"] <= 10
