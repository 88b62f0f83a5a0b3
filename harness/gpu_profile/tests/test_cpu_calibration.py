"""CPU side: x86 hot-loop counting, the FMA microbenchmark, and the lane kernel's counts."""
from __future__ import annotations

import json

import pytest

from harness.gpu_profile import cpu_asm

TOY_ASM = """
_ZN4toy5blockE:
\tmovq\t$-128, %rcx
.LBB0_13:
\tmovq\t$-128, %rcx
.LBB0_14:
\tvmovups\t384(%rbp,%rcx), %ymm3
\tvfmadd231ps\t%ymm1, %ymm2, %ymm3
\tvfmadd213ps\t%ymm1, %ymm2, %ymm3
\tvmulps\t%ymm1, %ymm3, %ymm4
\tvsubps\t%ymm1, %ymm3, %ymm4
\tvmovups\t%ymm4, 384(%rbp,%rcx)
\taddq\t$32, %rcx
\tjne\t.LBB0_14
\tincq\t%rax
\tjne\t.LBB0_13
\tretq
.Lfunc_end0:
_ZN7cpython3toyE:
\tvfmadd231ss\t%xmm1, %xmm2, %xmm3
"""


def test_hot_loop_is_the_innermost_packed_loop():
    counts, width = cpu_asm.hot_loop(cpu_asm.first_function(TOY_ASM))
    assert width == 8
    assert (counts["fma"], counts["mul"], counts["add"], counts["vec_move"]) == (2, 1, 1, 2)
    assert counts["control"] == 1 and counts["integer"] == 1


def test_cpu_peak_measures_vectorised_fma(tmp_path):
    r = cpu_asm.measure_peak(iters=50, repeats=1)
    assert r["fma_lanes_per_s_per_core"] > 0
    widths = r["fma_instructions_by_width"]
    assert widths["ymm"] + widths["zmm"] > 0, f"the FMA kernel did not vectorise: {widths}"
    path = cpu_asm.write_peak(tmp_path)
    assert json.loads(path.read_text())["method"].startswith("best of")
    assert cpu_asm.read_peak(tmp_path)["fmas"] > 0


@pytest.mark.slow
def test_lane_kernel_counts_match_the_gpu_step():
    """The vectorised CPU step does the same floating-point work as the CUDA step: Lorenz
    Tsit5 float32 fixed has FMA-contracted arithmetic on both sides."""
    from solvers.fused import KernelKey

    prof = cpu_asm.lane_kernel_profile(KernelKey("lorenz", "tsit5", "fixed", "float32"))
    c = prof["counts"]
    assert prof["lanes_per_iteration"] in (4, 8, 16)
    assert c["fma"] > 0 and c["scalar_fp"] == 0
    assert prof["packed_fp_per_trajectory_step"] == c["fma"] + c["mul"] + c["add"] + c["fp_other"]
