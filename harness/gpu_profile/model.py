"""The GPU spec table and the time models of one ensemble solve, from machine-code counts and
spec-sheet numbers.

**Specs** (``GPUS``): the ONE place they are written, each with its source. Nothing here is
fitted to the paper's timings (or to anything we measure): every number is from a vendor spec
sheet, whitepaper or programming guide, or from a published microbenchmark of something else,
named in ``SOURCES``. Per-SM lanes are results per clock per SM from the CUDA C++ Programming
Guide's throughput table ("Arithmetic Instructions", by compute capability).

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

from harness.gpu_profile.sass import occupancy

#: Citations, referred to by key from the fields below.
SOURCES = {
    "cuda-guide": "NVIDIA CUDA C++ Programming Guide, 'Arithmetic Instructions' throughput table "
                  "(results per clock per SM, by compute capability) and 'Technical Specifications "
                  "per Compute Capability'",
    "v100-datasheet": "NVIDIA Tesla V100 datasheet (PCIe: 14 TFLOPS FP32, 7 TFLOPS FP64, 900 GB/s HBM2) and "
                      "NVIDIA Tesla V100 GPU Architecture whitepaper (2017: 80 SMs; V100 PCIe boost 1380 MHz)",
    "rtx5000-datasheet": "NVIDIA Quadro RTX 5000 datasheet (48 SMs = 3072 CUDA cores / 64, 11.2 TFLOPS FP32, "
                         "448 GB/s GDDR6; boost 1815 MHz) and NVIDIA Turing GPU Architecture whitepaper "
                         "(2018: FP64 at 1/32 of FP32)",
    "h100-datasheet": "NVIDIA H100 Tensor Core GPU datasheet and Hopper architecture whitepaper (H100 SXM5: "
                      "132 SMs, 128 FP32 lanes/SM, 67 TFLOPS FP32 => 1980 MHz boost, 3.35 TB/s HBM3)",
    "h200-datasheet": "NVIDIA H200 Tensor Core GPU datasheet (SXM: same GH100 die and clocks as H100 SXM5, "
                      "4.8 TB/s HBM3e)",
    "cuda-graphs-blog": "A. Gray, 'Getting Started with CUDA Graphs', NVIDIA Technical Blog (2019), V100: a "
                        "2.9 us kernel took 9.6 us per launch with a synchronisation after each (=> 6.7 us "
                        "launch + sync overhead) and 3.8 us per kernel launched back-to-back in one stream",
    "jia-volta": "Z. Jia et al., 'Dissecting the NVIDIA Volta GPU Architecture via Microbenchmarking', "
                 "arXiv:1804.06826 (2018): dependent FFMA latency 4 cycles; Z. Jia et al., 'Dissecting the "
                 "NVIDIA Turing T4 GPU via Microbenchmarking', arXiv:1903.07486 (2019): 4 cycles on Turing",
}


@dataclass(frozen=True)
class GPUSpec:
    """One card. Lanes are results per clock per SM (CUDA guide throughput table)."""

    name: str
    arch: str                 # the SASS architecture its kernels are assembled for
    sms: int
    fp32_lanes: int           # FFMA/FMUL/FADD per clock per SM
    fp64_lanes: int           # DFMA/DMUL/DADD per clock per SM
    int_lanes: int            # 32-bit integer add/logic per clock per SM
    mufu_lanes: int           # MUFU (rcp, rsqrt, ex2, lg2, sin...) per clock per SM
    conv_lanes: int           # type conversions per clock per SM
    schedulers: int           # warp schedulers per SM, each issuing 1 warp-instruction per clock
    boost_mhz: float
    bandwidth_gbs: float      # DRAM bandwidth, GB/s
    launch_sync_us: float     # one launch + device synchronisation, empty-ish kernel
    launch_stream_us: float   # per short kernel launched back-to-back in one stream
    dep_latency_cycles: int   # dependent FP32 arithmetic latency
    sources: tuple[str, ...]  # keys of SOURCES
    note: str = ""

    @property
    def fp64_rate(self) -> str:
        """FP64 throughput as a fraction of FP32, e.g. '1/2'."""
        return f"1/{self.fp32_lanes // self.fp64_lanes}"

    @property
    def fp32_tflops(self) -> float:
        return 2 * self.sms * self.fp32_lanes * self.boost_mhz * 1e6 / 1e12


_COMMON = ("cuda-guide", "cuda-graphs-blog", "jia-volta")

GPUS: dict[str, GPUSpec] = {
    "V100": GPUSpec("Tesla V100-PCIE-32GB", "sm_70", sms=80, fp32_lanes=64, fp64_lanes=32, int_lanes=64,
                    mufu_lanes=16, conv_lanes=16, schedulers=4, boost_mhz=1380, bandwidth_gbs=900,
                    launch_sync_us=6.7, launch_stream_us=3.8, dep_latency_cycles=4,
                    sources=("v100-datasheet",) + _COMMON, note="the paper's card"),
    "RTX5000": GPUSpec("Quadro RTX 5000", "sm_75", sms=48, fp32_lanes=64, fp64_lanes=2, int_lanes=64,
                       mufu_lanes=16, conv_lanes=16, schedulers=4, boost_mhz=1815, bandwidth_gbs=448,
                       launch_sync_us=6.7, launch_stream_us=3.8, dep_latency_cycles=4,
                       sources=("rtx5000-datasheet",) + _COMMON,
                       note="the paper's second card; launch costs: the V100 blog figures (no Turing source)"),
    "H100": GPUSpec("H100 SXM5", "sm_90", sms=132, fp32_lanes=128, fp64_lanes=64, int_lanes=64,
                    mufu_lanes=16, conv_lanes=16, schedulers=4, boost_mhz=1980, bandwidth_gbs=3350,
                    launch_sync_us=6.7, launch_stream_us=3.8, dep_latency_cycles=4,
                    sources=("h100-datasheet",) + _COMMON,
                    note="launch costs and FFMA latency: the V100/Turing figures (no Hopper source here)"),
    "H200": GPUSpec("H200 SXM", "sm_90", sms=132, fp32_lanes=128, fp64_lanes=64, int_lanes=64,
                    mufu_lanes=16, conv_lanes=16, schedulers=4, boost_mhz=1980, bandwidth_gbs=4800,
                    launch_sync_us=6.7, launch_stream_us=3.8, dep_latency_cycles=4,
                    sources=("h200-datasheet",) + _COMMON,
                    note="as H100; launch costs and FFMA latency: the V100/Turing figures"),
}

#: The paper's folder labels (harness.results.paper) -> our spec key.
PAPER_GPU_KEYS = {"Tesla V100": "V100", "Quadro RTX 5000": "RTX5000"}


def spec_table() -> list[dict]:
    """The spec table as rows (for the CSV and the report)."""
    rows = []
    for key, g in GPUS.items():
        rows.append(dict(key=key, name=g.name, arch=g.arch, sms=g.sms, fp32_lanes_per_sm=g.fp32_lanes,
                         fp64_rate=g.fp64_rate, mufu_lanes_per_sm=g.mufu_lanes, boost_mhz=g.boost_mhz,
                         fp32_tflops=round(g.fp32_tflops, 1), bandwidth_gbs=g.bandwidth_gbs,
                         launch_sync_us=g.launch_sync_us, launch_stream_us=g.launch_stream_us,
                         dep_latency_cycles=g.dep_latency_cycles, sources="; ".join(g.sources), note=g.note))
    return rows


# ---- the time models -----------------------------------------------------------------------------------

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
