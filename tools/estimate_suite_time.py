"""Estimate a CPU suite's wall time on a quiet machine from an earlier run's per-cell times.

    PYTHONPATH=. python tools/estimate_suite_time.py [SUITE] [REFERENCE_RUN_DIR]

A planning tool, not a measurement: each cell costs a per-backend overhead (launch count,
reference, bookkeeping: measured from the reference run's ``started_at`` gaps) + its first call
+ its warm-up (until two calls agree, at most 1 s) + its time-boxed repeats, taking the time of
the same cell in the reference run (extrapolated in proportion to N beyond its largest N).
Variants the reference run did not have use the RULES below: a factor on their default
variant's time and a first-call (compile) time, both guesses, stated here.
"""
from __future__ import annotations

import collections
import math
import sys

from harness.results.store import read_results
from harness.run.suites import load_suite

#: (backend, variant, mode or None) -> (variant measured, time factor, first-call seconds): guesses
RULES = {
    ("diffrax", "batched", "fixed"): ("", 1 / 9, 1.0),     # ~9x at N=2048 (GUIDE facts)
    ("diffrax", "batched", "adaptive"): ("", 1 / 3, 1.5),
    ("jax-handwritten", "soa", None): ("", 1.0, 0.6),
    ("torch-handwritten", "compiled", None): ("", 0.3, 30.0),      # a compiled chunk: ~3x one step's compile
    ("torch-handwritten", "compiled-step", None): ("", 0.4, 12.0),
    ("diffrax", "tuple", "fixed"): ("", 1 / 9, 1.0),        # as "batched" (bitwise the same solve)
    ("diffrax", "tuple", "adaptive"): ("", 1 / 3, 1.5),
    ("torchode", "jit", None): ("", 0.6, 4.0),              # torchode docs: ~1.8x
    ("torchode", "compiled", None): ("", 0.6, 15.0),
    ("torchdiffeq", "compiled", None): ("", 0.7, 10.0),
    ("scipy", "odeint", None): ("", 0.3, 0.0),
    ("scipy", "ode", None): ("", 0.5, 0.0),
}
#: per-cell overhead by backend, s (2026-11-27 quiet cpu run: started_at gaps minus solve times)
OVERHEAD = {"array": 1.0, "diffrax": 1.0, "fused": 0.46, "jax-handwritten": 0.62, "scipy": 0.8,
            "torch-handwritten": 1.77, "torchdiffeq": 1.42, "torchode": 1.59}
WORKER_START_S = 2.5
#: backends that used both cores in the reference run (their threads=1 cells take longer)
TWO_CORE = ("fused", "torch-handwritten", "torchdiffeq", "torchode", "array")


def main(suite_name: str = "cpu", reference: str = "results/20261127T211056Z-cpu-vm") -> None:
    old = read_results(reference)
    ok = old[old.status == "ok"]
    times: dict[tuple, tuple[float, float]] = {}
    for key, g in ok.groupby(["backend", "variant", "problem", "method", "mode", "rtol", "n"], dropna=False):
        *head, rtol, n = key
        times[(*head, "" if rtol != rtol else repr(float(rtol)), n)] = (g.time_s.median(), g.first_call_s.iloc[0])

    def lookup(b, v, p, m, mode, rtol, n):
        key = (b, v, p, m, mode, "" if rtol is None else repr(float(rtol)), n)
        if key in times:
            return times[key]
        series = sorted((k[-1], *times[k]) for k in times if k[:-1] == key[:-1])
        if not series:
            return None
        n0, t0, f0 = series[-1] if series[-1][0] < n else series[0]
        scale = n / n0 if n0 < n else 1.0
        return t0 * scale, f0 - t0 + t0 * scale

    suite = load_suite(suite_name)
    total, groups, per, unknown = 0.0, set(), collections.Counter(), []
    for c in suite.cells:
        s, d = c.spec, c.spec.as_dict()
        rule = RULES.get((c.backend, s.variant, s.mode)) or RULES.get((c.backend, s.variant, None))
        method = "dop853" if (c.backend == "scipy" and s.method == "lsoda" and s.variant) else s.method
        got = lookup(c.backend, rule[0] if rule else s.variant, s.problem, method, s.mode, d["rtol"], s.n)
        for r in (1e-8, 1e-6):
            if got is None and s.mode == "adaptive":
                got = lookup(c.backend, rule[0] if rule else s.variant, s.problem, method, s.mode, r, s.n)
        if got is None:
            unknown.append(c.label)
            t, first = 0.5, 3.0
        else:
            t, first = got
            if rule:
                t, first = t * rule[1], max(rule[2], t * rule[1])
        if s.threads == 1 and c.backend in TWO_CORE:
            t *= 1.8
        warm = t if t >= 1.0 else max(0.25, 2 * t)
        reps = c.repeats
        if c.min_repeats is not None and c.repeat_budget_s is not None:
            reps = max(min(c.repeats, c.min_repeats), min(c.repeats, math.ceil(c.repeat_budget_s / t)))
        cost = OVERHEAD.get(c.backend, 1.0) + first + warm + reps * t
        groups.add((c.backend, s.threads))
        per[(c.backend, s.variant)] += cost
        total += cost
    total += WORKER_START_S * len(groups)
    print(f"{suite.name}: {len(suite.cells)} cells, {len(groups)} worker processes, "
          f"estimated {total:.0f} s ({total / 60:.1f} min) on a quiet machine like the reference run's")
    for (b, v), x in per.most_common():
        print(f"  {b}{f'[{v}]' if v else ''}: {x:.0f} s")
    if unknown:
        print(f"  {len(unknown)} cells without reference data (counted as 3.5 s + 0.5 s a call)")


if __name__ == "__main__":
    main(*sys.argv[1:])
