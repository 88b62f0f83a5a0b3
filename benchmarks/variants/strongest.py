"""Interleaved variant-against-variant timings for issue 33 (every peer at its strongest).

    python -m benchmarks.variants.strongest --n 32768 --mode fixed \\
        --cells fused: torch-handwritten:compiled torch-handwritten:compiled-step
    python -m benchmarks.variants.strongest --n 8 --cells diffrax:batched diffrax:tuple
    python -m benchmarks.variants.strongest --n 32768 --chunks 5 10 25     # torch chunk sizes

Lorenz Tsit5 float32 (fixed: 1000 steps; adaptive: rtol = atol = 1e-6). Threads are pinned
BEFORE any library is imported (``--threads``, default 1) and the numeric policy
(``solvers.numeric_policy``) is applied as in a harness worker. Every cell is prepared and its
first run (compile) timed once; then ``--rounds`` rounds each time every cell ``--repeats``
times in turn (alternating, so load on a shared machine falls on all cells alike). Printed per
cell: compile seconds, median and spread (min-max of the round medians) of the seconds per
solve, and the ratio of medians to the first cell.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from harness.measure.clock import time_repeats
from solvers import numeric_policy
from solvers.base import SolveSpec
from solvers.handwritten import torch_backend
from solvers.registry import get_backend


def _pin(threads: int) -> None:
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={threads}").strip()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--mode", choices=("fixed", "adaptive"), default="fixed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", nargs="*", default=["fused:", "torch-handwritten:compiled"],
                    help="backend:variant, the first is the baseline")
    ap.add_argument("--chunks", nargs="*", type=int, default=[],
                    help="also torch-handwritten 'compiled' at these chunk sizes")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--xla-width", type=int, default=None,
                    help="override the policy's --xla_cpu_prefer_vector_width (the policy's gain)")
    args = ap.parse_args(argv)
    _pin(args.threads)
    numeric_policy.apply()
    if args.xla_width:
        os.environ["XLA_FLAGS"] = " ".join(
            [f for f in os.environ["XLA_FLAGS"].split() if not f.startswith(numeric_policy.XLA_WIDTH_FLAG)]
            + [f"{numeric_policy.XLA_WIDTH_FLAG}={args.xla_width}"])

    spec = SolveSpec("lorenz", "tsit5", args.mode, "float32", n=args.n, rtol=1e-6, atol=1e-6,
                     threads=args.threads)
    cells = [tuple(c.split(":", 1)) for c in args.cells]
    preps, labels = [], []
    for backend, variant in cells:
        s = spec.with_(variant=variant, method="rk4_38" if backend == "torchdiffeq" and args.mode == "fixed"
                       else "dopri5" if backend == "torchdiffeq" else "tsit5")
        preps.append(get_backend(backend).prepare(s))
        labels.append(f"{backend}:{variant}")
    for k in args.chunks:
        s = spec.with_(variant="compiled")
        preps.append(torch_backend.TorchLoopPrepared(s, compiled=True, chunk=k))
        labels.append(f"torch-handwritten:compiled chunk={k}")
    for label, p in zip(labels, preps):
        t0 = time.perf_counter()
        p.sync(p.run())
        print(f"compiled {label}: {time.perf_counter() - t0:.1f} s", flush=True)
    rounds: dict[str, list[float]] = {label: [] for label in labels}
    for _ in range(args.rounds):
        for label, p in zip(labels, preps):
            samples = time_repeats(lambda p=p: p.sync(p.run()), args.repeats)
            rounds[label].append(statistics.median(samples))
    base = statistics.median(rounds[labels[0]])
    print(f"XLA_FLAGS={os.environ['XLA_FLAGS']}")
    print(f"Lorenz tsit5 float32 {args.mode} N={args.n} threads={args.threads} load={os.getloadavg()[0]:.1f} "
          f"({args.rounds} rounds x {args.repeats} repeats, interleaved)")
    for label in labels:
        med = statistics.median(rounds[label])
        print(f"  {label:45s} {med * 1e3:10.2f} ms  [{min(rounds[label]) * 1e3:.2f}-"
              f"{max(rounds[label]) * 1e3:.2f}]  x{med / base:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
