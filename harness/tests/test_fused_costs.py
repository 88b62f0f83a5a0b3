"""The fused kernels' step costs against the FMA floor (issue 29): the arithmetic, the counts
read from the compiled kernel, the fingerprint record and the sentence the README prints."""
from __future__ import annotations

import math

import pytest

from harness.measure.fused_costs import block_efficiency, block_steps, floor_fraction
from harness.report.summary import cpu_differs_sentence, kernel_costs_sentence
from solvers.fused.isa import fma_lane_ops


def test_floor_fraction_is_the_floor_over_the_measured_step():
    # 105 lane-FMAs at 50 per ns: 2.1 ns; a measured 2.8 ns per step reaches 75% of it
    r = floor_fraction(105.0, 2.8, 50.0)
    assert r["fma_floor_ns"] == pytest.approx(2.1)
    assert r["fma_floor_fraction"] == pytest.approx(0.75)


def test_fma_lane_ops_counts_fma_and_multiply_lanes_per_lane_step():
    # one 16-lane loop: 75 FMAs + 30 multiplies an iteration serve 16 lane-steps: 105 lane-ops each;
    # a loop interleaving two 16-lane vectors serves 32 lane-steps with twice the instructions
    one = {"loops": [{"kinds": {"fma": 75, "mul": 30, "add/sub": 12}, "vector_bits": 512, "lanes_per_iteration": 16}]}
    two = {"loops": [{"kinds": {"fma": 150, "mul": 60}, "vector_bits": 512, "lanes_per_iteration": 32}]}
    assert fma_lane_ops(one, "float32") == 105.0
    assert fma_lane_ops(two, "float32") == 105.0
    f64 = {"loops": [{"kinds": {"fma": 75, "mul": 30}, "vector_bits": 512, "lanes_per_iteration": 8}]}
    assert fma_lane_ops(f64, "float64") == 105.0


def test_block_steps_count_each_blocks_slowest_lane():
    steps = [10, 12, 7, 7, 5]
    assert block_steps(steps, 2) == 2 * 12 + 2 * 7 + 1 * 5
    assert block_efficiency(steps, 2) == pytest.approx(41 / 43)


ENV = {"cpu_vector": {"cpu_name": "znver4", "isa": "avx512", "fma_peak_f32_per_ns": 57.8},
       "fused_kernel_costs": {"n": 65536, "command": "python -m solvers.fused.bench --cases fixed adaptive-1e-6 "
                                                     "--variants lanes --n 65536 --repeats 5 --lanes 32",
                              "cases": {"fixed": {"fma_floor_fraction": 0.893, "fma_lane_ops_per_step": 105.0}},
                              "adaptive_over_fixed": {"wall": 2.41, "cpu_time": 2.4, "mca_dependencies": 2.05}}}


def test_the_readme_sentence_comes_from_the_fingerprint():
    text = cpu_differs_sentence(ENV)
    assert "reached 89% of that FMA-bound floor (105 lane-FMAs per step)" in text
    assert "cost 2.41x a fixed one by median times (llvm-mca's model of this CPU: 2.05x), at N = 65,536" in text
    by_round = {**ENV["fused_kernel_costs"], "adaptive_over_fixed": {
        **ENV["fused_kernel_costs"]["adaptive_over_fixed"], "wall_by_round": {"median": 2.3, "min": 2.11, "max": 3.26,
                                                                              "rounds": 3}}}
    assert ("cost 2.41x a fixed one by median times; 2.30x taken round by round, 2.11-3.26x over 3 rounds "
            "(llvm-mca's model" in kernel_costs_sentence({"fused_kernel_costs": by_round}))
    best = {**by_round, "cases": {"fixed": {**by_round["cases"]["fixed"], "best_round": {"fma_floor_fraction": 0.912}}}}
    assert ("reached 89% of that FMA-bound floor by its median time, 91% in the fastest of its 3 rounds (105 "
            in kernel_costs_sentence({"fused_kernel_costs": best}))
    # the peak quoted is the one the floor was computed from (the cpu_vector one was 57.8)
    own_peak = {**ENV, "fused_kernel_costs": {**ENV["fused_kernel_costs"], "fma_peak_f32_per_ns": 60.1}}
    assert "measured 60.1 float32 FMA per ns on one core. The fused kernel's" in cpu_differs_sentence(own_peak)
    assert "measured 57.8 float32 FMA per ns" in cpu_differs_sentence({"cpu_vector": ENV["cpu_vector"]})
    assert kernel_costs_sentence({}) == "" and kernel_costs_sentence({"fused_kernel_costs": {"error": "x"}}) == ""
    assert "steal" not in text  # measured before steal was recorded: nothing claimed either way
    stolen = {**ENV["fused_kernel_costs"], "cases": {"fixed": {**ENV["fused_kernel_costs"]["cases"]["fixed"],
                                                               "host_steal": 0.01},
                                                     "adaptive-1e-6": {"host_steal": 0.07}}}
    assert "other guests 7% of this machine's CPU time" in kernel_costs_sentence({"fused_kernel_costs": stolen})


@pytest.mark.slow
def test_kernel_costs_measures_both_cases_on_this_machine():
    """Compiles the two Lorenz lane kernels and their block assembly (tens of seconds cold)."""
    from harness.measure.fused_costs import kernel_costs

    kc = kernel_costs(n=8192, repeats=3)
    f, a = kc["cases"]["fixed"], kc["cases"]["adaptive-1e-6"]
    assert f["steps_per_trajectory"] == 1000 and 10 < a["steps_per_trajectory"] < 200
    assert f["fma_lane_ops_per_step"] > 50 and a["fma_lane_ops_per_step"] > f["fma_lane_ops_per_step"]
    assert 0 < f["fma_floor_fraction"] <= 1.5 and 0 < a["fma_floor_fraction"] <= 1.5
    # the fastest round's median is no slower than the median over every round's samples
    assert all(c["best_round"]["ns_per_step"] <= c["ns_per_step"] * (1 + 1e-9) for c in (f, a))
    assert all(c["best_round"]["fma_floor_fraction"] >= c["fma_floor_fraction"] - 1e-3 for c in (f, a))
    assert kc["adaptive_over_fixed"]["wall"] > 1
    assert (f["mca"] is None) == ("mca_missing" in f)
    assert all(math.isnan(c["host_steal"]) or 0 <= c["host_steal"] <= 1 for c in (f, a))


def test_host_steal_over_rounds_is_one_fraction_of_their_cpu_time():
    from harness.measure.fused_costs import rounds_steal
    from harness.measure.load import CpuTicks

    rounds = [(CpuTicks(0, 0), CpuTicks(100, 0)), (CpuTicks(500, 7), CpuTicks(800, 22))]
    assert rounds_steal(rounds) == pytest.approx(15 / 400)
    assert math.isnan(rounds_steal([])) and math.isnan(rounds_steal([(None, CpuTicks(1, 0))]))


def test_a_failed_measurement_is_recorded_not_raised(monkeypatch):
    """The run's fingerprint keeps the reason; the run goes on (harness.run.session)."""
    import subprocess

    from harness.run import session

    def failing(*args, **kwargs):
        return subprocess.CompletedProcess(args[0], 1, stdout="", stderr="Traceback ...\nRuntimeError: boom\n")

    monkeypatch.setattr(session.subprocess, "run", failing)
    assert session._kernel_costs() == {"error": "python -m harness.measure.fused_costs exited 1: RuntimeError: boom"}
