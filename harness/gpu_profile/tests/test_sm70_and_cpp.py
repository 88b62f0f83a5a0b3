"""sm_70 rows from the real CUDA 12 ptxas (SASS counts from sm_75), the all-proxy fallback, and
the hand-written C++ kernels profiled beside Numba's."""
from __future__ import annotations

import pandas as pd
import pytest

from harness.gpu_profile import kernels, sass, section, sources, tools

needs_tools = pytest.mark.skipif(bool(tools.missing_tools()),
                                 reason=f"CUDA tools missing: {', '.join(tools.missing_tools())}")
needs_cuda12 = pytest.mark.skipif(tools.sm70_ptxas() is None,
                                  reason="no CUDA 12 ptxas (PyPI nvidia-cuda-nvcc-cu12) for sm_70")


def _key(mode="fixed", dtype="float32", method="tsit5"):
    from solvers.fused import KernelKey

    return KernelKey("lorenz", method, mode, dtype, target="cuda")


@needs_tools
@needs_cuda12
@pytest.mark.slow
def test_sm70_row_takes_resources_from_the_cuda12_ptxas_and_sass_from_sm75():
    row = sources.profile_numba(_key(), "sm_70")
    assert row["status"] == "ok", row["reason"]
    assert (row["arch"], row["assembled_for"], row["sass_from"]) == ("sm_70", "sm_70", "sm_75")
    v12 = tools.tool_version(tools.sm70_ptxas())
    assert v12.startswith("release 12.") and row["toolchain"].startswith(f"ptxas {v12} (sm_70)")
    assert "SASS counts:" in row["toolchain"]
    # The registers are those the CUDA 12 ptxas reports for sm_70, not the sm_75 proxy's.
    real = tools.assemble_ptx(sources.fused_ptx(_key()), "sm_70")
    assert real.assembled_for == "sm_70" and "sm_70" in real.ptxas_log
    (res,) = sass.parse_ptxas(real.ptxas_log).values()
    assert row["registers"] == res.registers and row["spill_store_bytes"] == res.spill_store_bytes
    assert row["step_total"] > 0 and row["step_ffma"] > 0 and row["step_fp64"] == 0
    assert row["occupancy"] == round(sass.occupancy(res.registers, row["block"], "sm_70")[1], 4)


@needs_tools
@pytest.mark.slow
def test_sm70_falls_back_to_the_sm75_proxy_without_cuda12(monkeypatch):
    monkeypatch.setattr(tools, "sm70_ptxas", lambda: None)
    (row,) = kernels.profile_ptx(sources.fused_ptx(_key()), "sm_70", sources.DEFAULT_BLOCK)
    assert (row["arch"], row["assembled_for"], row["sass_from"]) == ("sm_70", "sm_75", "sm_75")
    assert "release 12." not in row["toolchain"] and "SASS counts" not in row["toolchain"]
    assert row["registers"] > 0 and row["step_ffma"] > 0
    assert section._arch_label(row) == "sm_70 (as sm_75)"


@needs_tools
@pytest.mark.slow
def test_cuda_cpp_rows_beside_numba_and_float32_has_no_fp64():
    keys = [_key("fixed"), _key("adaptive")]
    archs = ("sm_70", "sm_90")
    rows = pd.DataFrame(sources.fused_profiles(archs, keys, include_mpgos=False))
    assert set(rows["source"]) == {sources.NUMBA_SOURCE, sources.CPP_SOURCE}
    assert len(rows) == 2 * len(keys) * len(archs)
    assert (rows["status"] == "ok").all(), rows[rows["status"] != "ok"]["reason"].tolist()
    cpp = rows[rows["source"] == sources.CPP_SOURCE]
    assert set(cpp["kernel"]) == {"tsit5_fixed", "tsit5_adaptive"}
    assert (cpp["step_fp64"] == 0).all() and (cpp["ptx_f64_lines"] == 0).all()
    assert (cpp["step_ffma"] > 0).all() and cpp["loop_found"].all()
    assert cpp["toolchain"].str.startswith("nvcc ").all()
    pairs = section._pairs(rows)
    assert len(pairs) == len(keys) * len(archs)
    table = section._side_by_side(pairs)
    assert "lorenz tsit5 adaptive float32" in table and " / " in table
    cmp = section.cpp_comparison(rows)
    assert set(cmp) == {"fixed", "adaptive"}
    assert section._cpp_sentence(cmp).count("ps per trajectory-step") == 2


def test_cpp_support_follows_the_backend_entry_points():
    assert sources.cpp_supports(_key("fixed")) and sources.cpp_supports(_key("adaptive"))
    assert sources.cpp_supports(_key("fixed", method="rk4_38"))
    from solvers.fused import KernelKey

    assert not sources.cpp_supports(KernelKey("robertson", "rosenbrock23", "adaptive", "float64", target="cuda"))


def test_side_by_side_and_sentence_from_rows():
    base = {c: 0 for c in kernels.PROFILE_COLUMNS}
    rows = []
    for src, regs, ffma, total in (("numba", 48, 75, 110), ("cuda-cpp", 40, 70, 100)):
        r = dict(base, problem="lorenz", method="tsit5", mode="fixed", dtype="float32", variant="", source=src,
                 arch="sm_90", assembled_for="sm_90", sass_from="sm_90", status="ok", registers=regs,
                 step_ffma=ffma, step_fmul=5, step_fadd=5, step_total=total)
        rows.append(r)
    prof = pd.DataFrame(rows)
    table = section._side_by_side(section._pairs(prof))
    assert "| 48 / 40 |" in table and "| 75 / 70 |" in table and "| 85 / 80 |" in table and "| 1.10 |" in table
    text = section._cpp_sentence(section.cpp_comparison(prof))
    assert "110 vs 100 SASS instructions per step (1.10x)" in text and "48 vs 40 registers" in text


def test_cli_rejects_an_unknown_kernel_source(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "harness", "gpu-profile", "--source", "cuda", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: invalid --source cuda: choose from numba, cuda-cpp"]


def test_both_cuda_toolchains_resolve_side_by_side():
    """The CUDA 13 tools and the CUDA 12 ptxas live in different folders and never shadow each other."""
    p13, p12 = tools.find_tool("ptxas"), tools.sm70_ptxas()
    if p13 is None or p12 is None:
        pytest.skip(f"needs both ptxas (CUDA 13: {p13}, CUDA 12: {p12})")
    assert p13 != p12
    assert tools.tool_version(p13).startswith("release 13.") and tools.tool_version(p12).startswith("release 12.")
    assert tools.find_tool("nvdisasm") is not None and tools.find_tool("nvcc") is not None


UNROLLED_BY_TWO = """
        .section	.text.k,"ax",@progbits
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/               @P0 BRA `(.L_x_1) ;
        /*0020*/                   FFMA R1, R2, R3, R1 ;
        /*0030*/                   FMUL R4, R1, R3 ;
.L_x_1:
        /*0040*/              @!P1 BRA `(.L_x_0) ;
.L_x_2:
        /*0050*/                   FFMA R1, R2, R3, R1 ;
        /*0060*/                   FMUL R4, R1, R3 ;
        /*0070*/                   FFMA R1, R2, R3, R1 ;
        /*0080*/                   FMUL R4, R1, R3 ;
        /*0090*/                   IADD3 R5, R5, -0x2, RZ ;
        /*00a0*/               @P0 BRA `(.L_x_2) ;
.L_x_0:
        /*00b0*/                   EXIT ;
"""


def test_loop_unrolled_by_two_with_a_peeled_step_counts_per_step():
    lp = sass.loop_profile(sass.split_functions(UNROLLED_BY_TWO)["k"])
    assert lp.found and lp.unroll == 2
    assert lp.per_iteration["ffma"] == 1 and lp.per_iteration["fmul"] == 1
    # the peeled block differs from half the loop: no unrolling read into it
    text = UNROLLED_BY_TWO.replace("        /*0030*/                   FMUL R4, R1, R3 ;\n", "")
    lp1 = sass.loop_profile(sass.split_functions(text)["k"])
    assert lp1.unroll == 1 and lp1.per_iteration["ffma"] == 2


UNROLLED_WITH_EPILOGUE = """
        .section	.text.k,"ax",@progbits
        /*0000*/                   S2R R0, SR_TID.X ;
.L_x_2:
        /*0010*/                   FFMA R1, R2, R3, R1 ;
        /*0020*/                   FADD R4, R1, R3 ;
        /*0030*/                   FFMA R1, R2, R3, R1 ;
        /*0040*/                   FADD R4, R1, R3 ;
        /*0050*/               @P0 BRA `(.L_x_2) ;
        /*0060*/               @P1 BRA `(.L_x_3) ;
        /*0070*/                   FFMA R1, R2, R3, R1 ;
        /*0080*/                   FADD R4, R1, R3 ;
.L_x_3:
        /*0090*/                   EXIT ;
"""


def test_loop_unrolled_by_two_with_an_epilogue_step_counts_per_step():
    lp = sass.loop_profile(sass.split_functions(UNROLLED_WITH_EPILOGUE)["k"])
    assert lp.unroll == 2 and lp.per_iteration["ffma"] == 1 and lp.per_iteration["fadd"] == 1


@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize("method", ["rk4", "rk4_38"])
def test_unrolled_rk4_loops_are_counted_per_step(method):
    numba = sources.profile_numba(_key(method=method), "sm_90")
    cpp = sources.profile_cpp(_key(method=method), "sm_90")
    assert numba["status"] == cpp["status"] == "ok"
    # same algorithm, same FP32 work per step whether or not the loop was unrolled
    assert numba["step_ffma"] + numba["step_fmul"] + numba["step_fadd"] == pytest.approx(
        cpp["step_ffma"] + cpp["step_fmul"] + cpp["step_fadd"], rel=0.15)
