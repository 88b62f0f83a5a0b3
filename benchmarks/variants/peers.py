"""Which variant of each peer is strongest: a quick interleaved comparison (not a results run).

    python -m benchmarks.variants.peers --n 2048 32768 --threads 1
    python -m benchmarks.variants.peers --n 2048 --threads 2 --only diffrax jax-handwritten

Lorenz, float32, Tsit5 (torchdiffeq: rk4_38 fixed, dopri5 adaptive; scipy: adaptive only),
exactly 1000 fixed steps, and adaptive at rtol = atol = 1e-6. For each (N, mode) every variant
is prepared and compiled first (compile time reported), then the timed runs go round-robin over
the variants (``--rounds``), so a burst of load from elsewhere hits them all alike; each timed run
is one sample of the harness's clock (``harness.measure.clock.time_repeats``, after its warm-up). Printed: the
minimum and median over the rounds, per-trajectory accepted steps (mean), and the maximum
relative error against the float64 reference. ``--threads`` sets torch's thread count and, for
JAX, the number of host devices (``XLA_FLAGS``, before JAX is imported; the JAX backends then
split the ensemble). The harness (``python -m harness run``) is what produces results; this
only ranks the variants for choosing suite entries.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from harness.measure.clock import time_repeats
from problems.reference import max_relative_error, reference
from solvers.base import SolveSpec
from solvers.registry import get_backend

#: (backend, variant, fixed method or None, adaptive method or None, largest N or None)
CELLS = (
    ("diffrax", "", "tsit5", "tsit5", None),
    ("diffrax", "vmap-of-jit", "tsit5", "tsit5", None),
    ("diffrax", "batched", "tsit5", "tsit5", None),
    ("jax-handwritten", "", "tsit5", "tsit5", None),
    ("jax-handwritten", "soa", "tsit5", "tsit5", None),
    ("jax-handwritten", "soa-unroll8", "tsit5", None, None),
    ("torch-handwritten", "", "tsit5", "tsit5", None),
    ("torch-handwritten", "compiled", "tsit5", "tsit5", None),
    ("torchdiffeq", "", "rk4_38", "dopri5", None),
    ("torchdiffeq", "compiled", "rk4_38", "dopri5", None),
    ("torchode", "", "tsit5", "tsit5", None),
    ("torchode", "compiled", "tsit5", "tsit5", None),
    ("torchode", "jit", "tsit5", "tsit5", None),
    ("scipy", "", None, "dop853", 256),
    ("scipy", "ode", None, "dop853", 256),
    ("scipy", "", None, "lsoda", 256),
    ("scipy", "odeint", None, "lsoda", 256),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2048, 32768])
    ap.add_argument("--modes", nargs="+", default=["fixed", "adaptive"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="+", default=None, help="backends to include")
    ap.add_argument("--budget", type=float, default=20.0,
                    help="skip a variant's further rounds once one run exceeds this many seconds")
    args = ap.parse_args(argv)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.threads}").strip()
    import torch  # only after XLA_FLAGS is set above, as every backend library

    torch.set_num_threads(args.threads)

    print(f"threads={args.threads}  rounds={args.rounds}  (contended machine: compare within a block)")
    for n in args.n:
        for mode in args.modes:
            preps = []
            for backend, variant, fixed_m, adapt_m, n_cap in CELLS:
                method = fixed_m if mode == "fixed" else adapt_m
                if method is None or (args.only and backend not in args.only) or (n_cap and n > n_cap):
                    continue
                spec = SolveSpec(problem="lorenz", method=method, mode=mode, dtype="float32",
                                 n=n, rtol=1e-6, atol=1e-6, variant=variant, threads=args.threads)
                label = f"{backend}[{variant or '-'}] {method}"
                b = get_backend(backend)
                reason = b.check(spec)
                if reason:
                    print(f"  {label:42s} refused: {reason[:110]}")
                    continue
                prep = b.prepare(spec)
                t = time.perf_counter()
                out = prep.run()
                prep.sync(out)
                compile_s = time.perf_counter() - t
                res = prep.fetch(out)
                err = max_relative_error(res.u_final, reference(spec.prob, n, spec.dtype))
                preps.append([label, prep, compile_s, [], float(np.mean(res.accepted)), err])
            for _ in range(args.rounds):
                for row in preps:
                    if row[3] and max(row[3]) > args.budget:
                        continue
                    row[3].extend(time_repeats(lambda p=row[1]: p.sync(p.run()), 1))
            print(f"N={n} {mode}" + (" rtol=atol=1e-6" if mode == "adaptive" else " 1000 steps"))
            for label, prep, compile_s, times, steps, err in preps:
                print(f"  {label:42s} min {min(times):9.4f} s  median {statistics.median(times):9.4f} s"
                      f"  first {compile_s:7.2f} s  runs {len(times)}  steps {steps:7.1f}  err {err:.1e}")
                prep.close()
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
