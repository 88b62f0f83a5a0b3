"""How much the harness itself adds to a timed repeat, measured with a solve that does nothing.

``python -m harness.measure.overhead [--repeats R] [--trials T]`` prints:

* in-region overhead: the median ``time_s`` the clock records for a no-op ``run()`` +
  ``sync()``. This is what the harness adds to every measured sample (two ``perf_counter``
  calls and two method calls), i.e. the bias of each reported time;
* loop overhead: the wall time of the whole timed loop (the clock, list stores, the gc pause)
  divided by the number of calls: the harness's full cost per repeat, inside and outside the
  timed region;

each as a share of a 1 ms solve (the budget is 1%, i.e. 10 microseconds). The numbers are the
median over ``trials`` runs of ``repeats`` repeats each.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from time import perf_counter

from harness.measure.clock import time_solve


class NoopPrepared:
    """A prepared solve that does nothing: what a timed repeat costs beyond it is the harness."""

    def run(self):
        return None

    def sync(self, out) -> None:
        return None


def measure(repeats: int = 10_000, trials: int = 7) -> dict[str, float]:
    """Median in-region and whole-loop overhead per repeat, in seconds."""
    in_region, loop = [], []
    prep = NoopPrepared()
    for _ in range(trials):
        t0 = perf_counter()
        timing = time_solve(prep, repeats=repeats, warmups=0)
        elapsed = perf_counter() - t0
        in_region.append(statistics.median(timing.samples))
        loop.append(elapsed / (repeats + 1))  # + the first call
    return {"in_region_s": statistics.median(in_region), "loop_s": statistics.median(loop)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.measure.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10_000, help="timed repeats per trial")
    parser.add_argument("--trials", type=int, default=7, help="trials (the median is reported)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.trials < 1:
        print("error: --repeats and --trials must be >= 1", file=sys.stderr)
        return 2
    m = measure(args.repeats, args.trials)
    solve = 1e-3
    print(f"in-region overhead per repeat: {m['in_region_s'] * 1e6:.3f} us "
          f"({m['in_region_s'] / solve:.4%} of a 1 ms solve)")
    print(f"whole-loop overhead per repeat: {m['loop_s'] * 1e6:.3f} us "
          f"({m['loop_s'] / solve:.4%} of a 1 ms solve)")
    budget = 0.01 * solve
    verdict = "within" if max(m.values()) < budget else "OVER"
    print(f"{verdict} the budget of 1% of a 1 ms solve ({budget * 1e6:.0f} us)")
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
