"""The fused event CUDA kernel under Numba's CUDA simulator (own process) against the CPU kernels
in float64 on all three event problems: the same event counts, and event times, saves and final
states to rounding. Not bit for bit: the CPU kernels contract a*b+c into FMAs (fastmath
'contract', as NVVM does on a real GPU), the simulator runs the kernel's Python without them
(seen: 4e-12 apart on the bouncing ball)."""
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
    proc = subprocess.run([sys.executable, "-m", "solvers.fused.tests.events_cudasim_check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.cudasim
@pytest.mark.slow
@pytest.mark.parametrize("case", ["bouncing_ball", "lorenz_plane", "pk_doses"])
def test_simulated_cuda_event_kernel_equals_cpu(report, case):
    row = report[case]
    assert row["lanes_equal_serial"], row
    assert row["events_equal"], row
    assert row["max_abs_gpu_vs_cpu"] <= 1e-9, row
