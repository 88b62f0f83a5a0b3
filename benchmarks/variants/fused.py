"""CPU timings of the fused kernels: nanoseconds per trajectory-step (not a test).

    python -m benchmarks.variants.fused                 # Lorenz, Tsit5, float32, N = 65536
    python -m benchmarks.variants.fused --repeats 7 --lanes 8 16 32 --fastmath contract none
    python -m benchmarks.variants.fused --cases fixed adaptive-1e-6 --lane-layout one-pass two-pass

For each case the Prepared lifecycle is used as the harness uses it: ``prepare`` (untimed),
the first ``run``+``sync`` timed on its own (compilation, or loading Numba's disk cache), then
the harness's clock (``harness.measure.clock.time_repeats``: warm-up, then ``repeats`` timed
``run``+``sync`` calls with the GC paused); the median (and min) time is divided by the number of steps
taken, summed over trajectories (every attempt: accepted + rejected; exactly N * n_steps in
fixed mode). The closing ratios also divide by the lane-steps the blocks run (each block's
lanes x its largest step count), which removes the lane blocks' divergence from the ratio. Each row also reports the steps per trajectory and the accuracy against the float64
reference, so a faster row is never a row doing less work or reaching a worse answer.

Also per row: ``core-ns`` (process CPU time per step: on a machine shared with other
processes it moves less than the wall time) and the lane blocks' efficiency (steps taken /
(lanes x the block's largest step count), summed over blocks: 1 when every lane of a block
takes as many steps as its slowest). The header gives the ISA the kernels were compiled for
and this core's measured FMA peak (``solvers.fused.peak``), and the last lines the adaptive
cost per step taken relative to the fixed step's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np

from harness.measure.clock import time_repeats
from problems.reference import max_relative_error, reference
from solvers.base import SolveSpec
from solvers.fused.backend import FusedBackend
from solvers.fused.peak import cpu_isa, fma_peak

CASES = {
    "fixed": {"mode": "fixed"},
    "adaptive-1e-6": {"mode": "adaptive", "rtol": 1e-6, "atol": 1e-6},
    "adaptive-1e-8": {"mode": "adaptive", "rtol": 1e-8, "atol": 1e-8},
}


def block_steps(steps: np.ndarray, lanes: int) -> int:
    """Lane-steps the lane blocks run: each block runs ``lanes`` x its largest per-trajectory
    step count (the last block counts its real trajectories only)."""
    steps = np.asarray(steps)
    return sum(int(steps[b:b + lanes].max()) * len(steps[b:b + lanes]) for b in range(0, len(steps), lanes))


def block_efficiency(steps: np.ndarray, lanes: int) -> float:
    """Steps taken / steps the lane blocks run (see ``block_steps``)."""
    run = block_steps(steps, lanes)
    return float(np.asarray(steps).sum() / run) if run else float("nan")


def measure(spec: SolveSpec, backend: FusedBackend, repeats: int, lanes: int = 1) -> dict:
    """Time one spec; returns the row printed by ``main`` (``lanes``: for the block efficiency;
    1 for the serial kernel)."""
    prep = backend.prepare(spec)
    t = time.perf_counter()
    out = prep.run()
    prep.sync(out)
    first = time.perf_counter() - t
    last, cpu = [out], []

    def solve() -> None:
        c = time.process_time()
        last[0] = prep.run()
        prep.sync(last[0])
        cpu.append(time.process_time() - c)

    samples = time_repeats(solve, repeats)
    cpu = cpu[-len(samples):]  # the timed calls are the last ones (the clock warms up first)
    res = prep.fetch(last[0])
    prep.close()
    per_traj = res.accepted + res.rejected
    steps = int(per_traj.sum())
    ref = reference(spec.prob, spec.n, spec.dtype)
    return {
        "first_s": first,
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "steps": steps,
        "ns_per_step": statistics.median(samples) / steps * 1e9,
        "ns_per_step_min": min(samples) / steps * 1e9,
        "core_ns_per_step": statistics.median(cpu) / steps * 1e9,
        "ns_per_block_step": statistics.median(samples) / block_steps(per_traj, lanes) * 1e9,
        "block_efficiency": block_efficiency(per_traj, lanes),
        "steps_mean": steps / spec.n,
        "steps_max": int((res.accepted + res.rejected).max()),
        "max_rel_err": max_relative_error(res.u_final, ref),
        "all_success": bool(np.all(res.status == 0)),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", default="lorenz")
    ap.add_argument("--method", default="tsit5")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--variants", nargs="+", default=["lanes", "serial"], choices=("lanes", "serial"))
    ap.add_argument("--lanes", nargs="+", type=int, default=[32], help="lane block sizes to try")
    ap.add_argument("--fastmath", nargs="+", default=["contract"], choices=("contract", "none"))
    ap.add_argument("--lane-layout", nargs="+", default=["auto"], choices=("auto", "one-pass", "two-pass"),
                    help="adaptive lane layouts to try (auto: the one this ISA gets)")
    args = ap.parse_args(argv)

    isa = cpu_isa()
    peak = fma_peak(args.dtype)
    print(f"# fused CPU kernels: {args.problem} {args.method} {args.dtype} N={args.n}, "
          f"{numba.get_num_threads()} threads, cpu_count={os.cpu_count()}, "
          f"median of {args.repeats} after the clock's warm-up")
    print(f"# ISA: {isa['isa']} ({isa['cpu_name']}, {isa['vector_bits']}-bit vectors); measured "
          f"{args.dtype} FMA peak {peak['lane_fma_per_ns']:.1f} lane-FMA/ns per core "
          f"(solvers.fused.peak)")
    print(f"{'case':<24}{'variant':<9}{'lanes':>6}{'fastmath':>10}{'ns/step':>10}{'(min)':>8}{'core-ns':>9}"
          f"{'blk eff':>8}{'steps/traj':>12}{'max':>6}{'first s':>9}{'max rel err':>13}")
    rows = []
    for case in args.cases:
        for variant in args.variants:
            for fm in args.fastmath:
                for lanes in (args.lanes if variant == "lanes" else [args.lanes[0]]):
                    layouts = (args.lane_layout if variant == "lanes" and CASES[case]["mode"] == "adaptive"
                               else ["auto"])
                    for layout in layouts:
                        backend = FusedBackend(lanes=lanes, fastmath=(() if fm == "none" else ("contract",)),
                                               lane_layout=layout)
                        spec = SolveSpec(problem=args.problem, method=args.method, dtype=args.dtype, n=args.n,
                                         variant="serial" if variant == "serial" else "", **CASES[case])
                        r = measure(spec, backend, args.repeats, lanes if variant == "lanes" else 1)
                        name = case if layout == "auto" else f"{case}/{layout}"
                        rows.append((name, variant, lanes, fm, r))
                        _print_row(name, variant, lanes, fm, r)
    _print_ratios(rows)
    return 0


def _print_row(case: str, variant: str, lanes: int, fm: str, r: dict) -> None:
    print(f"{case:<24}{variant:<9}{lanes if variant == 'lanes' else '-':>6}{fm:>10}"
          f"{r['ns_per_step']:>10.3f}{r['ns_per_step_min']:>8.3f}{r['core_ns_per_step']:>9.3f}"
          f"{r['block_efficiency']:>8.3f}{r['steps_mean']:>12.1f}"
          f"{r['steps_max']:>6d}{r['first_s']:>9.2f}{r['max_rel_err']:>13.2e}"
          + ("" if r["all_success"] else "  (some trajectories failed)"), flush=True)


def _print_ratios(rows: list) -> None:
    fixed = {(v, L, fm): r for c, v, L, fm, r in rows if c == "fixed"}
    for c, v, L, fm, r in rows:
        f = fixed.get((v, L, fm))
        if c != "fixed" and f:
            print(f"# {c} / fixed per step taken ({v}, {L if v == 'lanes' else '-'} lanes, {fm}): "
                  f"{r['ns_per_step'] / f['ns_per_step']:.2f}x wall, "
                  f"{r['core_ns_per_step'] / f['core_ns_per_step']:.2f}x CPU time; "
                  f"per lane-step the blocks run (divergence removed): "
                  f"{r['ns_per_block_step'] / f['ns_per_block_step']:.2f}x wall")


if __name__ == "__main__":
    raise SystemExit(main())
