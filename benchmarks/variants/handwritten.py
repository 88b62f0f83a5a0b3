"""CPU benchmark: the hand-written peers beside diffrax, torchdiffeq and the fused kernel.

    python -m benchmarks.variants.handwritten                       # N = 8, 8192, 65536; 2.5-3 minutes on 2 cores
    python -m benchmarks.variants.handwritten --sizes 8 512 --modes fixed --csv out.csv

Lorenz, float32: Tsit5 with exactly 1000 fixed steps, and adaptive Tsit5 at rtol = atol = 1e-6
(torchdiffeq has no Tsit5: its rows use its own rk4 = the 3/8 rule for fixed steps and dopri5
with one shared step for adaptive steps; a torch-handwritten rk4_38 row is the like-for-like
comparison for the fixed case). Every cell follows the runner's protocol: untimed prepare; the
first run + sync timed on its own (compilation included); then 1-3 timed runs + sync by the
harness's clock (``harness.measure.clock.time_repeats``, after its warm-up; 1 when a run is slow,
``--budget`` seconds per cell); untimed fetch; accuracy against the float64
SciPy reference. Reported: the minimum over the timed runs, as nanoseconds per
trajectory-step = time / (sum over trajectories of accepted steps), so lockstep and shared-step
overheads show up as cost, not as fewer steps.

Threads: ``--threads 1`` (default) pins torch, XLA and Numba to one thread before they are
imported: the build machine has 2 cores shared with other jobs, where OpenMP-style thread pools
can slow down by 10-100x. Numbers from one run are comparable with each other only.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

from harness.measure.clock import time_repeats
from problems.reference import max_relative_error, reference
from solvers.base import SolveSpec
from solvers.registry import get_backend

#: (label, backend, variant, fixed-mode method, adaptive-mode method); None: no such row.
ENTRIES: list[tuple[str, str, str, str | None, str | None]] = [
    ("fused", "fused", "", "tsit5", "tsit5"),
    ("jax-handwritten vmap", "jax-handwritten", "", "tsit5", "tsit5"),
    ("jax-handwritten soa", "jax-handwritten", "soa", "tsit5", "tsit5"),
    ("torch-handwritten eager", "torch-handwritten", "", "tsit5", "tsit5"),
    ("torch-handwritten compiled", "torch-handwritten", "compiled", "tsit5", "tsit5"),
    ("torch-handwritten eager", "torch-handwritten", "", "rk4_38", None),
    ("diffrax", "diffrax", "", "tsit5", "tsit5"),
    ("torchdiffeq", "torchdiffeq", "", "rk4_38", "dopri5"),
]
SIZES = (8, 8192, 65536)
MODES = ("fixed", "adaptive")
ADAPTIVE_TOL = 1e-6


@dataclass
class Row:
    """One benchmark cell (times in seconds)."""

    mode: str
    n: int
    label: str
    method: str
    first: float | None = None
    times: tuple[float, ...] = ()
    steps_total: int = 0
    steps_mean: float = math.nan
    steps_max: int = 0
    rel_err: float = math.nan
    note: str = ""

    @property
    def ns_per_traj_step(self) -> float:
        if not self.times or not self.steps_total:
            return math.nan
        return min(self.times) / self.steps_total * 1e9


def pin_threads(threads: int) -> None:
    """Limit torch, XLA and Numba to ``threads`` threads; call before importing any of them."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    import torch  # only now: the thread variables above must be set before torch starts

    torch.set_num_threads(threads)


def run_cell(label: str, backend: str, variant: str, method: str, mode: str, n: int,
             budget: float) -> Row:
    """Prepare, time and check one cell; failures become a row with the reason."""
    row = Row(mode, n, label, method)
    tol = ADAPTIVE_TOL if mode == "adaptive" else None
    spec = SolveSpec("lorenz", method, mode, "float32", n=n, variant=variant, rtol=tol, atol=tol)
    b = get_backend(backend)
    ok, why = b.available("cpu")
    if not ok:
        row.note = f"unavailable: {why}"
        return row
    reason = b.check(spec)
    if reason:
        row.note = f"unsupported: {reason}"
        return row
    try:
        prep = b.prepare(spec)
        try:
            t = time.perf_counter()
            last = [prep.run()]
            prep.sync(last[0])
            row.first = time.perf_counter() - t

            def solve() -> None:
                last[0] = prep.run()
                prep.sync(last[0])

            times = time_repeats(solve, 1)
            if 2 * times[0] <= budget:
                times += time_repeats(solve, 2)
            row.times = tuple(times)
            res = prep.fetch(last[0])
        finally:
            prep.close()
    except Exception as exc:  # a failing cell is a row, the benchmark goes on
        row.note = f"failed: {type(exc).__name__}: {exc}"[:200]
        return row
    accepted = res.accepted if res.accepted is not None else None
    if accepted is None:
        row.note = "no step counts reported"
        return row
    row.steps_total = int(accepted.sum())
    row.steps_mean = float(accepted.mean())
    row.steps_max = int(accepted.max())
    row.rel_err = max_relative_error(res.u_final, reference(spec.prob, n, "float32"))
    step_scope = res.notes.get("step_scope", "")
    if step_scope == "shared":
        row.note = "one shared step size"
    return row


def format_table(rows: list[Row]) -> str:
    head = (f"{'mode':8} {'N':>6}  {'backend':28} {'method':7} {'first s':>8} {'min ms':>9} {'med ms':>9} "
            f"{'reps':>4} {'ns/traj-step':>12} {'steps mean/max':>15} {'rel err':>8}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.times:
            lines.append(
                f"{r.mode:8} {r.n:>6}  {r.label:28} {r.method:7} {r.first:8.2f} {min(r.times) * 1e3:9.3g} "
                f"{statistics.median(r.times) * 1e3:9.3g} {len(r.times):>4} {r.ns_per_traj_step:12.1f} "
                f"{r.steps_mean:7.1f}/{r.steps_max:<7d} {r.rel_err:8.1e}  {r.note}")
        else:
            lines.append(f"{r.mode:8} {r.n:>6}  {r.label:28} {r.method:7} {'':>8} {'':>9} {'':>9} {'':>4} "
                         f"{'':>12} {'':>15} {'':>8}  {r.note}")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mode", "n", "backend", "method", "first_s", "times_s", "min_s", "ns_per_traj_step",
                    "steps_total", "steps_mean", "steps_max", "rel_err", "note"])
        for r in rows:
            w.writerow([r.mode, r.n, r.label, r.method, r.first, ";".join(f"{t:.6g}" for t in r.times),
                        min(r.times) if r.times else "", r.ns_per_traj_step, r.steps_total, r.steps_mean,
                        r.steps_max, r.rel_err, r.note])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.variants.handwritten", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="ensemble sizes N")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="step modes")
    ap.add_argument("--only", nargs="+", default=None, metavar="BACKEND",
                    help="backend names to run (default: all rows)")
    ap.add_argument("--threads", type=int, default=1, help="threads for torch / XLA / Numba (default 1)")
    ap.add_argument("--budget", type=float, default=3.0,
                    help="seconds of timed runs per cell after the first call (1-3 runs)")
    ap.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    args = ap.parse_args(argv)
    if any(n <= 0 for n in args.sizes):
        ap.error("--sizes must be positive integers")
    if args.threads <= 0:
        ap.error("--threads must be a positive integer")
    known = {e[1] for e in ENTRIES}
    if args.only and not set(args.only) <= known:
        ap.error(f"--only: unknown backend(s) {sorted(set(args.only) - known)}; choose from {sorted(known)}")
    pin_threads(args.threads)

    import jax  # only after pin_threads: XLA reads its thread flags at import
    import torch  # for its version (pin_threads imported it first, after setting its threads)

    print(f"# Lorenz float32, fixed: 1000 steps; adaptive: rtol=atol={ADAPTIVE_TOL:g}; CPU "
          f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores), threads={args.threads}; "
          f"jax {jax.__version__}, torch {torch.__version__}; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    rows: list[Row] = []
    start = time.perf_counter()
    for mode in args.modes:
        for n in args.sizes:
            for label, backend, variant, m_fixed, m_adapt in ENTRIES:
                method = m_fixed if mode == "fixed" else m_adapt
                if method is None or (args.only and backend not in args.only):
                    continue
                row = run_cell(label, backend, variant, method, mode, n, args.budget)
                rows.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
    print(f"\n# total {time.perf_counter() - start:.0f} s\n")
    print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
