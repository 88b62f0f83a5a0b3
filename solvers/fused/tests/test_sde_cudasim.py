"""The fused SDE CUDA kernel under Numba's CUDA simulator (own process) against the CPU kernels:
the same (seed, trajectory, step) -> the same Philox words -> the same path. The simulator runs
the kernel's Python with NumPy scalars (math.sqrt of a float32 returns a double there), so
float32 agrees to rounding rather than bit for bit."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "solvers.fused.tests.sde_cudasim_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.cudasim
@pytest.mark.slow
@pytest.mark.parametrize("case, tol", [("linear_sde-f32", 2e-5), ("linear_sde-f64", 1e-12), ("crn-f32", 1e-4)])
def test_simulated_cuda_sde_kernel_matches_cpu(report, case, tol):
    row = report[case]
    assert row["finite"] and row["lanes_equal_serial"]
    assert row["max_rel_gpu_vs_cpu"] <= tol, row
