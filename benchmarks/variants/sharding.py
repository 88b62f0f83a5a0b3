"""Where splitting a JAX solve over host devices pays (issue 33, item 6): 1 device against 2.

    python -m benchmarks.variants.sharding                      # N = 8 .. 32768, fixed
    python -m benchmarks.variants.sharding --mode adaptive --sizes 8 512 2048

One process on 2 cores exposing 2 host devices (set before JAX is imported); at each N the
jax-handwritten "soa" and diffrax "batched" solves on one device (threads=1) and split over two
(threads=2; ``jax_sharding.SPLIT_MIN_N`` forced to 0) are timed in alternation, ``--rounds``
rounds of ``--repeats``. Printed: median ms per solve and the 1-device / 2-device ratio (> 1:
the split pays). ``solvers.jax_sharding.SPLIT_MIN_N`` is the smallest N where it paid.
"""
from __future__ import annotations

import argparse
import os
import statistics

from harness.measure.clock import time_repeats
from solvers import numeric_policy
from solvers.base import SolveSpec
from solvers.registry import get_backend


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("fixed", "adaptive"), default="fixed")
    ap.add_argument("--sizes", nargs="*", type=int, default=[8, 128, 512, 2048, 8192, 32768])
    ap.add_argument("--backends", nargs="*", default=["jax-handwritten:soa", "diffrax:batched"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    os.environ["ODEBENCH_JAX_SPLIT_MIN_N"] = "0"      # force the split for the 2-device cells

    numeric_policy.apply()

    print(f"Lorenz tsit5 float32 {args.mode}, 1 device vs 2 (load {os.getloadavg()[0]:.1f})")
    for n in args.sizes:
        for cell in args.backends:
            backend, variant = cell.split(":", 1)
            spec = SolveSpec("lorenz", "tsit5", args.mode, "float32", n=n, variant=variant,
                             rtol=1e-6, atol=1e-6)
            preps = {k: get_backend(backend).prepare(spec.with_(threads=k)) for k in (1, 2)}
            for p in preps.values():
                p.sync(p.run())
            med: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.rounds):
                for k, p in preps.items():
                    med[k].append(statistics.median(time_repeats(lambda p=p: p.sync(p.run()), args.repeats)))
            one, two = statistics.median(med[1]), statistics.median(med[2])
            print(f"  N={n:6d} {cell:22s} 1 device {one * 1e3:9.3f} ms  2 devices {two * 1e3:9.3f} ms"
                  f"  1/2 = {one / two:5.2f}", flush=True)
            for p in preps.values():
                p.close()


if __name__ == "__main__":
    main()
