"""The package's commands.

``python -m harness gpu-profile --out DIR``: the static profile table of the fused kernels, with
the hand-written C++ (cuda-cpp) kernel of each key that backend also solves beside them (column
``source``: "numba" / "cuda-cpp"), and of any PTX / CUDA C++ file given, the GPU spec table and
the model's predicted times vs N on each card (for the Lorenz float32 kernels, when profiled),
written as CSV into DIR: gpu_profile.csv, gpu_specs.csv, gpu_model.csv.

``python -m harness.gpu_profile``:

* ``readme RUN_DIR``: print the README paragraph for a run's results;
* ``sizes --out DIR [--dims 4,8,16,64,256,1024] [--arch sm_90]``: registers, spills and
  occupancy of the fused CUDA kernel vs the state dimension d (issue 15). Compiles the fused
  Tsit5 float32 kernels of Lorenz-96 (``lorenz96-<d>``, fixed and adaptive) to PTX and
  assembles them with ptxas (no GPU needed), and writes ``gpu_sizes.csv`` (one row per kernel:
  layout, registers per thread, spill and local-memory bytes, resident warps and occupancy at
  the backend's block size, SASS instructions per step). Machine code read statically; no
  time is measured;
* ``cpu-peak DIR``: measure this core's float32 FMA throughput into ``DIR/cpu_peak.json``
  (``cpu_asm.measure_peak``), for the report's CPU calibration.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import pandas as pd

from harness.errors import UsageError
from harness.gpu_profile import compare, cpu_asm, kernels, model, section, sources, tools
from problems.registry import get_problem, is_problem_name, problem_names
from solvers.fused import KernelKey
from solvers.fused.looped import uses_looped

PROFILE_CSV = "gpu_profile.csv"
SPECS_CSV = "gpu_specs.csv"
MODEL_CSV = "gpu_model.csv"
SIZES_CSV = "gpu_sizes.csv"
DIMS = (4, 8, 16, 64, 256, 1024)


# ---- python -m harness gpu-profile -------------------------------------------------------------------

def add_parser(sub) -> None:
    p = sub.add_parser("gpu-profile", help="registers, spills, occupancy and per-step SASS counts of the "
                                          "fused kernels for named GPU architectures (no GPU needed)")
    p.add_argument("--arch", action="append", metavar="ARCH", help="e.g. sm_70,sm_75,sm_90 (default: all three)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for gpu_profile.csv")
    for name in ("problem", "method", "mode", "dtype"):
        p.add_argument(f"--{name}", action="append", metavar=name.upper(), help=f"only these {name}s")
    p.add_argument("--source", action="append", metavar="SOURCE",
                   help="kernel sources: numba,cuda-cpp (default: both; cuda-cpp where it has the solve)")
    p.add_argument("--block", type=int, default=None,
                   help="threads per block for the occupancy (default: each backend's own)")
    p.add_argument("--ptx", action="append", type=Path, default=[], metavar="FILE", help="also profile this PTX file")
    p.add_argument("--cuda", action="append", type=Path, default=[], metavar="FILE",
                   help="also profile this CUDA C++ file (compiled with nvcc -O3)")


def _split(values):
    out = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def write_csv(path: Path, rows: list[dict], columns) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    tmp.replace(path)


def _checked(args: argparse.Namespace) -> tuple[list[str], tuple[str, ...], list]:
    """(architectures, kernel sources, fused kernel keys) of the command line; UsageError on
    anything invalid, before any folder is made."""
    archs = _split(args.arch) or list(sources.ARCHS)
    for a in archs:
        if not (a.startswith("sm_") and a[3:].isdigit()):
            raise UsageError(f"invalid architecture {a!r}: write it as sm_XY, e.g. sm_90")
    chosen = tuple(_split(args.source)) or (sources.NUMBA_SOURCE, sources.CPP_SOURCE)
    bad_sources = sorted(set(chosen) - {sources.NUMBA_SOURCE, sources.CPP_SOURCE})
    if bad_sources:
        raise UsageError(f"invalid --source {', '.join(bad_sources)}: choose from numba, cuda-cpp")
    if args.block is not None and (not 32 <= args.block <= 1024 or args.block % 32):
        raise UsageError(f"invalid --block {args.block}: a multiple of 32 in 32..1024")
    for f in [*args.ptx, *args.cuda]:
        if not f.is_file():
            raise UsageError(f"no such file: {f}")
    for f in args.ptx:
        _require_ptx(f)
    keys = _selected_keys(args)
    missing = tools.missing_tools()
    if missing:
        raise UsageError(f"CUDA tools not found: {', '.join(missing)} (pip install nvidia-cuda-nvcc "
                         "nvidia-cuda-nvdisasm, or put CUDA on PATH)")
    return archs, chosen, keys


def _require_ptx(path: Path) -> None:
    """UsageError unless ``path`` reads as PTX text (its .version and .target directives)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ptx {path} is not a PTX text file ({type(exc).__name__})") from None
    if ".version" not in text or ".target" not in text:
        raise UsageError(f"--ptx {path} is not PTX (no .version and .target directives)")


def _selected_keys(args: argparse.Namespace) -> list:
    """The fused kernels --problem/--method/--mode/--dtype select; UsageError for an unknown
    name or a selection that matches no kernel."""
    dtypes = tuple(_split(args.dtype)) or ("float32", "float64")
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad:
        raise UsageError(f"invalid --dtype {', '.join(bad)}: choose from float32, float64")
    bad = [p for p in _split(args.problem) if not is_problem_name(p)]
    if bad:
        raise UsageError(f"unknown --problem {', '.join(bad)}; valid choices: {', '.join(problem_names())}")
    keys = sources.fused_keys(_split(args.problem) or None, _split(args.method) or None,
                              _split(args.mode) or None, dtypes)
    if not keys:
        raise UsageError("no fused kernel matches --problem/--method/--mode/--dtype "
                         "(the fused CUDA kernels are ODE kernels)")
    return keys


def run(args: argparse.Namespace) -> int:
    archs, chosen, keys = _checked(args)
    created = next((p for p in [args.out, *args.out.parents] if p.parent.exists()), None) \
        if not args.out.exists() else None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {args.out}: {exc.strerror or exc}") from None
    try:
        return _profile(args, archs, chosen, keys)
    except BaseException:
        if created is not None:  # a failed command leaves nothing behind
            shutil.rmtree(created, ignore_errors=True)
        raise


def _profile(args: argparse.Namespace, archs: list[str], chosen: tuple[str, ...], keys: list) -> int:
    """Profile and write the CSVs into the (created) ``args.out``."""
    rows = sources.fused_profiles(archs, keys, args.block, progress=lambda m: print(m, file=sys.stderr),
                                  sources=chosen)
    file_block = args.block or sources.DEFAULT_BLOCK  # files given belong to no backend
    for path in args.ptx:
        for a in archs:
            for r in kernels.profile_ptx(path.read_text(), a, file_block):
                rows.append({**r, "variant": f"file:{path.name}"})
    for path in args.cuda:
        for a in archs:
            for r in kernels.profile_cuda_source(path.read_text(), a, file_block):
                rows.append({**r, "variant": f"file:{path.name}"})
    write_csv(args.out / PROFILE_CSV, rows, kernels.PROFILE_COLUMNS)
    # Predicted time vs N on every card of the spec table, for the Lorenz float32 kernels profiled
    # (step and launch counts from the newest committed results, as the report does).
    pred, _ = compare.predictions(pd.DataFrame(rows), pd.DataFrame())
    if not pred.empty:
        pred.to_csv(args.out / MODEL_CSV, index=False)
    spec_rows = model.spec_table()
    write_csv(args.out / SPECS_CSV, spec_rows, list(spec_rows[0]))
    bad = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows)} profile rows ({bad} failed) -> {args.out / PROFILE_CSV}", file=sys.stderr)
    print(str(args.out / PROFILE_CSV))
    return 0 if rows and bad < len(rows) else 1


# ---- python -m harness.gpu_profile sizes ---------------------------------------------------------------

def size_rows(dims=DIMS, modes=("fixed", "adaptive"), arch: str = "sm_90") -> pd.DataFrame:
    """One profile row per Lorenz-96 dimension and mode (a row with its reason where compiling fails)."""
    rows = []
    for d in dims:
        for mode in modes:
            key = KernelKey(f"lorenz96-{d}", "tsit5", mode, "float32", target="cuda")
            layout = "looped" if uses_looped(get_problem(key.problem)) else "unrolled"
            try:
                for r in kernels.profile_ptx(sources.fused_ptx(key), arch, sources.DEFAULT_BLOCK):
                    rows.append({"d": d, "mode": mode, "layout": layout, **r})
            except Exception as exc:  # noqa: BLE001 - a failing kernel is a row with its reason
                rows.append({"d": d, "mode": mode, "layout": layout, "arch": arch, "status": "error",
                             "reason": f"{type(exc).__name__}: {exc}"[:300]})
    return pd.DataFrame(rows)


def _sizes(a: argparse.Namespace) -> int:
    try:
        dims = [int(x) for x in a.dims.split(",") if x]
    except ValueError:
        print(f"invalid --dims {a.dims!r}: comma-separated integers", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    df = size_rows(dims, arch=a.arch)
    df.to_csv(out / SIZES_CSV, index=False)
    cols = [c for c in ("d", "mode", "layout", "registers", "spill_store_bytes", "spill_load_bytes",
                        "local_bytes", "occupancy", "step_total", "status") if c in df]
    print(df[cols].to_string(index=False))
    return 0


# ---- python -m harness.gpu_profile readme / cpu-peak ---------------------------------------------------

def _readme(a: argparse.Namespace) -> int:
    run_dir = Path(a.run_dir)
    if not (run_dir / "results.csv").is_file():
        print(f"error: {run_dir} is not a run folder (no results.csv)", file=sys.stderr)
        return 2
    print(section.readme_paragraph(pd.read_csv(run_dir / "results.csv")))
    return 0


def _cpu_peak(a: argparse.Namespace) -> int:
    out = Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    print(cpu_asm.write_peak(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.gpu_profile",
                                 description="GPU evidence without a GPU: the README paragraph, the "
                                             "kernel profile vs state dimension, the CPU FMA peak")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("readme", help="print the README paragraph for a run's results")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_readme)
    p = sub.add_parser("sizes", help="registers, spills and occupancy of the fused kernel vs d -> gpu_sizes.csv")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--dims", default=",".join(map(str, DIMS)))
    p.add_argument("--arch", default="sm_90")
    p.set_defaults(func=_sizes)
    p = sub.add_parser("cpu-peak", help="measure this core's float32 FMA peak into DIR/cpu_peak.json")
    p.add_argument("dir", metavar="DIR", help="a run folder (or the folder a run will be written to)")
    p.set_defaults(func=_cpu_peak)
    a = ap.parse_args(argv)
    return a.func(a)
