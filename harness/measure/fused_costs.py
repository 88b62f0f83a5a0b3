"""What a fused CPU kernel's step costs against what this core can do (issue 29).

``Timed`` times one spec through the Prepared lifecycle the harness uses (``prepare``
untimed; the first ``run``+``sync`` on its own: compilation or Numba's disk cache; then the
harness clock, ``clock.time_repeats``) and divides by the steps taken (accepted + rejected,
summed over trajectories; N x n_steps in fixed mode). ``kernel_costs`` puts beside each case
the kernel's lane-FMA operations per step (``solvers.fused.isa.fma_lane_ops``, from its
compiled assembly), the FMA-bound floor those operations allow at this core's measured peak
(``solvers.fused.peak.fma_peak``) and the fraction of that floor the measured step reaches,
and llvm-mca's cycles per lane-step for this CPU where an llvm-mca that knows it is on PATH.

``python -m solvers.fused.bench`` prints the same numbers per case; a suite with
``kernel_costs = true`` (the cpu suite) records ``kernel_costs()`` in its run's fingerprint.
"""
from __future__ import annotations

import json
import os
import statistics
import time

import numba
import numpy as np

from harness.measure.clock import time_repeats
from harness.measure.load import CpuTicks, cpu_ticks, steal_fraction
from problems.reference import max_relative_error, reference
from solvers.base import SolveSpec
from solvers.fused.backend import FusedBackend
from solvers.fused.isa import kernel_cost
from solvers.fused.peak import cpu_isa, fma_peak

#: The cases of ``python -m solvers.fused.bench`` (issue 29 compares adaptive-1e-6 with fixed).
CASES = {
    "fixed": {"mode": "fixed"},
    "adaptive-1e-6": {"mode": "adaptive", "rtol": 1e-6, "atol": 1e-6},
    "adaptive-1e-8": {"mode": "adaptive", "rtol": 1e-8, "atol": 1e-8},
}

#: What ``kernel_costs`` measures, as the command that prints the same numbers.
COSTS_COMMAND = "python -m solvers.fused.bench --cases fixed adaptive-1e-6 --variants lanes"


def block_steps(steps: np.ndarray, lanes: int) -> int:
    """Lane-steps the lane blocks run: each block runs ``lanes`` x its largest per-trajectory
    step count (the last block counts its real trajectories only)."""
    steps = np.asarray(steps)
    return sum(int(steps[b:b + lanes].max()) * len(steps[b:b + lanes]) for b in range(0, len(steps), lanes))


def block_efficiency(steps: np.ndarray, lanes: int) -> float:
    """Steps taken / steps the lane blocks run (see ``block_steps``)."""
    run = block_steps(steps, lanes)
    return float(np.asarray(steps).sum() / run) if run else float("nan")


def busy_threads(n: int, lanes: int) -> int:
    """Threads a solve of ``n`` trajectories keeps busy: Numba's, at most one per lane block."""
    return max(1, min(numba.get_num_threads(), -(-n // max(lanes, 1))))


class Timed:
    """One spec prepared (``prepare`` untimed, the first ``run``+``sync`` timed on its own:
    compilation or Numba's disk cache) and timed in rounds: ``round(repeats)`` runs the
    harness clock (``clock.time_repeats``) once more, so the rounds of several specs can be
    interleaved and their ratios taken round by round, under the same machine conditions.
    ``lanes``: the lane block size, for the block efficiency (1 for the serial kernel)."""

    def __init__(self, spec: SolveSpec, backend: FusedBackend, lanes: int = 1) -> None:
        self.spec, self.lanes = spec, lanes
        self.prep = backend.prepare(spec)
        t = time.perf_counter()
        self.last = self.prep.run()
        self.prep.sync(self.last)
        self.first_s = time.perf_counter() - t
        self.rounds: list[list[float]] = []
        self.cpu: list[float] = []
        self.ticks: list[tuple[CpuTicks | None, CpuTicks | None]] = []  # the CPU counters around each round

    def round(self, repeats: int) -> None:
        cpu: list[float] = []
        before = cpu_ticks()

        def solve() -> None:
            c = time.process_time()
            self.last = self.prep.run()
            self.prep.sync(self.last)
            cpu.append(time.process_time() - c)

        samples = time_repeats(solve, repeats)
        self.ticks.append((before, cpu_ticks()))
        self.rounds.append(samples)
        self.cpu += cpu[-len(samples):]  # the timed calls are the last ones (the clock warms up first)

    def result(self) -> dict:
        """Per step taken: ``ns_per_step`` (median wall over every round's samples),
        ``ns_per_step_min``, ``core_ns_per_step`` (process CPU time: every thread's, so per
        core), ``thread_ns_per_step`` (wall x busy threads: per core, what the FMA floor is
        compared with), ``ns_per_block_step`` (per lane-step the blocks run),
        ``round_ns_per_step`` (each round's median), ``best_round_ns_per_step`` and
        ``best_round_thread_ns_per_step`` (the fastest round's median: a host whose other tenants
        come and go within minutes slows some rounds, and the fastest says what the kernel costs
        when this core is its own), ``host_steal`` (the fraction of the CPU
        time the hypervisor gave other guests during the rounds, ``harness.measure.load``: NaN
        off a VM's Linux), plus steps, accuracy and status."""
        res = self.prep.fetch(self.last)
        self.prep.close()
        spec, lanes = self.spec, self.lanes
        samples = [x for r in self.rounds for x in r]
        per_traj = res.accepted + res.rejected
        steps = int(per_traj.sum())
        med = statistics.median(samples)
        best = min(statistics.median(r) for r in self.rounds)
        ref = reference(spec.prob, spec.n, spec.dtype)
        return {
            "first_s": self.first_s,
            "median_s": med,
            "min_s": min(samples),
            "steps": steps,
            "ns_per_step": med / steps * 1e9,
            "ns_per_step_min": min(samples) / steps * 1e9,
            "round_ns_per_step": [statistics.median(r) / steps * 1e9 for r in self.rounds],
            "best_round_ns_per_step": best / steps * 1e9,
            "best_round_thread_ns_per_step": best * busy_threads(spec.n, lanes) / steps * 1e9,
            "core_ns_per_step": statistics.median(self.cpu) / steps * 1e9,
            # wall x the threads the blocks keep busy: per-core time without the process clock's
            # scheduler-tick granularity (other threads' CPU time is only added at ticks, ~4 ms)
            "thread_ns_per_step": med * busy_threads(spec.n, lanes) / steps * 1e9,
            "ns_per_block_step": med / block_steps(per_traj, lanes) * 1e9,
            "host_steal": rounds_steal(self.ticks),
            "block_efficiency": block_efficiency(per_traj, lanes),
            "steps_mean": steps / spec.n,
            "steps_max": int(per_traj.max()),
            "max_rel_err": max_relative_error(res.u_final, ref),
            "all_success": bool(np.all(res.status == 0)),
        }


def rounds_steal(ticks: list[tuple[CpuTicks | None, CpuTicks | None]]) -> float:
    """The host's steal over several (before, after) readings, as one fraction of their CPU time."""
    if not ticks or any(a is None or b is None for a, b in ticks):
        return float("nan")
    return steal_fraction(CpuTicks(0.0, 0.0), CpuTicks(sum(b.total - a.total for a, b in ticks),
                                                         sum(max(0.0, b.steal - a.steal) for a, b in ticks)))


def measure_interleaved(cases: list[tuple[SolveSpec, FusedBackend, int]], repeats: int, rounds: int) -> list[dict]:
    """Several (spec, backend, lanes) timed in ``rounds`` interleaved rounds (every case once per
    round, in order): ratios between them can be taken round by round (``round_ratios``)."""
    timed = [Timed(*c) for c in cases]
    for _ in range(rounds):
        for t in timed:
            t.round(repeats)
    return [t.result() for t in timed]


def round_ratios(a: dict, b: dict) -> dict:
    """a / b per step taken, per round of ``measure_interleaved``: median, min and max."""
    r = [x / y for x, y in zip(a["round_ns_per_step"], b["round_ns_per_step"])]
    return {"median": statistics.median(r), "min": min(r), "max": max(r), "rounds": len(r)}


def floor_fraction(fma_ops: float, per_core_ns_per_step: float, peak_per_ns: float) -> dict:
    """The FMA-bound floor of a step (``fma_ops`` lane-FMAs at ``peak_per_ns`` lane-FMAs per ns
    on one core) and the fraction of it a measured step (per core: ``thread_ns_per_step``) reaches."""
    floor = fma_ops / peak_per_ns
    return {"fma_floor_ns": round(floor, 4), "fma_floor_fraction": round(floor / per_core_ns_per_step, 3)}


def kernel_costs(n: int = 65536, repeats: int = 5, lanes: int = 32, rounds: int = 7) -> dict:
    """``COSTS_COMMAND``'s numbers for a run's fingerprint: fixed and adaptive-1e-6 Lorenz Tsit5
    float32 lane kernels at N = ``n``, timed in ``rounds`` interleaved rounds of ``repeats``,
    each with ns per step (wall and per core), lane-FMA operations per step, the FMA-bound
    floor and its fraction (of the median step, and of the fastest round's: ``best_round``),
    llvm-mca's cycles (or why not), and the adaptive/fixed ratios
    (of the medians, and round by round), and the host's steal during each case's rounds (other
    guests on this machine's cores: a ratio measured under steal is not the kernels' alone).
    Takes about 20 s with warm kernel caches."""
    peak = fma_peak("float32")["lane_fma_per_ns"]
    backend = FusedBackend(lanes=lanes)
    names = ("fixed", "adaptive-1e-6")
    specs = [SolveSpec(problem="lorenz", method="tsit5", dtype="float32", n=n, **CASES[c]) for c in names]
    results = measure_interleaved([(s, backend, lanes) for s in specs], repeats, rounds)
    cases = {}
    for case, spec, r in zip(names, specs, results):
        cost = kernel_cost(backend.kernel_key(spec))
        cases[case] = {"ns_per_step": round(r["ns_per_step"], 4), "core_ns_per_step": round(r["core_ns_per_step"], 4),
                       "round_ns_per_step": [round(x, 4) for x in r["round_ns_per_step"]],
                       "steps_per_trajectory": round(r["steps_mean"], 2),
                       "block_efficiency": round(r["block_efficiency"], 4),
                       "instructions_per_lane_step": cost["instructions_per_lane_step"],
                       "fma_lane_ops_per_step": cost["fma_lane_ops_per_step"],
                       "thread_ns_per_step": round(r["thread_ns_per_step"], 4),
                       "host_steal": round(r["host_steal"], 4),
                       **floor_fraction(cost["fma_lane_ops_per_step"], r["thread_ns_per_step"], peak),
                       "best_round": {"ns_per_step": round(r["best_round_ns_per_step"], 4),
                                      **floor_fraction(cost["fma_lane_ops_per_step"],
                                                       r["best_round_thread_ns_per_step"], peak)},
                       "mca": cost["mca"], **({"mca_missing": cost["mca_missing"]} if "mca_missing" in cost else {})}
    f, a = cases["fixed"], cases["adaptive-1e-6"]
    by_round = round_ratios(results[1], results[0])
    ratios = {"wall": round(a["ns_per_step"] / f["ns_per_step"], 3),
              "wall_by_round": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in by_round.items()},
              "cpu_time": round(a["core_ns_per_step"] / f["core_ns_per_step"], 3)}
    if f["mca"] and a["mca"]:
        ratios["mca_ports"] = round(a["mca"]["floor_cycles"] / f["mca"]["floor_cycles"], 3)
        ratios["mca_dependencies"] = round(a["mca"]["model_cycles"] / f["mca"]["model_cycles"], 3)
    return {"command": f"{COSTS_COMMAND} --n {n} --repeats {repeats} --lanes {lanes} --rounds {rounds}",
            "problem": "lorenz", "method": "tsit5", "dtype": "float32", "n": n, "lanes": lanes,
            "threads": numba.get_num_threads(), "isa": cpu_isa()["isa"], "cpu_name": cpu_isa()["cpu_name"],
            "fma_peak_f32_per_ns": round(peak, 3), "load_1min": round(os.getloadavg()[0], 2),
            "cases": cases, "adaptive_over_fixed": ratios}


if __name__ == "__main__":  # what a run session with kernel_costs = true calls, in a process of its own
    print(json.dumps(kernel_costs()))
