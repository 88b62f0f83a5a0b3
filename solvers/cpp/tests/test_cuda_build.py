"""The CUDA form of the hand-written solver, compiled without a GPU: nvcc for sm_90 (registers,
no spills, no FP64 instruction in float32 SASS), NVRTC (the run-time path) for sm_90.

CUDA 13 (the toolchain here) no longer targets sm_70 (V100): sm_75 is compiled as the
nearest proxy; ``test_sm70_dropped_by_cuda13`` records the refusal rather than hiding it."""
import pytest

from solvers.cpp import build
from solvers.cpp.source import ENTRY_POINTS, cuda_source

NVCC = build.nvcc_candidates()
needs_nvcc = pytest.mark.skipif(not NVCC, reason="no nvcc (site-packages nvidia/cu13/bin or PATH)")


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_90", "sm_75"])
def test_float32_kernels_no_spills_no_fp64(arch, tmp_path):
    src, (name,) = cuda_source("lorenz", "tsit5", "adaptive", "float32")
    b = build.build_cubin(src, arch, tmp_path)
    usage = build.ptxas_usage(b.ptxas_log)
    assert set(usage) == set(ENTRY_POINTS.values()), b.ptxas_log
    for kernel, u in usage.items():
        assert u["spill_stores"] == 0 and u["spill_loads"] == 0, (kernel, u)
        assert 0 < u["registers"] <= 255, (kernel, u)
    fp64 = build.fp64_instructions(build.sass(b.cubin, b.nvcc))
    assert not fp64, f"FP64 instructions in a float32 kernel: {fp64[:5]}"


@needs_nvcc
def test_fp64_detector_sees_float64_kernels(tmp_path):
    """The FP64 check can fail: the float64 build is full of DFMA/DADD."""
    src, _ = cuda_source("lorenz", "tsit5", "fixed", "float64")
    b = build.build_cubin(src, "sm_90", tmp_path)
    assert any("DFMA" in ln for ln in build.fp64_instructions(build.sass(b.cubin, b.nvcc)))


@needs_nvcc
def test_sm70_dropped_by_cuda13(tmp_path):
    src, _ = cuda_source("lorenz", "tsit5", "fixed", "float32")
    try:
        build.build_cubin(src, "sm_70", tmp_path)
    except RuntimeError as exc:
        assert "sm_70" in str(exc)
    # a toolchain that still targets sm_70 (CUDA 12) builds it: nothing to assert then


def test_nvrtc_compiles_every_kernel():
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-python (NVRTC bindings) not installed")
    for (method, mode) in ENTRY_POINTS:
        for dtype in ("float32", "float64"):
            src, _ = cuda_source("lorenz", method, mode, dtype)
            assert len(build.nvrtc_cubin(src, "sm_90")) > 1000


def test_cuda_source_names_the_kernel():
    src, names = cuda_source("sir", "rk4_38", "fixed", "float32")
    assert names == ("rk4_38_fixed",) and f"FIXED_KERNEL({names[0]}," in src
    with pytest.raises(ValueError, match="no rk4 adaptive"):
        cuda_source("lorenz", "rk4", "adaptive", "float32")
