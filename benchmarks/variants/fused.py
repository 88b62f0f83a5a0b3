"""CPU timings of the fused kernels: nanoseconds per trajectory-step (not a test).

    python -m benchmarks.variants.fused                 # Lorenz, Tsit5, float32, N = 65536
    python -m benchmarks.variants.fused --repeats 7 --lanes 8 16 32 --fastmath contract none
    python -m benchmarks.variants.fused --cases fixed adaptive-1e-6 --lane-layout one-pass two-pass

For each case the Prepared lifecycle is used as the harness uses it: ``prepare`` (untimed),
the first ``run``+``sync`` timed on its own (compilation, or loading Numba's disk cache), then
the harness's clock (``harness.measure.clock.time_repeats``: warm-up, then ``repeats`` timed
``run``+``sync`` calls with the GC paused), in ``--rounds`` rounds interleaved across the cases
(every case once per round: a machine whose speed drifts, such as a VM whose host is shared,
moves every case of a round alike, and the ratio lines give each round's ratio beside the
ratio of the medians); the median (and min) time is divided by the number of steps
taken, summed over trajectories (every attempt: accepted + rejected; exactly N * n_steps in
fixed mode). The closing ratios also divide by the lane-steps the blocks run (each block's
lanes x its largest step count), which removes the lane blocks' divergence from the ratio. Each row also reports the steps per trajectory and the accuracy against the float64
reference, so a faster row is never a row doing less work or reaching a worse answer.

Also per row: ``core-ns`` (process CPU time per step: on a machine shared with other
processes it moves less than the wall time) and the lane blocks' efficiency (steps taken /
(lanes x the block's largest step count), summed over blocks: 1 when every lane of a block
takes as many steps as its slowest). The header gives the ISA the kernels were compiled for
and this core's measured FMA peak (``solvers.fused.peak``). Per lanes row, from the kernel's
compiled assembly (``solvers.fused.isa``): its lane-FMA operations per step, the fraction of
the FMA-bound floor (those operations at the measured peak) the measured step reaches per
core (wall time x the threads in use), and llvm-mca's cycles per lane-step for this CPU (port pressure / with dependencies:
the steady state of a lane loop's independent iterations, or one attempt alone where LLVM unrolled the lane loops into the
time loop, ``solvers.fused.isa``; "-" without an llvm-mca that knows it). ``NUMBA_NUM_THREADS=1`` times one core alone:
on a machine shared with other tenants the all-thread time waits for the slowest thread. The last lines give the adaptive cost per step taken
relative to the fixed step's, measured and as llvm-mca models it.

The measurement lives in ``harness.measure.fused_costs`` (a cpu-suite run records the same
numbers in its fingerprint).
"""
from __future__ import annotations

import argparse
import os

import numba

from harness.measure.fused_costs import CASES, floor_fraction, measure_interleaved, round_ratios
from solvers.base import SolveSpec
from solvers.fused.backend import FusedBackend
from solvers.fused.isa import kernel_cost
from solvers.fused.peak import cpu_isa, fma_peak

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", default="lorenz")
    ap.add_argument("--method", default="tsit5")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per case and round")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds: every case once per round, "
                    "so a ratio is taken round by round under the same machine conditions")
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
          f"{args.rounds} interleaved rounds of {args.repeats} repeats after the clock's warm-up, medians")
    print(f"# ISA: {isa['isa']} ({isa['cpu_name']}, {isa['vector_bits']}-bit vectors); measured "
          f"{args.dtype} FMA peak {peak['lane_fma_per_ns']:.1f} lane-FMA/ns per core "
          f"(solvers.fused.peak)")
    print(f"{'case':<24}{'variant':<9}{'lanes':>6}{'fastmath':>10}{'ns/step':>10}{'(min)':>8}{'core-ns':>9}"
          f"{'blk eff':>8}{'steps/traj':>12}{'max':>6}{'first s':>9}{'max rel err':>13}"
          f"{'FMA ops':>9}{'of floor':>9}{'mca cycles':>13}")
    plan = []  # (name, variant, lanes, fastmath, spec, backend)
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
                        plan.append((case if layout == "auto" else f"{case}/{layout}", variant, lanes, fm, spec, backend))
    results = measure_interleaved([(spec, backend, lanes if variant == "lanes" else 1)
                                   for _, variant, lanes, _, spec, backend in plan], args.repeats, args.rounds)
    rows = []
    for (name, variant, lanes, fm, spec, backend), r in zip(plan, results):
        if variant == "lanes":  # the block's assembly: what the lanes kernel executes
            cost = kernel_cost(backend.kernel_key(spec))
            r.update(mca=cost["mca"], fma_ops=cost["fma_lane_ops_per_step"],
                     **floor_fraction(cost["fma_lane_ops_per_step"], r["thread_ns_per_step"], peak["lane_fma_per_ns"]))
        rows.append((name, variant, lanes, fm, r))
        _print_row(name, variant, lanes, fm, r)
    _print_ratios(rows)
    steal = [(name, r["host_steal"]) for name, _, _, _, r in rows]
    print("# host steal (CPU time the hypervisor gave other guests, harness.measure.load) during each case's rounds: "
          + ", ".join(f"{name} {'-' if s != s else f'{s:.1%}'}" for name, s in steal)
          + " (0 on a quiet host; a ratio taken under steal is not the kernels' alone)")
    return 0


def _print_row(case: str, variant: str, lanes: int, fm: str, r: dict) -> None:
    print(f"{case:<24}{variant:<9}{lanes if variant == 'lanes' else '-':>6}{fm:>10}"
          f"{r['ns_per_step']:>10.3f}{r['ns_per_step_min']:>8.3f}{r['core_ns_per_step']:>9.3f}"
          f"{r['block_efficiency']:>8.3f}{r['steps_mean']:>12.1f}"
          f"{r['steps_max']:>6d}{r['first_s']:>9.2f}{r['max_rel_err']:>13.2e}"
          + (f"{r['fma_ops']:>9.1f}{r['fma_floor_fraction']:>9.0%}" if "fma_ops" in r else f"{'-':>9}{'-':>9}")
          + (f"{r['mca']['floor_cycles']:>6.2f} /{r['mca']['model_cycles']:>5.2f}" if r.get("mca") else f"{'-':>13}")
          + ("" if r["all_success"] else "  (some trajectories failed)"), flush=True)


def _print_ratios(rows: list) -> None:
    fixed = {(v, L, fm): r for c, v, L, fm, r in rows if c == "fixed"}
    for c, v, L, fm, r in rows:
        f = fixed.get((v, L, fm))
        if c != "fixed" and f:
            rr = round_ratios(r, f)
            print(f"# {c} / fixed per step taken ({v}, {L if v == 'lanes' else '-'} lanes, {fm}): "
                  f"{r['ns_per_step'] / f['ns_per_step']:.2f}x wall (round by round: median {rr['median']:.2f}x, "
                  f"{rr['min']:.2f}-{rr['max']:.2f}x over {rr['rounds']}), "
                  f"{r['core_ns_per_step'] / f['core_ns_per_step']:.2f}x CPU time; "
                  f"per lane-step the blocks run (divergence removed): "
                  f"{r['ns_per_block_step'] / f['ns_per_block_step']:.2f}x wall"
                  + (f"; llvm-mca ({r['mca']['mcpu']}): {r['mca']['floor_cycles'] / f['mca']['floor_cycles']:.2f}x "
                     f"ports, {r['mca']['model_cycles'] / f['mca']['model_cycles']:.2f}x with dependencies"
                     if r.get("mca") and f.get("mca") else ""))


if __name__ == "__main__":
    raise SystemExit(main())
