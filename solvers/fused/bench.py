"""``python -m solvers.fused.bench``: the fused CPU kernels' timings, the command issue 29 names.

A thin entry point: the timing code lives in ``benchmarks.variants.fused`` (benchmarks use the
harness's clock, and solvers never import the harness), run here by module name with the same
arguments, e.g. ``python -m solvers.fused.bench --cases fixed adaptive-1e-6 --variants lanes``.
"""
from __future__ import annotations

import runpy

if __name__ == "__main__":
    runpy.run_module("benchmarks.variants.fused", run_name="__main__", alter_sys=True)
