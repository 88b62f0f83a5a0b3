"""``python -m harness gpu-profile``: the static profile table of the fused kernels, with the
hand-written C++ (cuda-cpp) kernel of each key that backend also solves beside them (column
``source``: "numba" / "cuda-cpp"), and of any PTX / CUDA C++ file given, the GPU spec table and the model's predicted times vs N on each card
(for the Lorenz float32 kernels, when profiled), written as CSV into ``--out DIR``:
gpu_profile.csv, gpu_specs.csv, gpu_model.csv."""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from harness.errors import UsageError
from problems.registry import is_problem_name, problem_names

PROFILE_CSV = "gpu_profile.csv"
SPECS_CSV = "gpu_specs.csv"
MODEL_CSV = "gpu_model.csv"


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


def run(args: argparse.Namespace) -> int:
    from harness.gpu_profile import kernels, tools

    archs = _split(args.arch) or list(kernels.ARCHS)
    for a in archs:
        if not (a.startswith("sm_") and a[3:].isdigit()):
            raise UsageError(f"invalid architecture {a!r}: write it as sm_XY, e.g. sm_90")
    from harness.gpu_profile import cpp_kernels

    sources = tuple(_split(args.source)) or (kernels.NUMBA_SOURCE, cpp_kernels.SOURCE)
    bad_sources = sorted(set(sources) - {kernels.NUMBA_SOURCE, cpp_kernels.SOURCE})
    if bad_sources:
        raise UsageError(f"invalid --source {', '.join(bad_sources)}: choose from numba, cuda-cpp")
    block = args.block  # None: each backend's own default
    if args.block is None:
        args.block = kernels.DEFAULT_BLOCK
    if not 32 <= args.block <= 1024 or args.block % 32:
        raise UsageError(f"invalid --block {args.block}: a multiple of 32 in 32..1024")
    for f in [*args.ptx, *args.cuda]:
        if not f.is_file():
            raise UsageError(f"no such file: {f}")
    for f in args.ptx:
        _require_ptx(f)
    keys = _selected_keys(args, kernels)
    missing = tools.missing_tools()
    if missing:
        raise UsageError(f"CUDA tools not found: {', '.join(missing)} (pip install nvidia-cuda-nvcc "
                         "nvidia-cuda-nvdisasm, or put CUDA on PATH)")
    created = next((p for p in [args.out, *args.out.parents] if p.parent.exists()), None) \
        if not args.out.exists() else None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output folder {args.out}: {exc.strerror or exc}") from None
    try:
        return _profile(args, archs, keys, block, sources)
    except BaseException:
        if created is not None:  # a failed command leaves nothing behind
            shutil.rmtree(created, ignore_errors=True)
        raise


def _require_ptx(path: Path) -> None:
    """UsageError unless ``path`` reads as PTX text (its .version and .target directives)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--ptx {path} is not a PTX text file ({type(exc).__name__})") from None
    if ".version" not in text or ".target" not in text:
        raise UsageError(f"--ptx {path} is not PTX (no .version and .target directives)")


def _selected_keys(args: argparse.Namespace, kernels) -> list:
    """The fused kernels --problem/--method/--mode/--dtype select; UsageError for an unknown
    name or a selection that matches no kernel."""
    dtypes = tuple(_split(args.dtype)) or ("float32", "float64")
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad:
        raise UsageError(f"invalid --dtype {', '.join(bad)}: choose from float32, float64")
    bad = [p for p in _split(args.problem) if not is_problem_name(p)]
    if bad:
        raise UsageError(f"unknown --problem {', '.join(bad)}; valid choices: {', '.join(problem_names())}")
    keys = kernels.fused_keys(_split(args.problem) or None, _split(args.method) or None,
                              _split(args.mode) or None, dtypes)
    if not keys:
        raise UsageError("no fused kernel matches --problem/--method/--mode/--dtype "
                         "(the fused CUDA kernels are ODE kernels)")
    return keys


def _profile(args: argparse.Namespace, archs: list[str], keys: list, block, sources) -> int:
    """Profile and write the CSVs into the (created) ``args.out``."""
    from harness.gpu_profile import kernels, specs  # as in run(): imported when the command runs
    rows = kernels.fused_profiles(archs, keys, block, progress=lambda m: print(m, file=sys.stderr), sources=sources)
    for path in args.ptx:
        for a in archs:
            for r in kernels.profile_ptx(path.read_text(), a, args.block):
                rows.append({**r, "variant": f"file:{path.name}"})
    for path in args.cuda:
        for a in archs:
            for r in kernels.profile_cuda_source(path.read_text(), a, args.block):
                rows.append({**r, "variant": f"file:{path.name}"})
    write_csv(args.out / PROFILE_CSV, rows, kernels.PROFILE_COLUMNS)
    # Predicted time vs N on every card of the spec table, for the Lorenz float32 kernels profiled
    # (step and launch counts from the newest committed results, as the report does).
    import pandas as pd

    from harness.gpu_profile import compare

    pred, _ = compare.predictions(pd.DataFrame(rows), pd.DataFrame())
    if not pred.empty:
        pred.to_csv(args.out / MODEL_CSV, index=False)
    spec_rows = specs.spec_table()
    write_csv(args.out / SPECS_CSV, spec_rows, list(spec_rows[0]))
    bad = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows)} profile rows ({bad} failed) -> {args.out / PROFILE_CSV}", file=sys.stderr)
    print(str(args.out / PROFILE_CSV))
    return 0 if rows and bad < len(rows) else 1
