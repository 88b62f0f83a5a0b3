"""The adaptive lane layouts (one-pass, two-pass with interleaved lane pairs) and the fixed
step's lane loop (plain or in pairs) compute exactly what the serial kernel computes; the
interleaving rewrite; the ISA and peak tools."""
import numpy as np
import pytest

from problems.registry import get_problem
from solvers.fused.build import collect, cpu_kernel, kernel_args, make_inputs, make_outputs
from solvers.fused.codegen import LANE_LAYOUTS, KernelKey, default_lane_layout
from solvers.fused.emit import interleave_lane_loops
from solvers.fused.isa import fma_lane_ops, loop_profile, per_lane_step
from solvers.fused.peak import cpu_isa, fma_peak


def _run(key, inputs, variant):
    """Like ``run_cpu``, with the save buffer filled with NaN first: a trajectory that stops
    early leaves its later saves unwritten, and np.empty's leftovers must not be compared."""
    outputs = make_outputs(inputs)
    outputs["saved"][...] = np.nan
    cpu_kernel(key, variant)(*kernel_args(inputs, outputs))
    return collect(outputs, inputs.save_t.shape[0] > 0)


def _assert_lanes_equal_serial(key, inputs):
    """The lanes kernel of ``key`` gives what its serial kernel gives, bit for bit."""
    a = _run(key, inputs, "lanes")
    b = _run(key, inputs, "serial")
    np.testing.assert_array_equal(a.u_final, b.u_final)
    if inputs.save_t.shape[0]:
        np.testing.assert_array_equal(a.saved, b.saved)
    for name in ("accepted", "rejected", "rhs_evals", "status"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("layout", LANE_LAYOUTS)
@pytest.mark.parametrize("problem,method,dtype,save,lanes", [
    ("lorenz", "tsit5", "float32", "final", 32),
    # the rest of the sweep compiles two kernels each (10-30 s cold): `make test-all` runs it
    pytest.param("lorenz", "tsit5", "float64", "dense", 6, marks=pytest.mark.slow),  # even, not a multiple of the width
    pytest.param("lorenz", "tsit5", "float32", "final", 7, marks=pytest.mark.slow),  # odd: not interleaved
    pytest.param("robertson", "rosenbrock23", "float64", "stop", 8, marks=pytest.mark.slow),  # all stop early
    pytest.param("robertson", "rodas4", "float64", "dense", 8, marks=pytest.mark.slow),
])
def test_layouts_equal_serial(layout, problem, method, dtype, save, lanes):
    prob = get_problem(problem)
    n = 19  # a partial last block
    u0, p = prob.ensemble(n, dtype)
    saveat = None if save == "final" else np.linspace(*prob.tspan, 5)
    inputs = make_inputs(u0, p, prob.tspan, dtype, mode="adaptive", dt=prob.dt, rtol=1e-6, atol=1e-6,
                         saveat=saveat)
    key = KernelKey(problem, method, "adaptive", dtype, save=save, lanes=lanes, lane_layout=layout)
    _assert_lanes_equal_serial(key, inputs)


@pytest.mark.parametrize("layout", LANE_LAYOUTS)
@pytest.mark.parametrize("lanes,save,dtype", [
    (32, "final", "float32"),  # two-pass: four ways of 8 lanes
    pytest.param(6, "grid", "float32", marks=pytest.mark.slow),  # two-pass: pairs of 3 lanes
    pytest.param(16, "grid", "float64", marks=pytest.mark.slow),  # two-pass: four ways of 4 lanes
])
def test_fixed_step_lanes_equal_serial(layout, lanes, save, dtype):
    """The fixed step's lane loop, plain ("one-pass") or interleaved ("two-pass", the layout
    of a core without AVX-512: four ways or pairs, ``codegen.lane_ways``), computes what the
    serial kernel computes."""
    prob = get_problem("lorenz")
    u0, p = prob.ensemble(19, dtype)  # a partial last block
    n_steps = 200
    saveat = None if save == "final" else np.linspace(0.0, n_steps * prob.dt, 5)
    inputs = make_inputs(u0, p, (0.0, n_steps * prob.dt), dtype, mode="fixed", dt=prob.dt,
                         n_steps=n_steps, saveat=saveat)
    key = KernelKey("lorenz", "tsit5", "fixed", dtype, save=save, lanes=lanes, lane_layout=layout)
    _assert_lanes_equal_serial(key, inputs)


def test_auto_layout_follows_the_isa():
    assert KernelKey("lorenz", "tsit5", "adaptive", "float32").lane_layout == default_lane_layout()
    assert default_lane_layout() == ("one-pass" if cpu_isa()["isa"] == "avx512" else "two-pass")
    with pytest.raises(ValueError, match="lane_layout"):
        KernelKey("lorenz", "tsit5", "adaptive", "float32", lane_layout="three-pass")


def test_interleave_runs_both_lanes_in_order():
    src = ("def f(S, out):\n"
           "    acc = False\n"
           "    for l in range(_LP):\n"
           "        a = S[l] * 2.0\n"
           "        b = a + 1.0\n"
           "        out[l] = b\n"
           "        acc = acc | (b > 4.0)\n"
           "    return acc\n")
    new = interleave_lane_loops(src, "_LP", "_LH", keep=("acc",))
    assert "range(_LH)" in new and "a__2 = S[l_2] * 2.0" in new
    ns_plain, ns_new = {"_LP": 6}, {"_LH": 3}
    exec(src, ns_plain)
    exec(new, ns_new)
    S = np.arange(6.0)
    o1, o2 = np.zeros(6), np.zeros(6)
    assert ns_plain["f"](S, o1) == ns_new["f"](S, o2)
    np.testing.assert_array_equal(o1, o2)
    with pytest.raises(ValueError, match="straight-line"):
        interleave_lane_loops(src.replace("        b = a + 1.0\n", "        if a:\n            b = 1.0\n"),
                              "_LP", "_LH")
    # four ways: lanes l, l + _LQ, l + 2 _LQ, l + 3 _LQ, statement by statement
    four = interleave_lane_loops(src, "_LP", "_LQ", keep=("acc",), ways=4)
    assert "l_4 = l + 3 * _LQ" in four and "a__4 = S[l_4] * 2.0" in four
    body = [line.strip() for line in four.splitlines()]
    first = body.index("a = S[l] * 2.0")
    assert body[first:first + 4] == ["a = S[l] * 2.0", "a__2 = S[l_2] * 2.0", "a__3 = S[l_3] * 2.0", "a__4 = S[l_4] * 2.0"]
    ns_four, o4 = {"_LQ": 2}, np.zeros(8)
    exec(four, ns_four)
    S8, o8 = np.arange(8.0), np.zeros(8)
    ns_plain8 = {"_LP": 8}
    exec(src, ns_plain8)
    assert ns_plain8["f"](S8, o8) == ns_four["f"](S8, o4)
    np.testing.assert_array_equal(o8, o4)
    assert interleave_lane_loops(src, "_LP", "_LQ", ways=1) == src


def test_loop_profile_counts_one_lane_loop():
    asm = "\n".join([
        "_ZN5block:", "\tmovq\t$0, %rax", ".LBB0_1:", "\txorl\t%ecx, %ecx", ".LBB0_2:",
        "\tvmovups\t(%r13,%rax), %ymm0",
        "\tvfmadd213ps\t8(%rsp), %ymm1, %ymm0",
        "\tvmaskmovps\t%ymm0, %ymm2, 128(%r13,%rax)",
        "\tvmovups\t%zmm0, 64(%r13,%rax) {%k1}",
        "\tvmovups\t%ymm0, 32(%rsp)",
    ] + ["\tvaddps\t%ymm0, %ymm0, %ymm0"] * 30 + [
        "\taddq\t$32, %rax", "\tjne\t.LBB0_2", "\tjmp\t.LBB0_1", "_ZN5other:", "\tretq"])
    loops = loop_profile(asm)
    inner = [lp for lp in loops if lp["inner"]][0]
    assert inner["kinds"]["masked store"] == 2 and inner["kinds"]["fma"] == 1
    assert inner["stores"] == 3 and inner["stack_stores"] == 1 and inner["stack_loads"] == 1
    key = KernelKey("lorenz", "tsit5", "fixed", "float32", lane_layout="one-pass")  # a plain lane loop
    r = per_lane_step(key, asm)
    assert r["lane_loops"] == 1 and r["vector_bits"] == 512
    assert r["instructions_per_lane_step"] == pytest.approx(inner["instructions"] / 16, abs=0.01)  # rounded
    # "two-pass" (a core without AVX-512) interleaves the fixed step's lane loop: 32 lanes four ways
    paired = per_lane_step(KernelKey("lorenz", "tsit5", "fixed", "float32", lane_layout="two-pass"), asm)
    assert paired["lanes_per_iteration"] == [64]


def test_peak_and_isa_are_reported():
    info = cpu_isa()
    assert info["isa"] in ("avx512", "avx2", "avx", "sse") and info["vector_bits"] in (128, 256, 512)
    r = fma_peak("float32", seconds=0.01, repeats=1)
    assert r["lane_fma_per_ns"] > 0 and r["vector_lanes"] == info["vector_bits"] // 32


def test_backend_passes_the_lane_layout_on():
    from solvers.base import SolveSpec
    from solvers.fused.backend import FusedBackend

    spec = SolveSpec(problem="lorenz", method="tsit5", dtype="float32", n=8, mode="adaptive")
    assert FusedBackend().kernel_key(spec).lane_layout == default_lane_layout()
    for layout in LANE_LAYOUTS:
        assert FusedBackend(lane_layout=layout).kernel_key(spec).lane_layout == layout
    with pytest.raises(ValueError, match="lane_layout"):
        FusedBackend(lane_layout="three-pass")


def test_mca_floor_when_llvm_mca_is_installed():
    """llvm-mca's cycles for a lane loop (None without llvm-mca: the tool says so, no number)."""
    import shutil

    from solvers.fused.isa import mca_cycles

    body = ["_ZN5block:", ".LBB0_1:"] + ["\tvfmadd231ps\t%ymm1, %ymm2, %ymm0"] * 40 + ["\tjne\t.LBB0_1"]
    asm = "\n".join(body)
    lp = [lp for lp in loop_profile(asm) if lp["inner"]][0]
    m = mca_cycles(asm, lp, "znver3")
    if shutil.which("llvm-mca") is None:
        assert m is None
    else:  # 40 FMAs on one accumulator: the chain (latency >= 3 cycles each) sets the pace
        assert 0 < m["block_rthroughput"] <= m["cycles"]
        assert m["cycles"] >= 40 * 3


def test_unrolled_lane_loops_are_analysed_as_the_time_loop():
    """A block whose lane loops LLVM unrolled away (e.g. 16 lanes as two 8-lane halves) has no
    inner lane loop: its time loop is the body, one iteration serving all lanes (not 0 ops)."""
    asm = "\n".join(["_ZN5block:", "\tmovq\t$0, %rax", ".LBB0_0:"] + ["\tvmovups\t%xmm0, (%rdi)"] * 40
                    + ["\tjne\t.LBB0_0", ".LBB0_1:"]
                    + ["\tvfmadd213ps\t%ymm2, %ymm1, %ymm0"] * 24 + ["\tvmulps\t%ymm0, %ymm0, %ymm0"] * 8
                    + ["\ttestb\t%al, %al", "\tjne\t.LBB0_1", "\tretq", "_ZN5other:", "\tretq"])
    key = KernelKey("lorenz", "tsit5", "adaptive", "float32", lanes=16)
    r = per_lane_step(key, asm)
    assert r["lane_loops"] == 1 and r["lanes_per_iteration"] == [16] and r["vector_bits"] == 256
    assert r["instructions_per_lane_step"] == pytest.approx(34 / 16, abs=0.01)  # + the back edge
    assert fma_lane_ops(r, "float32") == pytest.approx((24 + 8) * 8 / 16)


def test_two_pass_loops_are_analysed_with_their_own_interleaving():
    """The two-pass block interleaves lane pairs in its attempt and control loops and not in
    its commit loop (``pass_interleave``): per_lane_step divides each loop by its own lanes,
    and a block whose loop count differs from the generated one is refused, not guessed."""
    from solvers.fused.codegen import pass_interleave

    key = KernelKey("lorenz", "tsit5", "adaptive", "float32", lanes=32, lane_layout="two-pass")
    assert pass_interleave(key) == (2, 2, 1)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "adaptive", "float32", lanes=7, lane_layout="two-pass")) == (1, 1, 1)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "adaptive", "float32", lane_layout="one-pass")) == (2,)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "fixed", "float32", lane_layout="one-pass")) == (1,)
    # fixed step without AVX-512: four ways where each fills a 256-bit vector, else pairs
    assert pass_interleave(KernelKey("lorenz", "tsit5", "fixed", "float32", lane_layout="two-pass")) == (4,)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "fixed", "float32", lanes=16, lane_layout="two-pass")) == (2,)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "fixed", "float64", lanes=16, lane_layout="two-pass")) == (4,)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "fixed", "float32", lanes=34, lane_layout="two-pass")) == (2,)
    assert pass_interleave(KernelKey("lorenz", "tsit5", "fixed", "float32", lanes=7, lane_layout="two-pass")) == (1,)
    assert pass_interleave(KernelKey("robertson", "rosenbrock23", "fixed", "float64", lane_layout="two-pass")) == (1,)

    def lane_loop(label):
        return ([f".{label}:"] + ["\tvfmadd213ps\t%ymm2, %ymm1, %ymm0"] * 32
                + ["\taddq\t$32, %rax", f"\tjne\t.{label}"])
    body = lane_loop("LBB0_2") + lane_loop("LBB0_3") + lane_loop("LBB0_4")
    asm = "\n".join(["_ZN5block:", "\tmovq\t$0, %rax", ".LBB0_1:", "\txorl\t%ecx, %ecx"] + body
                    + ["\ttestb\t%al, %al", "\tjne\t.LBB0_1", "\tretq", "_ZN5other:", "\tretq"])
    r = per_lane_step(key, asm)
    assert r["lanes_per_iteration"] == [16, 16, 8]
    assert r["instructions_per_lane_step"] == pytest.approx(34 / 16 + 34 / 16 + 34 / 8, abs=0.01)
    assert per_lane_step(key, asm, interleave=1)["lanes_per_iteration"] == [8, 8, 8]
    two_loops = "\n".join(["_ZN5block:", "\tmovq\t$0, %rax", ".LBB0_1:", "\txorl\t%ecx, %ecx"] + lane_loop("LBB0_2") + lane_loop("LBB0_3")
                          + ["\ttestb\t%al, %al", "\tjne\t.LBB0_1", "\tretq", "_ZN5other:", "\tretq"])
    with pytest.raises(ValueError, match="2 lane loops found"):
        per_lane_step(key, two_loops)
