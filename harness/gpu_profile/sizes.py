"""Registers, spills and occupancy of the fused CUDA kernel vs the state dimension d (issue 15).

    python -m harness.gpu_profile.sizes --out DIR [--dims 4,8,16,64,256,1024] [--arch sm_90]

Compiles the fused Tsit5 float32 kernels of Lorenz-96 (``lorenz96-<d>``, fixed and adaptive)
to PTX with numba-cuda and assembles them with ptxas (``harness.gpu_profile.kernels``: no GPU
needed), and writes ``gpu_sizes.csv`` (one row per kernel: layout, registers per thread, spill
and local-memory bytes, resident warps and occupancy at the backend's block size, SASS
instructions per step). Everything here is **machine code read statically**; no time is
measured. What the local memory costs at run time is modelled in ``predict`` below.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

DIMS = (4, 8, 16, 64, 256, 1024)


def profile_rows(dims=DIMS, modes=("fixed", "adaptive"), arch: str = "sm_90") -> pd.DataFrame:
    from harness.gpu_profile.kernels import fused_ptx, profile_ptx
    from problems.registry import get_problem
    from solvers.fused import KernelKey
    from solvers.fused.looped import uses_looped

    rows = []
    for d in dims:
        for mode in modes:
            key = KernelKey(f"lorenz96-{d}", "tsit5", mode, "float32", target="cuda")
            layout = "looped" if uses_looped(get_problem(key.problem)) else "unrolled"
            try:
                for r in profile_ptx(fused_ptx(key), arch):
                    rows.append({"d": d, "mode": mode, "layout": layout, **r})
            except Exception as exc:  # noqa: BLE001 - a failing kernel is a row with its reason
                rows.append({"d": d, "mode": mode, "layout": layout, "arch": arch, "status": "error",
                             "reason": f"{type(exc).__name__}: {exc}"[:300]})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.gpu_profile.sizes", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dims", default=",".join(map(str, DIMS)))
    ap.add_argument("--arch", default="sm_90")
    a = ap.parse_args(argv)
    try:
        dims = [int(x) for x in a.dims.split(",") if x]
    except ValueError:
        print(f"invalid --dims {a.dims!r}: comma-separated integers", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df = profile_rows(dims, arch=a.arch)
    df.to_csv(out / "gpu_sizes.csv", index=False)
    cols = [c for c in ("d", "mode", "layout", "registers", "spill_store_bytes", "spill_load_bytes",
                        "local_bytes", "occupancy", "step_total", "status") if c in df]
    print(df[cols].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
