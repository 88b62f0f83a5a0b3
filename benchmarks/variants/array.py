"""Array-style replica vs the fused kernel: time and dispatched operations per solve.

    python -m benchmarks.variants.array                       # CPU, N = 8, 512, 8192, 65536
    python -m benchmarks.variants.array --n 8 512 --repeats 5
    python -m benchmarks.variants.array --device gpu          # on a GPU box (CuPy / Numba CUDA)

Cases (Lorenz, Tsit5, float32 by default): fixed dt = 1e-3 (1000 steps); adaptive at
rtol = atol = 1e-6 with per-trajectory (lockstep) and shared step control for the array backend,
each against the fused kernel's own per-trajectory adaptive solve. Both backends run in this one
process, so the ratios come from one run. Time is the wall time of ``run()`` + ``sync()``, timed
by the harness's clock (``harness.measure.clock.time_repeats``: first call and warm-up untimed,
then ``--repeats`` timed calls); min and median are reported.
Operations per solve come from ``harness.measure.launches.count_launches`` (array operations on a CPU,
kernel launches on a GPU). This is a quick side-by-side, not the harness; nothing is asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass

import numpy as np

from harness.measure.clock import time_repeats
from harness.measure.launches import count_launches
from solvers.base import SolveSpec
from solvers.registry import get_backend

DEFAULT_N = (8, 512, 8192, 65536)

#: (label, array-backend spec fields, fused-backend spec fields)
CASES = (
    ("fixed dt=1e-3", dict(mode="fixed"), dict(mode="fixed")),
    ("adaptive 1e-6 per-trajectory", dict(mode="adaptive", rtol=1e-6, atol=1e-6),
     dict(mode="adaptive", rtol=1e-6, atol=1e-6)),
    ("adaptive 1e-6 shared", dict(mode="adaptive", rtol=1e-6, atol=1e-6, variant="shared"),
     dict(mode="adaptive", rtol=1e-6, atol=1e-6)),
)


@dataclass
class Measurement:
    """One backend on one spec: times of the timed calls, operations per solve, step counts."""

    times: list[float]
    operations: int | None
    counter: str
    steps_max: int
    iterations: int | None
    status_ok: bool

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def measure(backend_name: str, spec: SolveSpec, repeats: int) -> Measurement | str:
    """Time ``repeats`` solves of ``spec`` after the clock's warm-up; a string says why it could not run."""
    backend = get_backend(backend_name)
    ok, why = backend.available(spec.device)
    if not ok:
        return f"unavailable: {why}"
    reason = backend.check(spec)
    if reason:
        return f"unsupported: {reason}"
    prepared = backend.prepare(spec)
    try:
        last = []

        def solve() -> None:
            last[:] = [prepared.run()]
            prepared.sync(last[0])

        times = time_repeats(solve, repeats)
        result = prepared.fetch(last[0])
        operations, counter = count_launches(prepared, spec.device)
    finally:
        prepared.close()
    return Measurement(times=times, operations=operations, counter=counter,
                       steps_max=int(np.max(result.accepted)),
                       iterations=result.notes.get("lockstep_iterations"),
                       status_ok=bool(np.all(result.status == 0)))


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _fmt_ops(m: Measurement) -> str:
    return "n/a" if m.operations is None else f"{m.operations:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_N),
                        help="ensemble sizes (default: %(default)s)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls per cell, after one warm-up (default: %(default)s; "
                             "1 for N >= 65536 on a CPU, to stay within minutes)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(n < 1 for n in args.n):
        parser.error("every --n must be a positive integer")

    fused_note = ""
    fused_ok, why = get_backend("fused").available(args.device)
    if not fused_ok:
        fused_note = f"fused backend not available here ({why}): array numbers only"
        print(f"# {fused_note}", file=sys.stderr)

    print(f"Lorenz tsit5 {args.dtype} on {args.device}; time = min (median) of the timed "
          f"run()+sync() calls; ops = operations dispatched per solve\n")
    header = ("| case | N | array time | array ops | array steps max (iters) | fused time | "
              "fused ops | fused steps max | time ratio array/fused |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    counters = set()
    for label, array_fields, fused_fields in CASES:
        for n in args.n:
            repeats = 1 if (n >= 65536 and args.device == "cpu") else args.repeats
            common = dict(problem="lorenz", method="tsit5", dtype=args.dtype, n=n, device=args.device)
            arr = measure("array", SolveSpec(**common, **array_fields), repeats)
            fused = (measure("fused", SolveSpec(**common, **fused_fields), repeats) if fused_ok
                     else "not run")
            row = [label, f"{n:,}"]
            if isinstance(arr, Measurement):
                counters.add(("array", arr.counter))
                steps = f"{arr.steps_max}" + (f" ({arr.iterations})" if arr.iterations else "")
                row += [f"{_fmt_time(arr.best)} ({_fmt_time(arr.median)})", _fmt_ops(arr), steps]
            else:
                row += [arr, "", ""]
            if isinstance(fused, Measurement):
                counters.add(("fused", fused.counter))
                row += [f"{_fmt_time(fused.best)} ({_fmt_time(fused.median)})", _fmt_ops(fused),
                        str(fused.steps_max)]
                ratio = (f"{arr.best / fused.best:.1f}x" if isinstance(arr, Measurement)
                         else "")
                row.append(ratio)
            else:
                row += [fused, "", "", ""]
            print("| " + " | ".join(row) + " |", flush=True)
    print()
    for name, counter in sorted(counters):
        print(f"{name} ops counted as: {counter}")
    if fused_note:
        print(fused_note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
