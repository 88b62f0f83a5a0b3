"""Float32 kernels compute in float32: no float64 instruction in their LLVM IR or PTX.

Each check is shown able to fail: the same checkers flag deliberately promoted code.
"""
import numba
import numpy as np
import pytest

from solvers.fused.build import module_path
from solvers.fused.codegen import KernelKey
from solvers.fused.purity import (
    compute_functions, cpu_llvm, cuda_ptx, llvm_f64_lines, ptx_f64_lines, sample_args,
)

# Every method with every problem it applies to, plus the two adaptive save modes.
KEYS = (
    [KernelKey(p, m, mode, "float32") for p in ("lorenz", "sir")
     for m, mode in (("tsit5", "fixed"), ("tsit5", "adaptive"), ("rk4", "fixed"), ("rk4_38", "fixed"))]
    + [KernelKey("robertson", m, "adaptive", "float32") for m in ("rosenbrock23", "rodas4", "rodas5p")]
    + [KernelKey("lorenz", "tsit5", "adaptive", "float32", save="dense"),
       KernelKey("robertson", "rosenbrock23", "adaptive", "float32", save="stop"),
       KernelKey("sir", "tsit5", "fixed", "float32", save="grid")]
)


def _id(key):
    return f"{key.problem}-{key.method}-{key.mode}-{key.save}"


def _params():
    """Every method once on Lorenz or Robertson in `make test`; the SIR repeats, the Rodas kernels
    (10-13 s each to compile) and the save modes in the slow set (`make test-all`, CI)."""
    for key in KEYS:
        everyday = key.problem == "lorenz" and key.save == "final" or key.method == "rosenbrock23" and key.save == "final"
        yield pytest.param(key, id=_id(key), marks=[] if everyday else [pytest.mark.slow])


def _ptx_available():
    try:
        from numba import cuda

        def k(x):
            x[0] = x[0] + numba.float32(1)

        cuda.compile_ptx(k, (numba.float32[::1],), cc=(9, 0))
        return True, ""
    except Exception as exc:  # no numba-cuda / NVVM here
        return False, f"numba.cuda.compile_ptx unavailable: {type(exc).__name__}: {exc}"


PTX_OK, PTX_WHY = _ptx_available()
needs_ptx = pytest.mark.skipif(not PTX_OK, reason=PTX_WHY)


@pytest.mark.parametrize("key", list(_params()))
def test_cpu_kernel_is_float32(key):
    ir = cpu_llvm(key)
    assert "<16 x float>" in ir or "<8 x float>" in ir, "lane kernel not vectorised"
    bad = llvm_f64_lines(ir)
    assert not bad, f"{len(bad)} float64 instructions, e.g. {bad[:3]}"


@needs_ptx
@pytest.mark.parametrize("key", list(_params()))
def test_cuda_kernel_is_float32(key):
    ptx = cuda_ptx(KernelKey(**{**key.__dict__, "target": "cuda"}))
    assert ".entry" in ptx and "f32" in ptx
    bad = ptx_f64_lines(ptx)
    assert not bad, f"{len(bad)} float64 instructions, e.g. {bad[:3]}"


# ---- negative controls: the checkers catch promotion ---------------------------------------

def test_llvm_checker_flags_a_float_literal():
    @numba.njit
    def promoted(x):
        return x * 2.5  # a float64 literal

    @numba.njit
    def typed(x):
        return x * np.float32(2.5)

    sig = (numba.float32,)
    promoted.compile(sig)
    typed.compile(sig)
    assert llvm_f64_lines(compute_functions(promoted.inspect_llvm(sig)))
    assert not llvm_f64_lines(compute_functions(typed.inspect_llvm(sig)))


def test_llvm_checker_flags_a_promoted_kernel():
    """A real generated kernel with one typed constant replaced by the float literal it
    stands for (RK4's a21 = 0.5) is caught."""
    key = KernelKey("lorenz", "rk4", "fixed", "float32")
    src = module_path(key).read_text()
    assert "(_a_1_0 *" in src
    ns = {"__name__": "promoted_kernel"}
    exec(compile(src.replace("(_a_1_0 *", "(0.5 *").replace("cache=True", "cache=False"), "<promoted>", "exec"), ns)
    args = (0,) + sample_args(key)
    sig = tuple(numba.typeof(a) for a in args)
    ns["_block"].compile(sig)
    bad = llvm_f64_lines(compute_functions(ns["_block"].inspect_llvm(sig)))
    assert any("double" in line for line in bad), bad


@needs_ptx
def test_ptx_checker_flags_a_float_literal():
    from numba import cuda

    def promoted(x, y):
        i = cuda.grid(1)
        if i < x.size:
            y[i] = x[i] * 2.5 + numba.float32(1)

    def typed(x, y):
        i = cuda.grid(1)
        if i < x.size:
            y[i] = x[i] * numba.float32(2.5) + numba.float32(1)

    sig = (numba.float32[::1], numba.float32[::1])
    bad = ptx_f64_lines(cuda.compile_ptx(promoted, sig, cc=(9, 0))[0])
    assert any("f64" in line for line in bad), bad
    assert not ptx_f64_lines(cuda.compile_ptx(typed, sig, cc=(9, 0))[0])


# Synthetic lines for each pattern the checkers must catch, and look-alikes they must not.
PTX_F64_LINES = [
    "@%p1 add.f64 %fd3, %fd1, %fd2;",      # predicated f64 instruction
    "@!%p2 fma.rn.f64 %fd4, %fd1, %fd2, %fd3;",
    "mov.b64 %fd1, %rd4;",                 # a bit move into an f64 register
    ".reg .f64 %fd<4>;",                   # an f64 register declared
    "st.global.b64 [%rd1], %fd2;",         # an f64 register stored with an untyped store
    "cvt.rn.f32.f64 %f1, %fd1;",
    "setp.lt.f64 %p1, %fd1, %fd2;",
]
PTX_F32_LINES = ["@%p1 add.f32 %f3, %f1, %f2;", "mov.b64 %rd1, %rd2;", ".reg .f32 %f<8>;",
                 "// add.f64 in a comment", "st.global.f32 [%rd1], %f2;", "mov.b32 %f1, %r4;"]
LLVM_F64_LINES = [
    "%.5 = select i1 %.4, double %.2, double %.3",
    "%.7 = phi double [ %.1, %B0 ], [ %.6, %B1 ]",
    "%.8 = load double, ptr %.9, align 8",
    "store double %.8, ptr %.10, align 8",
    "%.11 = fptrunc double %.8 to float",
    "%.12 = sitofp i64 %.3 to double",
    "%.13 = select i1 %.4, <8 x double> %.a, <8 x double> %.b",
    "%.14 = call float @llvm.fma.f64(double %.1, double %.2, double %.3)",
    "%.15 = alloca double, align 8",
]
LLVM_F32_LINES = ["%.5 = select i1 %.4, float %.2, float %.3", "%.7 = phi float [ %.1, %B0 ]",
                  "%.8 = load float, ptr %.9, align 4", "; a comment about double",
                  "%.14 = call float @llvm.fma.f32(float %.1, float %.2, float %.3)"]


@pytest.mark.parametrize("line", PTX_F64_LINES)
def test_ptx_checker_flags_every_f64_form(line):
    assert ptx_f64_lines(line) == [line]


@pytest.mark.parametrize("line", PTX_F32_LINES)
def test_ptx_checker_passes_float32_look_alikes(line):
    assert ptx_f64_lines(line) == []


@pytest.mark.parametrize("line", LLVM_F64_LINES)
def test_llvm_checker_flags_every_double_form(line):
    assert llvm_f64_lines(line) == [line]


@pytest.mark.parametrize("line", LLVM_F32_LINES)
def test_llvm_checker_passes_float32_look_alikes(line):
    assert llvm_f64_lines(line) == []


def test_llvm_checker_flags_a_double_that_is_only_selected_and_truncated():
    """No double arithmetic, only a double chosen and rounded to float32: still flagged."""
    @numba.njit
    def chooses(c, a, b, x):
        return np.float32(a if c else b) * x

    sig = (numba.boolean, numba.float64, numba.float64, numba.float32)
    chooses.compile(sig)
    bad = llvm_f64_lines(compute_functions(chooses.inspect_llvm(sig)))
    assert any("fptrunc" in line or "select" in line for line in bad), bad
