"""GPU specifications used by the time model: the ONE place they are written, each with its source.

Nothing here is fitted to the paper's timings (or to anything we measure): every number is from
a vendor spec sheet, whitepaper or programming guide, or from a published microbenchmark of
something else, named in ``SOURCES``. Per-SM lanes are results per clock per SM from the CUDA
C++ Programming Guide's throughput table ("Arithmetic Instructions", by compute capability).
"""
from __future__ import annotations

from dataclasses import dataclass

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
