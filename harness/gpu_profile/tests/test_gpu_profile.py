"""GPU profile and time model: rows from compiling real code, float32 purity in SASS with a
negative control, and the model against hand-computed numbers."""
from __future__ import annotations

import math

import pytest

from harness.gpu_profile import kernels, model, sass, sources, tools

needs_tools = pytest.mark.skipif(bool(tools.missing_tools()),
                                 reason=f"CUDA tools missing: {', '.join(tools.missing_tools())}")

# A hand-written kernel with a time loop: 2 FFMA + 1 FMUL per iteration, float32 only.
CUDA_TOY = r"""
extern "C" __global__ void toy(float *x, int n_steps) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float a = x[i], b = x[i + 1];
    for (int s = 0; s < n_steps; ++s) {
        a = a * 1.5f + b;
        b = a * b;
        a = a * 0.5f + 2.0f;
    }
    x[i] = a + b;
}
"""


def _fused_key(mode="fixed", dtype="float32", method="tsit5"):
    from solvers.fused import KernelKey

    return KernelKey("lorenz", method, mode, dtype, target="cuda")


@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_float32_fused_kernels_have_no_fp64_sass(mode):
    for arch in ("sm_75", "sm_90"):
        row = sources.profile_numba(_fused_key(mode), arch)
        assert row["status"] == "ok", row["reason"]
        assert row["loop_found"] and row["loop_count"] >= 1
        assert row["registers"] > 0 and row["spill_store_bytes"] == 0
        assert row["step_ffma"] > 0
        assert row["step_fp64"] == 0, f"{mode} float32 kernel has FP64 SASS on {arch}"


@needs_tools
@pytest.mark.slow
def test_double_literal_variant_has_fp64_sass():
    row = sources.profile_numba(sources.mpgos_key(), "sm_90", variant=sources.MPGOS_VARIANT)
    assert row["status"] == "ok", row["reason"]
    assert row["step_fp64"] > 0


def test_mpgos_variant_replaces_only_expression_uses():
    src = sources.mpgos_variant_source()
    assert "10.0 * (" in src and "2.666 * " in src
    assert "_sigma, " in src  # the unpacking of the parameters is untouched


@needs_tools
def test_hand_written_cuda_loop_counts():
    rows = kernels.profile_cuda_source(CUDA_TOY, "sm_90", 256)
    assert len(rows) == 1
    r = rows[0]
    assert r["loop_found"] and r["step_fp64"] == 0
    # 3 FP32 FMA-like operations per iteration, unless nvcc unrolled the loop (then a multiple)
    fp32 = r["step_ffma"] + r["step_fmul"] + r["step_fadd"]
    assert fp32 >= 3 and fp32 % 3 == 0


def test_sass_parser_finds_outermost_loop_and_classifies():
    text = """
        .section	.text.k,"ax",@progbits
        /*0000*/                   S2R R0, SR_TID.X ;
.L_x_1:
        /*0010*/                   FFMA R1, R2, R3, R1 ;
.L_x_2:
        /*0020*/                   DADD R4, R4, R6 ;
        /*0030*/               @P1 BRA `(.L_x_2) ;
        /*0040*/                   MUFU.RCP R5, R5 ;
        /*0050*/               @P0 BRA `(.L_x_1) ;
        /*0060*/                   EXIT ;
.L_x_3:
        /*0070*/                   BRA `(.L_x_3);
"""
    lines = sass.split_functions(text)["k"]
    lp = sass.loop_profile(lines)
    assert lp.found and lp.loop_count == 2  # the self-branch trap is not a loop
    assert lp.total_in_loop == 5
    assert lp.per_iteration["ffma"] == 1 and lp.per_iteration["fp64"] == 1
    assert lp.per_iteration["mufu"] == 1 and lp.per_iteration["control"] == 2


def test_ptxas_log_parsing_and_occupancy():
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_90'\n"
           "ptxas info    : Function properties for k\n"
           "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 48 registers, used 0 barriers\n")
    r = sass.parse_ptxas(log)["k"]
    assert (r.registers, r.spill_store_bytes, r.spill_load_bytes, r.local_bytes) == (48, 4, 4, 8)
    # 48 regs -> 1536 per warp; a 256-thread block needs 12288; 65536 // 12288 = 5 blocks = 40 warps
    assert sass.occupancy(48, 256, "sm_90") == (40, 40 / 64)
    # Turing: 32 warps per SM at most
    assert sass.occupancy(32, 256, "sm_75") == (32, 1.0)
    assert sass.max_threads_per_block(255, sass.limits("sm_90")) == 256


def test_model_reproduces_hand_computed_numbers():
    gpu = model.GPUS["V100"]
    step = model.StepCounts({"ffma": 90, "integer": 10})
    # issue 100 cycles; FP32 pipe 90 * 32 / (64 / 4) = 180 cycles per warp-step: FP32-bound
    cyc = model.warp_step_cycles(step, gpu)
    assert cyc["fp32"] == 180 and cyc["thr"] == 180 and cyc["bound"] == "fp32"
    # throughput: 180 / 32 / (80 * 4) cycles per trajectory-step at 1.38 GHz = 12.737 ps
    assert model.ps_per_trajectory_step(step, gpu) == pytest.approx(180 / 32 / 320 / 1.38e9 * 1e12)
    assert model.ps_per_trajectory_step(step, gpu) == pytest.approx(12.737, abs=1e-3)
    # one warp (N = 32): latency-bound, 100 instructions x 4 cycles x 1000 steps / 1.38 GHz
    p = model.predict_fused(step, 32, gpu, n=32, steps=1000, bytes_per_trajectory=0)
    assert p.compute_s == pytest.approx(1000 * 400 / 1.38e9)
    assert p.total_s == pytest.approx(1000 * 400 / 1.38e9 + 6.7e-6)
    # N = 2**20 with 32 registers: 64 warps/SM resident = 8 blocks of 256; 4096 blocks over
    # 80 SMs x 8 = 640 per wave -> 7 waves (6 full at 16 warps per scheduler, last 256 blocks
    # -> 4 blocks on the busiest SM -> 8 warps); cycles per step = 6*16*180 + 8*180
    p = model.predict_fused(step, 32, gpu, n=2 ** 20, steps=1, bytes_per_trajectory=10)
    assert p.waves == 7
    assert p.compute_s == pytest.approx((6 * 16 * 180 + 8 * 180) / 1.38e9)
    assert p.memory_s == pytest.approx(2 ** 20 * 10 / 900e9)
    # array style: 1000 launches at N = 8: launch-bound, 3.8 us each + (6.7 - 3.8) us final sync
    assert model.predict_array(1000, 8, gpu, bytes_per_launch_per_trajectory=36) == pytest.approx(
        1000 * 3.8e-6 + 2.9e-6)
    # at N = 2**26 each launch moves 2.4 GB: bandwidth-bound
    n = 2 ** 26
    assert model.predict_array(10, n, gpu, bytes_per_launch_per_trajectory=36) == pytest.approx(
        10 * n * 36 / 900e9 + 2.9e-6)


def test_spec_table_has_a_source_for_every_card():
    for key, g in model.GPUS.items():
        assert g.sources and all(s in model.SOURCES for s in g.sources), key
    # the spec numbers reproduce the vendors' FP32 peaks (TFLOPS)
    assert model.GPUS["V100"].fp32_tflops == pytest.approx(14.1, abs=0.1)
    assert model.GPUS["RTX5000"].fp32_tflops == pytest.approx(11.2, abs=0.1)
    assert model.GPUS["H100"].fp32_tflops == pytest.approx(66.9, abs=0.2)
    assert math.isclose(model.GPUS["RTX5000"].fp32_lanes / model.GPUS["RTX5000"].fp64_lanes, 32)


def test_cli_rejects_bad_arch(tmp_path, capsys):
    from harness.cli import main

    assert main(["gpu-profile", "--arch", "sm70", "--out", str(tmp_path / "o")]) == 2
    assert "invalid architecture" in capsys.readouterr().err


def test_comparison_without_published_data_is_empty():
    import pandas as pd

    from harness.gpu_profile import compare

    pred = pd.DataFrame([dict(gpu="V100", compares_with="x", mode="fixed", series="s", n=8, predicted_s=1.0)])
    assert compare.ratio_table(pred, pd.DataFrame()).empty


@needs_tools
@pytest.mark.slow
def test_comparison_with_published_data():
    from harness.gpu_profile import compare
    from harness.results.paper import locate_paper_data

    if locate_paper_data()[0] is None:
        pytest.skip("results/paper_data is absent (set $PAPER_DATA_DIR): nothing to compare with")
    import pandas as pd

    pred, _ = compare.predictions(compare.headline_profiles(), pd.DataFrame())
    ratios = compare.ratio_table(pred, compare.published())
    fixed = ratios[(ratios["gpu"] == "V100") & (ratios["model"] == "fused tsit5 fixed")]
    assert len(fixed) == 1 and fixed["N=8388608"].iloc[0] > 0


def test_measured_vs_predicted_for_gpu_rows():
    import pandas as pd

    from harness.gpu_profile import compare

    assert compare.spec_for_gpu_name("NVIDIA H200") == "H200"
    assert compare.spec_for_gpu_name("Tesla V100-PCIE-32GB") == "V100"
    assert compare.spec_for_gpu_name("NVIDIA A100") is None
    prof = pd.DataFrame([dict(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", arch="sm_90",
                              variant="", status="ok", registers=32,
                              **{f"step_{c}": 0 for c in sass.CLASSES}, )])
    prof.loc[0, "step_ffma"] = 90
    prof.loc[0, "step_integer"] = 10
    df = pd.DataFrame([dict(backend="fused", device="gpu", problem="lorenz", method="tsit5", mode="fixed",
                            dtype="float32", n=32, status="ok", steps_mean=1000.0, rejected_mean=0.0,
                            time_s=1e-3)])
    t = compare.measured_vs_predicted(df, "NVIDIA H200", prof)
    assert len(t) == 1
    expected = model.predict_fused(model.StepCounts({"ffma": 90, "integer": 10}), 32, model.GPUS["H200"], 32,
                                   1000.0, bytes_per_trajectory=model.fused_bytes_per_trajectory(3, 3, 4)).total_s
    assert t["predicted_s"].iloc[0] == pytest.approx(expected)
    assert t["ratio"].iloc[0] == pytest.approx(expected / 1e-3)


@needs_tools
@pytest.mark.slow
def test_report_section_renders_without_published_data(tmp_path, monkeypatch):
    import pandas as pd

    from harness.gpu_profile.section import readme_paragraph, report_section
    from harness.report.figures.canvas import write_files

    monkeypatch.setenv("PAPER_DATA_DIR", str(tmp_path / "absent"))
    df = pd.DataFrame(columns=["backend", "status"])
    text = report_section(tmp_path, df, write_files)
    assert "ps per trajectory-step" in text and "| kernel | arch |" in text
    assert "Published timings not found" in text
    assert (tmp_path / "gpu_profile.csv").is_file()
    assert "GPU evidence without a GPU" in readme_paragraph(df)
