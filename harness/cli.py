"""Command line: ``python -m harness COMMAND``.

Commands: ``run`` (a suite, or part of it, into a run folder; ``--resume`` continues one;
``--budget-s``/``--preflight``/``--device`` for a short GPU session: harness.run.session and
harness.run.gates),
``report`` (figures and report of a run folder, by harness.report.markdown), ``check`` (exit 1 unless a
run folder's table passes harness.results.integrity (whole, unedited since its session closed,
complete, plausible, the run's plan; ``--partial`` accepts an unfinished run) and holds timings
whose ok rows meet harness.measure.accuracy; one line per failure, naming the cell and the rule),
``refs`` (the references a suite needs, into problems/refs/), ``preflight`` (quick checks
before a GPU session: harness.run.preflight), ``list`` (problems, backends and their
availability, methods, suites), ``env`` (the environment fingerprint; ``--check``: required and
optional packages, harness.packages), ``default-suite`` (gpu-quick where a GPU is usable, else
cpu) and ``bench-compare`` (a pytest-benchmark JSON against a baseline, by harness.bench_compare),
``readme`` (README.md's results block from a run; ``--check`` compares) and ``figures`` (the
reference runs' headline figures into figures/), both by harness.report.readme, ``overhead``
(what the clock adds to a timed repeat: harness.measure.clock) and ``gpu-profile``
(harness.gpu_profile.command).

Bad input (an unknown name, N <= 0, a malformed suite, an output folder that cannot be
written) gives one line ``error: ...`` on stderr and exit code 2, before anything is written; a
command that fails after creating a folder removes it, and an OS error (a read-only or full
destination) is one line too (``main``).
Progress and messages go to stderr; data goes to files (``list`` and ``env`` print to stdout,
that being their output).

Exit codes of ``run``: 0 the sweep finished; 1 it finished but no cell produced timings (a
sweep that measured nothing must fail loudly), or writing failed mid-run (a full disk: the rows
written are whole, ``--resume DIR`` continues); 2 bad input; 130 interrupted (resume with
``--resume DIR``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Sequence

from harness import bench_compare
from harness.errors import UsageError
from harness.gpu_profile.command import add_parser as add_gpu_profile_parser
from harness.gpu_profile.command import run as run_gpu_profile
from harness.measure import environment
from harness.measure.accuracy import accuracy_violations
from harness.measure.clock import measure_overhead
from harness.packages import OPTIONAL, REQUIRED, missing
from harness.refs import write_shipped
from harness.report.markdown import write_report
from harness.report.readme import (FIGURES_DIR, ReadmeError, runs_named_in_readme, write_readme,
                                   write_top_figures)
from harness.results.fairness import fairness_report
from harness.results.integrity import integrity_failures
from harness.results.schema import SchemaError
from harness.results.store import CSV_NAME
from harness.run.preflight import cmd_preflight
from harness.run.session import run_session, split_values
from harness.run.suites import load_suite, suite_names
from problems.registry import ProblemPluginError, get_problem, problem_names
from solvers.registry import backend_names, load_backend, methods_of, variants_of


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the usage block too)."""

    def error(self, message: str):
        raise UsageError(message)


def _positive_int_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive integer")
    return v


def _nonnegative_int_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be an integer >= 0")
    return v


def _positive_float_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive number of seconds")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness",
                     description="Benchmark harness: run suites of ODE-ensemble solves and report them.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a suite (or part of it) and write results/<run_id>/")
    run.add_argument("--suite", help="suite name (see `list`) or path to a .toml file")
    for name, what in (("problem", "problems"), ("backend", "backends"), ("method", "methods"),
                       ("mode", "modes (fixed, adaptive)"), ("n", "ensemble sizes")):
        run.add_argument(f"--{name}", action="append", metavar=name.upper(),
                         help=f"run only these {what}; repeatable or comma-separated")
    run.add_argument("--repeats", type=_positive_int_arg, help="timed repeats per cell (overrides the suite)")
    run.add_argument("--warmups", type=_nonnegative_int_arg, help="untimed warm-up runs per cell (overrides the suite)")
    run.add_argument("--cell-timeout", type=_positive_float_arg, metavar="SECONDS",
                     help="wall-clock limit per cell (overrides the suite)")
    run.add_argument("--threads", action="append", metavar="THREADS",
                     help="CPU threads per cell, overriding the suite; several (comma-separated or "
                          "repeated) run every cell once per value (default: the suite's, else every core)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, metavar="DIR", help="run folder (default results/<run_id>)")
    where.add_argument("--resume", type=Path, metavar="DIR",
                       help="continue the run in DIR: finished cells are skipped, never duplicated")
    how = run.add_mutually_exclusive_group()
    how.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                     help="one child process per backend and thread count (the default)")
    how.add_argument("--no-isolate", dest="isolate", action="store_false",
                     help="all cells of one thread count in one child process (quicker, less clean)")
    how.add_argument("--in-process", action="store_true",
                     help="run cells in this process (debugging; time limits only via SIGALRM)")
    run.add_argument("--device", choices=("cpu", "gpu"),
                     help="run every cell on this device (e.g. a GPU suite's dry run on a CPU)")
    run.add_argument("--budget-s", type=_positive_float_arg, metavar="SECONDS",
                     help="time budget of this session: headline cells first, shared among backends; "
                          "cells left out become 'skipped' rows that --resume runs (harness.run.gates)")
    run.add_argument("--preflight", type=Path, metavar="JSON",
                     help="preflight.json of `preflight`: backends that failed it are not run")
    run.add_argument("--cluster", metavar="ADDRESS",
                     help="run cells on a Dask cluster: 'local' (a LocalCluster here, or LocalCUDACluster "
                          "with GPUs), 'local:W' (W workers) or a scheduler address tcp://host:8786 "
                          "(harness.run.cluster; needs dask[distributed])")
    run.add_argument("--shards", type=_nonnegative_int_arg, metavar="K",
                     help="split every cell's ensemble into K shards solved on K Dask workers and gathered "
                          "(harness.run.shards; 0: unsharded; overrides the suite; without --cluster: local)")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--report", action="store_true", help="build the report when the sweep is done")

    rep = sub.add_parser("report", help="build the report of a run folder")
    rep.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    rep.add_argument("--companion", dest="companions", type=Path, action="append", default=[], metavar="RUN_DIR",
                     help="another run the sections compare against (e.g. the cpu run for pso, nonlinear); repeatable; "
                          "default: the run suite's `companions`")
    chk = sub.add_parser("check", help="exit 1 unless RUN_DIR holds a valid results table with timings")
    chk.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    chk.add_argument("--partial", action="store_true",
                     help="accept an unfinished run (interrupted, or cells skipped for lack of time); "
                          "every row it holds must still be sound")
    chk.add_argument("--require-ok", action="append", metavar="BACKEND",
                     help="also fail unless each of these backends has an ok cell; repeatable or comma-separated")
    refs = sub.add_parser("refs", help="compute the float64 references a suite needs into problems/refs/ (commit them)")
    refs.add_argument("--suite", required=True, help="suite name or path to a .toml file")
    refs.add_argument("--n", action="append", metavar="N", help="only these ensemble sizes")
    pre = sub.add_parser("preflight", help="quick checks before a GPU session (<= 20 s); writes preflight.json")
    pre.add_argument("--suite", default="gpu-quick", help="the suite whose references must be present")
    pre.add_argument("--device", choices=("cpu", "gpu"), help="the device the suite will run on (default: the suite's)")
    pre.add_argument("--out", type=Path, default=Path("preflight.json"), metavar="JSON")
    sub.add_parser("list", help="problems, backends (availability), methods and suites")
    env = sub.add_parser("env", help="print the environment fingerprint as JSON")
    env.add_argument("--check", action="store_true",
                     help="instead: check that the core packages are installed (exit 1 if not)")
    rdm = sub.add_parser("readme", help="rewrite README.md's results block from RUN_DIR's results")
    rdm.add_argument("run_dir", type=Path, metavar="RUN_DIR", nargs="?",
                     help="run folder (default: the run the README's block names)")
    rdm.add_argument("--companion", dest="companions", type=Path, action="append", default=[], metavar="RUN_DIR",
                     help="a feature run whose sections add a paragraph (sizes, pso, ...); repeatable")
    rdm.add_argument("--check", action="store_true", help="exit 1 if the block differs; write nothing")
    rdm.add_argument("--readme", type=Path, default=Path("README.md"), help="the README to edit")
    figs = sub.add_parser("figures", help="draw the reference runs' headline figures into figures/")
    figs.add_argument("run_dirs", type=Path, metavar="RUN_DIR", nargs="*",
                      help="run folders (default: the run the README's block names)")
    sub.add_parser("default-suite", help="print the suite `make reproduce` runs here: gpu-quick with a usable GPU, else cpu")
    bench = sub.add_parser("bench-compare", help="compare a pytest-benchmark JSON with a baseline (exit 1 on regression)")
    bench.add_argument("current", metavar="CURRENT_JSON")
    bench.add_argument("baseline", metavar="BASELINE_JSON")
    bench.add_argument("--threshold", type=_positive_float_arg, default=None,
                       help="allowed slow-down relative to the reference cell (default 0.25)")
    fair = sub.add_parser("fairness", help="per library and N: the fastest variant that ran and the variants that did not")
    fair.add_argument("run_dir", type=Path, help="a run folder (results/<run_id>)")
    fair.add_argument("--missing", action="store_true", help="only the library cells that miss a variant")
    fair.add_argument("--strict", action="store_true", help="exit 1 if any library cell misses a variant")
    ovh = sub.add_parser("overhead", help="what the clock adds to a timed repeat (exit 1 over 1%% of a 1 ms solve)")
    ovh.add_argument("--repeats", type=_positive_int_arg, default=10_000, help="timed repeats per trial")
    ovh.add_argument("--trials", type=_positive_int_arg, default=7, help="trials (the median is reported)")
    add_gpu_profile_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "run":
            given = sys.argv[1:] if argv is None else list(argv)
            return cmd_run(args, [sys.executable, "-m", "harness", *given])
        if args.command == "report":
            return cmd_report(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "refs":
            return cmd_refs(args)
        if args.command == "preflight":
            return cmd_preflight(args)
        if args.command == "list":
            return cmd_list()
        if args.command == "env":
            return cmd_env(args)
        if args.command == "default-suite":
            print(default_suite())
            return 0
        if args.command == "bench-compare":
            return cmd_bench_compare(args)
        if args.command == "gpu-profile":
            return run_gpu_profile(args)
        if args.command == "overhead":
            return cmd_overhead(args)
        if args.command == "fairness":
            return cmd_fairness(args)
        if args.command in ("readme", "figures"):
            return cmd_readme(args)
    except (UsageError, ProblemPluginError) as exc:  # a bad $ODEBENCH_PROBLEMS file is bad input too
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full destination, a missing file: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 2


# ---- run, report, list ------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace, command: list[str]) -> int:
    """A sweep session (harness.run.session), then the report if --report asked for it."""
    code, run_dir = run_session(args, command)
    if args.report and code != 130:
        code = max(code, cmd_report(argparse.Namespace(run_dir=run_dir, companions=[])))
    return code


def cmd_report(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    for folder in (run_dir, *args.companions):
        if not (folder / "results.csv").is_file():
            raise UsageError(f"{folder} is not a run folder (no results.csv)")
    try:
        path = write_report(run_dir, companions=tuple(args.companions) or None)
    except ValueError as exc:  # the report's SchemaError: the results cannot be reported
        print(f"error: cannot report {run_dir}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(str(path))
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    """`readme`: rewrite or check README.md's results block; `figures`: the top-level figures/."""
    try:
        if args.command == "figures":
            runs = args.run_dirs or [runs_named_in_readme()[0]]
            for run in runs:
                if not (run / "results.csv").is_file():
                    raise UsageError(f"{run} is not a run folder (no results.csv)")
            had_figures = FIGURES_DIR.exists()
            try:
                paths = write_top_figures(runs)
            except BaseException:
                if not had_figures:  # a failed command leaves nothing behind
                    shutil.rmtree(FIGURES_DIR, ignore_errors=True)
                raise
            for path in paths:
                print(path)
            return 0
        run, companions = ((args.run_dir, tuple(args.companions)) if args.run_dir
                           else runs_named_in_readme(args.readme))
        for folder in (run, *companions):
            if not (folder / "results.csv").is_file():
                raise UsageError(f"{folder} is not a run folder (no results.csv)")
        if not args.readme.is_file():
            raise UsageError(f"{args.readme} does not exist")
        current = write_readme(run, companions, args.readme, check=args.check)
    except UsageError:
        raise
    except ReadmeError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # the results cannot be read (SchemaError)
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if args.check and not current:
        print(f"error: {args.readme}'s results block differs from `python -m harness readme {run}`",
              file=sys.stderr)
        return 1
    print(f"{args.readme}: results block {'is current' if current else 'rewritten'} ({run})")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 only for a run folder whose table passes every integrity rule (harness.results.
    integrity: whole, unedited since its session closed, complete, plausible rows, the run's
    plan), holds at least one timed cell, and whose ok rows, every repeat, are within their
    accuracy bounds with no failed trajectory (harness.measure.accuracy). One line per failure."""
    path = args.run_dir / CSV_NAME
    if not path.is_file():
        raise UsageError(f"{args.run_dir} is not a run folder (no {CSV_NAME})")
    df, bad = integrity_failures(args.run_dir, partial=args.partial)
    if df is not None:
        cells = df[df["repeat"] <= 0].groupby("status").size().to_dict()
        print(f"{path}: {len(df)} rows; cells by status: " + ", ".join(f"{k} {v}" for k, v in sorted(cells.items())))
        ok_cells = df[(df["status"] == "ok") & (df["repeat"] == 0)]
        if len(ok_cells):
            print(f"{path}: max_scaled_err measured in {int(ok_cells['max_scaled_err'].notna().sum())} "
                  f"of {len(ok_cells)} ok cells")
        if not (df["status"] == "ok").any():
            bad.append("table: timings: no cell produced timings")
        bad += accuracy_violations(df)
        ok_backends = set(df.loc[df["status"] == "ok", "backend"])
        bad += [f"table: require-ok: backend {b} has no ok cell"
                for b in split_values(getattr(args, "require_ok", None)) if b not in ok_backends]
    for line in bad:
        print(f"error: {path}: {line}", file=sys.stderr)
    return 1 if bad else 0


def cmd_env(args: argparse.Namespace) -> int:
    if not args.check:
        print(json.dumps(environment.fingerprint(), indent=2))
        return 0
    required = [f"{name} ({REQUIRED[name]})" for name in missing(REQUIRED)]
    optional = [f"{name} ({OPTIONAL[name]})" for name in missing(OPTIONAL)]
    if sys.version_info < (3, 11):
        required.insert(0, f"Python >= 3.11 (this is {sys.version.split()[0]})")
    if optional:
        print(f"note: optional packages missing (their backends or steps will not run): "
              f"{', '.join(optional)}", file=sys.stderr)
    if required:
        print(f"error: required packages missing: {', '.join(required)}", file=sys.stderr)
        return 1
    usable, why = gpu_usable()
    print(f"environment ok: Python {sys.version.split()[0]}; GPU: {why}; default suite: "
          f"{'gpu-quick' if usable else 'cpu'}", file=sys.stderr)
    return 0


def gpu_usable() -> tuple[bool, str]:
    """(True, what) if nvidia-smi sees a GPU and a GPU backend can use it, else (False, why).

    Backends that do not start JAX are asked first: asking JAX makes it take GPU memory.
    """
    gpus = environment.gpu_info()["gpus"]
    if not gpus:
        return False, "none (nvidia-smi found no GPU)"
    reasons = []
    for name in ("fused", "array", "torch-handwritten", "torchdiffeq", "jax-handwritten"):
        backend, why = load_backend(name)
        if backend is not None and "gpu" in backend.devices:
            ok, why = _available(backend, "gpu")
            if ok:
                return True, f"{gpus[0]['name']} (usable by {name})"
        reasons.append(f"{name}: {why}")
    return False, f"{gpus[0]['name']} present but no GPU backend can use it ({'; '.join(reasons)})"


def default_suite() -> str:
    """The suite `make reproduce` runs: gpu-quick where a GPU is usable, else cpu."""
    return "gpu-quick" if gpu_usable()[0] else "cpu"


def cmd_refs(args: argparse.Namespace) -> int:
    """Compute every reference a suite needs into problems/refs/ (harness.refs)."""
    suite = load_suite(args.suite)
    ns = set()
    for v in split_values(args.n):
        if not v.isdigit() or int(v) < 1:
            raise UsageError(f"invalid --n {v!r}: N must be a positive integer")
        ns.add(int(v))
    if args.n and not ns:
        raise UsageError("empty --n: give at least one ensemble size")
    cells = [c for c in suite.cells if not ns or c.spec.n in ns]
    if not cells:
        raise UsageError(f"--n {','.join(map(str, sorted(ns)))} matches no cell of suite {suite.name!r} "
                         f"(its N: {', '.join(map(str, sorted({c.spec.n for c in suite.cells})))})")
    for path in write_shipped(cells):
        print(str(path))
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    kwargs = {} if args.threshold is None else {"threshold": args.threshold}
    try:
        return bench_compare.main(args.current, args.baseline, **kwargs)
    except ValueError as exc:  # BenchmarkFileError: missing, malformed or empty file
        raise UsageError(str(exc)) from None


def cmd_list() -> int:
    print("problems:")
    for name in problem_names():
        p = get_problem(name)
        print(f"  {name:<10} {'stiff' if p.stiff else 'non-stiff'}, {p.default_dtype}, tspan {getattr(p, 'tspan', 'n/a')}"
              f"{', dt ' + repr(p.dt) if p.dt else ''}, rtol {p.rtol:g}, atol {p.atol:g}")
    print("backends (available on cpu / gpu; methods: modes; variants):")
    for name in backend_names():
        backend, why = load_backend(name)
        if backend is None:
            cpu = gpu = (False, why)
        else:
            cpu, gpu = (_available(backend, d) for d in ("cpu", "gpu"))
        methods, variants = methods_of(name), variants_of(name)
        print(f"  {name}")
        for dev, (ok, reason) in (("cpu", cpu), ("gpu", gpu)):
            print(f"    {dev}: {'yes' if ok else 'no'}{' - ' + reason if reason else ''}")
        m = ", ".join(f"{k} ({'/'.join(v)})" for k, v in methods.items())
        print(f"    methods: {m}")
        print(f"    variants: {', '.join(repr(v) for v in variants)}")
    print("suites:")
    for name in suite_names():
        try:
            s = load_suite(name)
            print(f"  {name:<10} {s.device}, {len(s.cells)} cells: {s.description}")
        except UsageError as exc:
            print(f"  {name:<10} INVALID: {exc}")
    return 0


def _available(backend, device: str) -> tuple[bool, str]:
    if device not in backend.devices:
        return False, f"no {device} path"
    try:
        ok, reason = backend.available(device)
    except Exception as exc:  # noqa: BLE001 - a listing must not crash on one backend
        return False, f"available() raised {type(exc).__name__}: {exc}"
    return ok, " ".join(str(reason).split())


def cmd_fairness(args: argparse.Namespace) -> int:
    """Print the red-team table of ``harness.results.fairness``; 1 with --strict if a variant is missing."""
    try:
        text, missing = fairness_report(args.run_dir, only_missing=args.missing)
    except SchemaError as exc:
        raise UsageError(str(exc)) from None
    print(text)
    return 1 if args.strict and missing else 0


def cmd_overhead(args: argparse.Namespace) -> int:
    """What the clock adds per timed repeat (harness.measure.clock.measure_overhead), as a share of
    a 1 ms solve; exit 1 when either figure is over the budget of 1% (10 microseconds)."""
    m = measure_overhead(args.repeats, args.trials)
    solve = 1e-3
    print(f"in-region overhead per repeat: {m['in_region_s'] * 1e6:.3f} us "
          f"({m['in_region_s'] / solve:.4%} of a 1 ms solve)")
    print(f"whole-loop overhead per repeat: {m['loop_s'] * 1e6:.3f} us "
          f"({m['loop_s'] / solve:.4%} of a 1 ms solve)")
    budget = 0.01 * solve
    verdict = "within" if max(m.values()) < budget else "OVER"
    print(f"{verdict} the budget of 1% of a 1 ms solve ({budget * 1e6:.0f} us)")
    return 0 if verdict == "within" else 1
