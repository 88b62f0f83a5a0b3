"""Time models of one ensemble solve on a GPU, from machine-code counts and spec-sheet numbers.

**Fused kernel** (one launch, one thread per trajectory, the time loop inside the thread):

* Per warp-step, each SM sub-partition (one scheduler) needs ``T_thr`` cycles: the largest of
  the issue slots (1 warp-instruction per clock) and each pipe's cycles (a warp-instruction on
  a pipe with ``L`` lanes per SM takes ``32 / (L / schedulers)`` cycles): FP32, FP64, MUFU,
  conversions, integer. With ``w`` warps resident on a scheduler a step takes
  ``max(w * T_thr, T_lat)`` cycles, where ``T_lat = instructions * dependent latency`` is one
  warp alone with no instruction-level parallelism (the small-N, latency-bound limit).
* Warps come in blocks of ``block`` threads; blocks are spread over the SMs, at most as many
  per SM as registers and warp slots allow (``sass.occupancy``); blocks beyond that run in
  further waves.
* Plus the memory term (bytes in and out per trajectory / DRAM bandwidth) and one launch with
  its synchronisation.

**Array style** (one kernel per array operation): launches per solve x the per-launch time of
a short kernel in a stream, each launch at least as long as moving its bytes (``bytes_per_launch
/ bandwidth``: a launch of the next kernel overlaps the execution of the current one, so the
larger of the two counts).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from harness.gpu_profile.sass import SMLimits, occupancy
from harness.gpu_profile.specs import GPUSpec

FP32_CLASSES = ("ffma", "fmul", "fadd", "fp32_other")


@dataclass(frozen=True)
class StepCounts:
    """Instructions per step (one loop iteration) of one thread, by class (see sass.CLASSES)."""

    counts: dict

    def get(self, cls: str) -> int:
        return int(self.counts.get(cls, 0))

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))


def warp_step_cycles(step: StepCounts, gpu: GPUSpec) -> dict[str, float]:
    """Cycles one scheduler spends per warp-step on each resource, and the binding one (``thr``)."""
    per_sched = lambda lanes: 32.0 / (lanes / gpu.schedulers)  # noqa: E731 - cycles per warp-instruction
    fp32 = sum(step.get(c) for c in FP32_CLASSES)
    cyc = {
        "issue": float(step.total),
        "fp32": fp32 * per_sched(gpu.fp32_lanes),
        "fp64": step.get("fp64") * per_sched(gpu.fp64_lanes),
        "mufu": step.get("mufu") * per_sched(gpu.mufu_lanes),
        "conversion": step.get("conversion") * per_sched(gpu.conv_lanes),
        "integer": step.get("integer") * per_sched(gpu.int_lanes),
    }
    bound = max(cyc, key=cyc.get)
    cyc["thr"] = cyc[bound]
    cyc["lat"] = float(step.total * gpu.dep_latency_cycles)
    cyc["bound"] = bound  # type: ignore[assignment]
    return cyc


@dataclass(frozen=True)
class FusedPrediction:
    n: int
    steps: float
    compute_s: float
    memory_s: float
    launch_s: float
    bound: str          # the binding pipe at full load ("fp32", "fp64", "issue", ...)
    waves: int
    warps_per_scheduler: int

    @property
    def total_s(self) -> float:
        return self.compute_s + self.memory_s + self.launch_s


def predict_fused(step: StepCounts, registers: int, gpu: GPUSpec, n: int, steps: float, *,
                  block: int = 256, bytes_per_trajectory: float = 0.0,
                  arch: str | None = None) -> FusedPrediction:
    """Predicted time of one fused solve of ``n`` trajectories taking ``steps`` steps each.

    Args:
        step: instructions per step of one thread (the loop body's counts).
        registers: registers per thread (ptxas), for the occupancy.
        gpu: the card; ``arch`` overrides the SM limits used (default ``gpu.arch``).
        block: threads per block (the backend's ``threads_per_block``).
        bytes_per_trajectory: DRAM bytes read and written per trajectory (inputs, outputs, saves).
    """
    if n <= 0 or steps < 0:
        raise ValueError("n must be positive and steps non-negative")
    warps_res, _ = occupancy(registers, block, arch or gpu.arch)
    warps_per_block = math.ceil(min(block, n) / 32)
    blocks = math.ceil(n / block)
    blocks_per_sm = max(warps_res // math.ceil(block / 32), 1)
    per_wave = gpu.sms * blocks_per_sm
    cyc = warp_step_cycles(step, gpu)
    total_cycles = 0.0
    waves = math.ceil(blocks / per_wave)
    busiest_w = 0
    for k in range(waves):
        in_wave = min(per_wave, blocks - k * per_wave)
        blocks_on_busiest_sm = math.ceil(in_wave / gpu.sms)
        w = math.ceil(blocks_on_busiest_sm * warps_per_block / gpu.schedulers)
        busiest_w = max(busiest_w, w)
        total_cycles += max(w * cyc["thr"], cyc["lat"])
    clock = gpu.boost_mhz * 1e6
    return FusedPrediction(
        n=n, steps=steps, compute_s=steps * total_cycles / clock,
        memory_s=n * bytes_per_trajectory / (gpu.bandwidth_gbs * 1e9),
        launch_s=gpu.launch_sync_us * 1e-6, bound=str(cyc["bound"]), waves=waves,
        warps_per_scheduler=busiest_w)


def ps_per_trajectory_step(step: StepCounts, gpu: GPUSpec) -> float:
    """The throughput limit: picoseconds per trajectory-step with every scheduler busy."""
    cyc = warp_step_cycles(step, gpu)
    per_traj_cycles = cyc["thr"] / 32 / (gpu.sms * gpu.schedulers)
    return per_traj_cycles / (gpu.boost_mhz * 1e6) * 1e12


def predict_array(launches: float, n: int, gpu: GPUSpec, *, bytes_per_launch_per_trajectory: float,
                  syncs: int = 1) -> float:
    """Predicted time of one array-style solve: ``launches`` short kernels in one stream, each
    taking the larger of the per-launch time and its memory traffic, plus the final sync."""
    per_launch = max(gpu.launch_stream_us * 1e-6,
                     n * bytes_per_launch_per_trajectory / (gpu.bandwidth_gbs * 1e9))
    return launches * per_launch + syncs * (gpu.launch_sync_us - gpu.launch_stream_us) * 1e-6


def fused_bytes_per_trajectory(n_states: int, n_params: int, itemsize: int, n_saved: int = 0) -> int:
    """DRAM traffic of one trajectory of a fused solve: u0 and p in, the final state, saved
    states, 3 int32 counters and an int32 status out."""
    return itemsize * (2 * n_states + n_params + n_saved * n_states) + 4 * 4


__all__ = ["StepCounts", "FusedPrediction", "predict_fused", "predict_array", "ps_per_trajectory_step",
           "warp_step_cycles", "fused_bytes_per_trajectory", "SMLimits"]
