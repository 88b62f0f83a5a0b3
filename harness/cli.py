"""Command line: ``python -m harness COMMAND``.

Commands: ``run`` (a suite, or part of it, into a run folder; ``--resume`` continues one;
``--budget-s``/``--preflight``/``--device`` for a short GPU session: harness.run.gates),
``report`` (figures and report of a run folder, by harness.report.markdown), ``check`` (exit 1 unless a
run folder holds a valid results table with timings whose ok cells meet harness.measure.accuracy),
``refs`` (the references a suite needs, into problems/refs/), ``preflight`` (quick checks
before a GPU session: harness.run.preflight), ``list`` (problems, backends and their
availability, methods, suites), ``env`` (the environment fingerprint; ``--check``: required and
optional packages, harness.packages), ``default-suite`` (gpu-quick where a GPU is usable, else
cpu) and ``bench-compare`` (a pytest-benchmark JSON against a baseline, by harness.bench_compare),
``readme`` (README.md's results block from a run; ``--check`` compares) and ``figures`` (the
reference runs' headline figures into figures/), both by harness.report.readme.

Bad input (an unknown name, N <= 0, a malformed suite, an output folder that cannot be
written) gives one line ``error: ...`` on stderr and exit code 2, before anything is written.
Progress and messages go to stderr; data goes to files (``list`` and ``env`` print to stdout,
that being their output).

Exit codes of ``run``: 0 the sweep finished; 1 it finished but no cell produced timings (a
sweep that measured nothing must fail loudly); 2 bad input; 130 interrupted (resume with
``--resume DIR``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from harness.errors import UsageError

ENV_NAME = "environment.json"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (its default prints the usage block too)."""

    def error(self, message: str):
        raise UsageError(message)


def _split(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma lists: ["a,b", "c"] -> ["a", "b", "c"]."""
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


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
    chk = sub.add_parser("check", help="exit 1 unless RUN_DIR holds a valid results table with timings")
    chk.add_argument("run_dir", type=Path, metavar="RUN_DIR")
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
    from harness.gpu_profile.command import add_parser as _add_gpu_profile  # gpu-profile command

    _add_gpu_profile(sub)
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
            from harness.run.preflight import cmd_preflight

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
            from harness.gpu_profile.command import run as run_gpu_profile

            return run_gpu_profile(args)
        if args.command in ("readme", "figures"):
            return cmd_readme(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


# ---- run -----------------------------------------------------------------------------------

def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _threads_arg(values: list[str]) -> list[int]:
    """--threads values (repeatable, comma-separated) as positive ints, in order, unique."""
    out: list[int] = []
    for v in _split(values):
        try:
            t = int(v)
        except ValueError:
            t = 0
        if t <= 0:
            raise UsageError(f"invalid --threads {v!r}: must be a positive integer")
        if t not in out:
            out.append(t)
    return out


def _validated_filters(args: argparse.Namespace) -> dict[str, list]:
    """The --problem/--backend/--method/--mode/--n values, checked against the known names."""
    from solvers.registry import all_method_names, backend_names
    from problems.registry import is_problem_name, problem_names
    from solvers.base import MODES

    filters: dict[str, list] = {}
    for opt, valid in (("problem", problem_names()), ("backend", backend_names()),
                       ("method", None), ("mode", list(MODES))):
        values = _split(getattr(args, opt))
        for v in values:
            if opt == "method" and v not in all_method_names():
                raise UsageError(f"unknown method {v!r}; valid choices: {', '.join(all_method_names())}")
            if opt == "problem" and is_problem_name(v):  # the zoo, or a family (lorenz96-<d>)
                continue
            if opt != "method" and v not in valid:
                raise UsageError(f"unknown {opt} {v!r}; valid choices: {', '.join(valid)}")
        if values:
            filters[opt] = values
    ns = []
    for v in _split(args.n):
        try:
            n = int(v)
        except ValueError:
            n = 0
        if n <= 0 or str(n) != v.lstrip("+"):
            raise UsageError(f"invalid N {v!r}: N must be a positive integer")
        ns.append(n)
    if ns:
        filters["n"] = ns
    return filters


def _select(cells, filters: dict[str, list]):
    def keep(c) -> bool:
        s = c.spec
        return ((not filters.get("problem") or s.problem in filters["problem"])
                and (not filters.get("backend") or c.backend in filters["backend"])
                and (not filters.get("method") or s.method in filters["method"])
                and (not filters.get("mode") or s.mode in filters["mode"])
                and (not filters.get("n") or s.n in filters["n"]))
    return [c for c in cells if keep(c)]


def _write_json(path: Path, data: dict) -> None:
    """Write JSON to ``path`` through a ``.partial`` file, so no half-written file remains."""
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _lock_run_folder(run_dir: Path) -> int:
    """Lock the run folder itself (no lock file is left behind) so two processes never append
    to one results.csv (a --resume while the first run still runs); returns the descriptor
    that holds the lock (closing it releases the lock)."""
    import fcntl

    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(f"run folder {run_dir} is in use by another harness process") from None
    return fd


def _load_resume(run_dir: Path) -> dict[str, Any]:
    env_path = run_dir / ENV_NAME
    if not env_path.is_file():
        raise UsageError(f"cannot resume {run_dir}: it has no {ENV_NAME} (not a run folder)")
    try:
        return json.loads(env_path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot resume {run_dir}: {ENV_NAME} is unreadable ({exc})") from None


@dataclasses.dataclass
class RunPlan:
    """A validated ``run``: everything decided before anything is written.

    Attributes:
        run_dir: the run folder (created, empty or being resumed).
        run_id: the run's id (kept from the first session when resuming).
        saved: environment.json of the run being resumed ({} for a new run).
        request: suite, filters and overrides, as stored for a later --resume.
        suite: the loaded suite; cells: the cells to run, filters and overrides applied.
        how: "isolate", "shared" or "in-process".
        fingerprint: this machine's environment; started: when the command started.
        command: the command line, as recorded.
    """

    run_dir: Path
    run_id: str
    saved: dict[str, Any]
    request: dict[str, Any]
    suite: Any
    cells: list
    how: str
    fingerprint: dict[str, Any]
    started: datetime
    command: list[str]


def cmd_run(args: argparse.Namespace, command: list[str]) -> int:
    plan = _plan_run(args, command)
    if args.preflight is not None and not args.preflight.is_file():
        raise UsageError(f"pre-flight file {args.preflight} does not exist")
    lock = _lock_run_folder(plan.run_dir)
    previous = _terminate_as_interrupt()
    try:
        return _run_plan(plan, args)
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(lock)  # releases the lock


def _terminate_as_interrupt():
    """SIGTERM (what `timeout` and batch systems send) closes the run like Ctrl-C: the child is
    killed, finished cells stay, environment.json records the interruption. Returns the old handler."""
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, on_term)


def _sweep_order_and_gates(plan: RunPlan, args: argparse.Namespace) -> tuple[list, list]:
    """The cells in run order and the harness.run.gates gates for this session."""
    from harness.run.sweep import order_cells
    from harness.run.gates import Budget, BrokenBackend, LaunchesOncePerSeries, Preflight, headline_first

    context = {"run_id": plan.run_id, "suite": plan.suite.name}
    budget_s = getattr(args, "budget_s", None)
    cells = headline_first(plan.cells) if budget_s else order_cells(plan.cells, plan.how)
    gates: list = []
    if getattr(args, "preflight", None) is not None:
        gates.append(Preflight.from_file(args.preflight, context))
    gates.append(BrokenBackend(context))
    if budget_s:
        gates.append(Budget(cells, budget_s, context))
    gates.append(LaunchesOncePerSeries())  # last: only cells that will run count
    return cells, gates


def _plan_run(args: argparse.Namespace, command: list[str]) -> RunPlan:
    """Validate everything ``run`` was given; the only thing written is the new run folder."""
    from harness.measure.environment import device_tag, fingerprint
    from harness.run.suites import load_suite

    saved: dict[str, Any] = {}
    if args.resume is not None:
        saved = _load_resume(args.resume)
    request = dict(saved.get("request", {}))
    given = {k: v for k, v in (("suite", args.suite), ("repeats", args.repeats), ("device", args.device),
                                 ("warmups", args.warmups), ("cell_timeout_s", args.cell_timeout))
             if v is not None}
    filters = _validated_filters(args)
    if args.threads:
        given["threads"] = _threads_arg(args.threads)
    for opt in ("cluster", "shards"):  # a resumed run keeps them unless given again
        if getattr(args, opt, None) is not None:
            from harness.run.cluster import parse_address, require_dask

            require_dask(f"--{opt}")
            if opt == "cluster":
                parse_address(args.cluster)
            given[opt] = getattr(args, opt)
    request.update(given)
    if filters or "suite" in given:
        request["filters"] = filters
    if not request.get("suite"):
        raise UsageError("run needs --suite NAME (or --resume DIR of an earlier run); "
                         "see `python -m harness list` for the suites")
    suite = load_suite(request["suite"])
    overrides = {k: request[k] for k in ("repeats", "warmups") if request.get(k) is not None}
    if request.get("cell_timeout_s") is not None:
        overrides["timeout_s"] = request["cell_timeout_s"]
    cells = [dataclasses.replace(c, **overrides) for c in suite.cells]
    if request.get("device"):
        cells = [dataclasses.replace(c, spec=dataclasses.replace(c.spec, device=request["device"]))
                 for c in cells]
    if request.get("threads"):
        cells = list(dict((x.key, x) for x in (dataclasses.replace(c, spec=c.spec.with_(threads=t))
                                                 for c in cells for t in request["threads"])).values())
    if request.get("shards") is not None:
        cells = list(dict((x.key, x) for x in (dataclasses.replace(c, shards=request["shards"] or None)
                                                 for c in cells)).values())
    if any(c.shards for c in cells) or request.get("cluster"):
        from harness.run.cluster import require_dask

        require_dask("--cluster" if request.get("cluster") else "a sharded cell (shards)")
    cells = _select(cells, request.get("filters", {}))
    if not cells:
        raise UsageError(f"no cell of suite {suite.name!r} matches the filters "
                         f"{json.dumps(request.get('filters', {}))}")
    on_gpu = any(c.spec.device == "gpu" for c in cells)
    if args.in_process:
        how = "in-process"
    elif args.isolate is not None:
        how = "isolate" if args.isolate else "shared"
    else:
        how = "isolate"  # on a CPU too: one library's pools and caches never time another's

    started = _utc_now()
    fp = fingerprint(sorted({c.spec.threads for c in cells if c.spec.threads is not None}))
    if args.resume is not None:
        run_dir = args.resume
        run_id = saved.get("run_id") or run_dir.name
        if not (run_dir / "results.csv").exists():
            raise UsageError(f"cannot resume {run_dir}: it has no results.csv")
    else:
        run_id = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{suite.name}-{device_tag(fp, 'gpu' if on_gpu else 'cpu')}"
        run_dir = args.out if args.out is not None else Path("results") / run_id
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UsageError(f"output folder {run_dir} exists and is not empty; "
                             f"use --resume {run_dir} to continue that run")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {run_dir}: {exc.strerror or exc}") from None
    if not os.access(run_dir, os.W_OK):
        raise UsageError(f"output folder {run_dir} is not writable")
    return RunPlan(run_dir=run_dir, run_id=run_id, saved=saved, request=request, suite=suite,
                   cells=cells, how=how, fingerprint=fp, started=started, command=command)


def _run_plan(plan: RunPlan, args: argparse.Namespace) -> int:
    """The part of ``run`` that writes: the run folder is validated and locked."""
    # imported only now: bad input is refused without loading pandas and the runner
    from harness.results.store import CSV_NAME, read_rows, write_parquet
    from harness.run.sweep import run_sweep
    from harness.results.schema import SCHEMA_VERSION

    run_dir, suite, fp = plan.run_dir, plan.suite, plan.fingerprint
    session = {"started_at": plan.started.isoformat(timespec="seconds"), "command": plan.command,
               "how": plan.how, "hostname": fp["hostname"], "git": fp["git"], "cells_selected": len(plan.cells)}
    if plan.saved:
        env = plan.saved
        _warn_if_changed(plan.saved, fp, suite)
    else:
        env = {"schema_version": SCHEMA_VERSION, "run_id": plan.run_id, **fp,
               "suite": {"name": suite.name, "path": str(suite.path), "sha256": suite.sha256,
                         "description": suite.description, "device": suite.device},
               "command": plan.command, "started_at": session["started_at"], "finished_at": None,
               "sessions": []}
    env["request"] = dict(plan.request, how=plan.how)
    env.setdefault("sessions", []).append(session)
    try:
        _write_json(run_dir / ENV_NAME, env)
    except OSError as exc:
        raise UsageError(f"output folder {run_dir} is not writable: {exc.strerror or exc}") from None

    # ---- run ----
    print(f"run {plan.run_id}: {len(plan.cells)} cells of suite {suite.name!r} ({plan.how}) -> {run_dir}",
          file=sys.stderr)
    interrupted = False
    try:
        cells, gates = _sweep_order_and_gates(plan, args)
        with _cluster_for(plan, session) as cluster:
            summary = run_sweep(cells, run_dir, run_id=plan.run_id, suite=suite.name, how=plan.how,
                                progress=not args.quiet, gates=gates, keep_order=True, cluster=cluster)
    except KeyboardInterrupt:
        interrupted = True
        summary = None
    finished = _utc_now().isoformat(timespec="seconds")
    session.update(finished_at=finished, interrupted=interrupted)
    if summary is not None:
        session.update(cells_run=summary.run, cells_already_done=summary.skipped,
                       statuses=summary.statuses)
    env["finished_at"] = finished
    _write_json(run_dir / ENV_NAME, env)
    if interrupted:
        print(f"interrupted; finished cells are in {run_dir / CSV_NAME}; continue with: "
              f"python -m harness run --resume {run_dir}", file=sys.stderr)
        return 130

    print(f"done: {summary.line()}", file=sys.stderr)
    rows = read_rows(run_dir / CSV_NAME)
    _check_schema(run_dir)
    if write_parquet(run_dir) is None:
        print("note: pyarrow not importable; wrote results.csv only", file=sys.stderr)
    code = 0
    if not any(r["status"] == "ok" for r in rows):
        print(f"error: no cell of {run_dir} produced timings (see the reasons in {CSV_NAME})", file=sys.stderr)
        code = 1
    print(str(run_dir))
    if args.report:
        code = max(code, cmd_report(argparse.Namespace(run_dir=run_dir)))
    return code


def _cluster_for(plan: RunPlan, session: dict):
    """The Dask cluster of this run (harness.run.cluster), started, or a null context: --cluster,
    or 'local' when a cell is sharded. Its description goes into the session's record."""
    from contextlib import nullcontext

    address = plan.request.get("cluster") or ("local" if any(c.shards for c in plan.cells) else None)
    if address is None:
        return nullcontext(None)
    from harness.run.cluster import Cluster

    cluster = Cluster.for_cells(address, plan.cells)
    cluster.start()
    session["cluster"] = cluster.description
    print(f"cluster: {json.dumps(cluster.description)}", file=sys.stderr)
    return cluster


def _check_schema(run_dir: Path) -> None:
    from harness.results.store import read_results
    from harness.results.schema import SchemaError, validate

    try:
        validate(read_results(run_dir))
    except SchemaError as exc:
        print(f"warning: results do not validate against the schema: {exc}", file=sys.stderr)


def _warn_if_changed(saved: dict, fp: dict, suite) -> None:
    if saved.get("hostname") != fp["hostname"]:
        print(f"warning: resuming on host {fp['hostname']!r}, the run started on {saved.get('hostname')!r}", file=sys.stderr)
    old_gpus = [g.get("name") for g in saved.get("gpu", {}).get("gpus", [])]
    new_gpus = [g.get("name") for g in fp["gpu"]["gpus"]]
    if old_gpus != new_gpus:
        print(f"warning: GPUs differ from the run's start: {old_gpus} -> {new_gpus}", file=sys.stderr)
    if saved.get("suite", {}).get("sha256") != suite.sha256:
        print(f"warning: suite file {suite.path.name} changed since the run started", file=sys.stderr)


# ---- report, list ----------------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    if not (run_dir / "results.csv").is_file():
        raise UsageError(f"{run_dir} is not a run folder (no results.csv)")
    try:
        from harness.report.markdown import write_report
    except ImportError as exc:
        raise UsageError(f"the report builder harness.report.markdown is not available here ({exc})") from None
    try:
        path = write_report(run_dir)
    except ValueError as exc:  # the report's SchemaError: the results cannot be reported
        print(f"error: cannot report {run_dir}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(str(path))
    return 0


def cmd_readme(args: argparse.Namespace) -> int:
    """`readme`: rewrite or check README.md's results block; `figures`: the top-level figures/."""
    from harness.report.readme import ReadmeError, run_named_in_readme, write_readme, write_top_figures

    try:
        if args.command == "figures":
            runs = args.run_dirs or [run_named_in_readme()]
            for run in runs:
                if not (run / "results.csv").is_file():
                    raise UsageError(f"{run} is not a run folder (no results.csv)")
            for path in write_top_figures(runs):
                print(path)
            return 0
        run = args.run_dir or run_named_in_readme(args.readme)
        if not (run / "results.csv").is_file():
            raise UsageError(f"{run} is not a run folder (no results.csv)")
        if not args.readme.is_file():
            raise UsageError(f"{args.readme} does not exist")
        current = write_readme(run, args.readme, check=args.check)
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
    """Exit 0 only for a run folder whose results validate, hold at least one timed cell, and
    whose ok cells are within their accuracy bounds with no failed trajectory (harness.measure.accuracy)."""
    from harness.results.store import CSV_NAME, read_results
    from harness.results.schema import SchemaError, validate

    path = args.run_dir / CSV_NAME
    if not path.is_file():
        raise UsageError(f"{args.run_dir} is not a run folder (no {CSV_NAME})")
    try:
        df = validate(read_results(path))
    except (SchemaError, ValueError) as exc:
        print(f"error: {path}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    cells = df[df["repeat"] <= 0].groupby("status").size().to_dict()
    print(f"{path}: {len(df)} rows; cells by status: " + ", ".join(f"{k} {v}" for k, v in sorted(cells.items())))
    ok_cells = df[(df["status"] == "ok") & (df["repeat"] == 0)]
    if len(ok_cells):
        print(f"{path}: max_scaled_err measured in {int(ok_cells['max_scaled_err'].notna().sum())} "
              f"of {len(ok_cells)} ok cells")
    if not (df["status"] == "ok").any():
        print(f"error: {path}: no cell produced timings", file=sys.stderr)
        return 1
    from harness.measure.accuracy import accuracy_violations

    bad = accuracy_violations(df)
    ok_backends = set(df.loc[df["status"] == "ok", "backend"])
    bad += [f"backend {b} has no ok cell" for b in _split(getattr(args, "require_ok", None))
            if b not in ok_backends]
    for line in bad:
        print(f"error: {path}: {line}", file=sys.stderr)
    return 1 if bad else 0


def cmd_env(args: argparse.Namespace) -> int:
    from harness.packages import OPTIONAL, REQUIRED, missing

    if not args.check:
        from harness.measure.environment import fingerprint

        print(json.dumps(fingerprint(), indent=2))
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
    from solvers.registry import load_backend
    from harness.measure.environment import gpu_info

    gpus = gpu_info()["gpus"]
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
    from harness.refs import write_shipped
    from harness.run.suites import load_suite

    cells = load_suite(args.suite).cells
    ns = {int(v) for v in _split(args.n) if v.isdigit()}
    if args.n and not ns:
        raise UsageError(f"invalid --n {args.n!r}: positive integers")
    cells = [c for c in cells if not ns or c.spec.n in ns]
    for path in write_shipped(cells):
        print(str(path))
    return 0


def cmd_bench_compare(args: argparse.Namespace) -> int:
    from harness import bench_compare

    kwargs = {} if args.threshold is None else {"threshold": args.threshold}
    try:
        return bench_compare.main(args.current, args.baseline, **kwargs)
    except ValueError as exc:  # BenchmarkFileError: missing, malformed or empty file
        raise UsageError(str(exc)) from None


def cmd_list() -> int:
    from solvers.registry import backend_names, load_backend, methods_of, variants_of
    from harness.run.suites import load_suite, suite_names
    from problems.registry import get_problem, problem_names

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
