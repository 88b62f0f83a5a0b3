"""One ``python -m harness run`` session: the run folder, its lock, resume, the environment
record and its check, the order and gates of the cells, and where they run (here, or on a Dask
cluster: harness.run.cluster).

``run_session(args, command)`` validates everything before it writes anything but the new run
folder (bad input: UsageError), locks the folder so that two processes never append to one
results.csv, runs the sweep (harness.run.sweep) and records the session in ``environment.json``.
SIGTERM (what `timeout` and batch systems send) ends the session as Ctrl-C does: finished cells
stay, and ``--resume`` continues.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.measure.environment import device_tag, fingerprint
from harness.measure.load import busy_warning
from harness.measure.threads import cpu_count
from harness.results.integrity import ENV_NAME
from harness.results.schema import COLUMNS, SCHEMA_VERSION, SchemaError, validate
from harness.results.store import CSV_NAME, read_results, read_rows, table_sha256, write_parquet
from harness.run.cluster import Cluster, DaskExecutor, check_reachable, parse_address, require_dask
from harness.run.executors import order_cells
from harness.run.gates import Budget, BrokenBackend, LaunchesOncePerSeries, Preflight, headline_first
from harness.run.default_suite import default_suite_name
from harness.run.suites import load_suite
from harness.run.sweep import run_sweep
from problems.registry import is_problem_name, problem_names
from solvers.base import MODES
from solvers.registry import all_method_names, backend_names


def split_values(values: list[str] | None) -> list[str]:
    """Repeatable options that also take comma lists: ["a,b", "c"] -> ["a", "b", "c"]."""
    out: list[str] = []
    for v in values or []:
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _threads_arg(values: list[str]) -> list[int]:
    """--threads values (repeatable, comma-separated) as positive ints, in order, unique."""
    out: list[int] = []
    for v in split_values(values):
        try:
            t = int(v)
        except ValueError:
            t = 0
        if t <= 0:
            raise UsageError(f"invalid --threads {v!r}: must be a positive integer")
        if t > cpu_count():  # more would oversubscribe the cores and time the scheduler
            raise UsageError(f"invalid --threads {t}: this machine has {cpu_count()} usable cores")
        if t not in out:
            out.append(t)
    return out


def _validated_filters(args: argparse.Namespace) -> dict[str, list]:
    """The --problem/--backend/--method/--mode/--n values, checked against the known names."""
    filters: dict[str, list] = {}
    for opt, valid in (("problem", problem_names()), ("backend", backend_names()),
                       ("method", None), ("mode", list(MODES))):
        values = split_values(getattr(args, opt))
        if getattr(args, opt) and not values:  # --problem '' must not mean "every problem"
            raise UsageError(f"empty --{opt}: give at least one name")
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
    if args.n and not split_values(args.n):
        raise UsageError("empty --n: give at least one ensemble size")
    for v in split_values(args.n):
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
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # the old file stays whole
        raise


def _lock_run_folder(run_dir: Path) -> int:
    """Lock the run folder itself (no lock file is left behind) so two processes never append
    to one results.csv (a --resume while the first run still runs); returns the descriptor
    that holds the lock (closing it releases the lock)."""
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
        created: the topmost folder this command created, None when it created none.
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
    created: Path | None = None  # the top folder this command created (removed if it fails)


def run_session(args: argparse.Namespace, command: list[str]) -> tuple[int, Path]:
    """Run what ``python -m harness run`` was given (``args``; ``command``: the command line, as
    recorded) and return (exit code, run folder): 0 the sweep finished; 1 it finished but no
    cell produced timings, or writing failed (a full disk; the session is closed as interrupted);
    130 interrupted. Bad input raises UsageError before anything is written; a failure before the
    first row removes the folder this command created."""
    plan = _plan_run(args, command)
    lock = _lock_run_folder(plan.run_dir)
    previous = _terminate_as_interrupt()
    try:
        return _run_plan(plan, args)
    except BaseException:
        _remove_if_unused(plan)  # e.g. the cluster did not start: leave nothing behind
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(lock)  # releases the lock


def _remove_if_unused(plan: RunPlan) -> None:
    """Remove the folder this command created when it failed before writing any row."""
    if plan.created is None:
        return
    csv_path = plan.run_dir / CSV_NAME
    if csv_path.is_file() and read_rows(csv_path):
        return
    shutil.rmtree(plan.created, ignore_errors=True)


def _terminate_as_interrupt():
    """SIGTERM (what `timeout` and batch systems send) closes the run like Ctrl-C: the child is
    killed, finished cells stay, environment.json records the interruption. Returns the old handler."""
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, on_term)


def _sweep_order_and_gates(plan: RunPlan, args: argparse.Namespace) -> tuple[list, list]:
    """The cells in run order and the harness.run.gates gates for this session."""
    context = {"run_id": plan.run_id, "suite": plan.suite.name}
    budget_s = getattr(args, "budget_s", None)
    cells = headline_first(plan.cells) if budget_s else order_cells(plan.cells, plan.how)
    gates: list = []
    if getattr(args, "preflight", None) is not None:
        gates.append(Preflight.from_file(args.preflight, context))
    gates.append(BrokenBackend(context))
    if budget_s:
        gates.append(Budget(cells, budget_s, context))
    gates.append(LaunchesOncePerSeries(getattr(plan.suite, "launch_counts", 1)))  # last: only cells that will run count
    return cells, gates


def _plan_run(args: argparse.Namespace, command: list[str]) -> RunPlan:
    """Validate everything ``run`` was given; the only thing written is the new run folder."""
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
            require_dask(f"--{opt}")
            if opt == "cluster":
                parse_address(args.cluster)
            given[opt] = getattr(args, opt)
    if args.preflight is not None:
        Preflight.from_file(args.preflight, {})  # UsageError unless it is a preflight.json
    request.update(given)
    if filters or "suite" in given:
        request["filters"] = filters
    if not request.get("suite") and filters.get("problem"):  # a problem without a suite: its default cells
        request["suite"] = default_suite_name(filters["problem"])
    if not request.get("suite"):
        raise UsageError("run needs --suite NAME or --problem NAME (or --resume DIR of an earlier run); "
                         "see `python -m harness list` for the suites")
    suite = load_suite(request["suite"])
    if saved:
        _check_resumable(args.resume, saved, suite)
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
        require_dask("--cluster" if request.get("cluster") else "a sharded cell (shards)")
    cells = _select(cells, request.get("filters", {}))
    if not cells:
        raise UsageError(f"no cell of suite {suite.name!r} matches the filters "
                         f"{json.dumps(request.get('filters', {}))}")
    _check_shards(cells, request, "shards" in given)
    if request.get("cluster") and parse_address(request["cluster"])[0] != "local":
        check_reachable(request["cluster"])  # seconds, not the client's 30 s, and before any folder
    on_gpu = any(c.spec.device == "gpu" for c in cells)
    if args.in_process:
        how = "in-process"
    elif args.isolate is not None:
        how = "isolate" if args.isolate else "shared"
    else:
        how = "isolate"  # on a CPU too: one library's pools and caches never time another's

    started = _utc_now()
    fp = fingerprint(sorted({c.spec.threads for c in cells if c.spec.threads is not None}))
    if suite.kernel_costs and args.resume is None:
        fp["fused_kernel_costs"] = _kernel_costs()
    if args.resume is not None:
        run_dir = args.resume
        run_id = saved.get("run_id") or run_dir.name
    else:
        run_id = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{suite.name}-{device_tag(fp, 'gpu' if on_gpu else 'cpu')}"
        run_dir = args.out if args.out is not None else Path("results") / run_id
        if run_dir.exists() and not run_dir.is_dir():
            raise UsageError(f"output folder {run_dir} is a file, not a folder")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UsageError(f"output folder {run_dir} exists and is not empty; "
                             f"use --resume {run_dir} to continue that run")
    created = None
    if not run_dir.exists():
        created = next(p for p in [run_dir, *run_dir.parents] if p.parent.exists())
        try:
            run_dir.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(f"cannot create output folder {run_dir}: {exc.strerror or exc}") from None
    if not os.access(run_dir, os.W_OK):
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise UsageError(f"output folder {run_dir} is not writable")
    return RunPlan(run_dir=run_dir, run_id=run_id, saved=saved, request=request, suite=suite,
                   cells=cells, how=how, fingerprint=fp, started=started, command=command, created=created)


def _kernel_costs() -> dict[str, Any]:
    """``harness.measure.fused_costs.kernel_costs()`` for the fingerprint, in a process of its
    own (Numba, its threads and the kernels stay out of this one) and before the sweep, so the
    machine is as quiet as the run; a failure is recorded as its reason, never fails the run."""
    print("measuring the fused CPU kernels' step costs (python -m solvers.fused.bench) ...", file=sys.stderr)
    try:
        out = subprocess.run([sys.executable, "-m", "harness.measure.fused_costs"], capture_output=True,
                             text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
        if out.returncode:
            tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"python -m harness.measure.fused_costs exited {out.returncode}: {tail}"}
        return json.loads(out.stdout)
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _check_resumable(run_dir: Path, saved: dict[str, Any], suite) -> None:
    """UsageError unless ``run_dir`` is a run of ``suite`` written with this schema: appending
    another suite's cells, or rows of another schema, would corrupt the table."""
    was = (saved.get("suite") or {}).get("name")
    if was and was != suite.name:
        raise UsageError(f"cannot resume {run_dir}: it is a run of suite {was!r}, not {suite.name!r}")
    if saved.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise UsageError(f"cannot resume {run_dir}: it was written with schema version "
                         f"{saved.get('schema_version')!r}, this harness writes {SCHEMA_VERSION}")
    path = run_dir / CSV_NAME
    if not path.is_file():
        raise UsageError(f"cannot resume {run_dir}: it has no {CSV_NAME}")
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"cannot resume {run_dir}: {CSV_NAME} is unreadable ({exc})") from None
    if header != list(COLUMNS):
        raise UsageError(f"cannot resume {run_dir}: {CSV_NAME} has other columns than this harness "
                         f"writes (another schema, or not a results table); start a new run")


def _check_shards(cells, request: dict[str, Any], given: bool) -> None:
    """--shards K against the cells' N and, for a cluster started here, the usable cores:
    checked before any cluster starts (K workers on fewer cores would time the scheduler)."""
    k = request.get("shards")
    if not k:
        return
    small = min(c.spec.n for c in cells)
    if k > small:
        raise UsageError(f"invalid --shards {k}: more shards than trajectories in a selected cell "
                         f"(N={small}); choose K <= {small} or select larger N with --n")
    local = parse_address(request.get("cluster") or "local")[0] == "local"
    if given and local and k > cpu_count():
        raise UsageError(f"invalid --shards {k}: a local cluster has {cpu_count()} usable cores "
                         f"(one worker each); join a larger cluster with --cluster ADDRESS")


def _run_plan(plan: RunPlan, args: argparse.Namespace) -> tuple[int, Path]:
    """The part of ``run`` that writes: the run folder is validated and locked."""
    run_dir, suite, fp = plan.run_dir, plan.suite, plan.fingerprint
    session = {"started_at": plan.started.isoformat(timespec="seconds"), "command": plan.command,
               "how": plan.how, "hostname": fp["hostname"], "git": fp["git"], "cells_selected": len(plan.cells),
               # the cells this session selected, by key: `harness check` compares the table with them
               "cells_planned": [list(c.key) for c in plan.cells]}
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
    warning = busy_warning()
    if warning:
        print(warning, file=sys.stderr)
    session["busy_at_start"] = warning is not None
    interrupted, failure = False, None
    try:
        cells, gates = _sweep_order_and_gates(plan, args)
        with _cluster_for(plan, session) as cluster:
            how = plan.how if cluster is None else DaskExecutor(cluster, run_dir)
            summary = run_sweep(cells, run_dir, run_id=plan.run_id, suite=suite.name, how=how,
                                progress=not args.quiet, gates=gates, keep_order=True)
    except KeyboardInterrupt:
        interrupted, summary = True, None
    except OSError as exc:  # a full disk, a folder gone: the rows written are whole (ResultsWriter)
        interrupted, summary = True, None
        failure = f"{exc.filename or run_dir / CSV_NAME}: {exc.strerror or exc}"
        session["error"] = failure
    unrecorded = _close_session(run_dir, env, session, summary, interrupted)
    if failure is not None:
        print(f"error: the run stopped writing {failure}; its finished cells are kept"
              f"{'; ' + unrecorded if unrecorded else ''}: free the space and continue with "
              f"python -m harness run --resume {run_dir}", file=sys.stderr)
        return 1, run_dir
    if unrecorded:
        print(f"warning: {unrecorded}", file=sys.stderr)
    if interrupted:
        print(f"interrupted; finished cells are in {run_dir / CSV_NAME}; continue with: "
              f"python -m harness run --resume {run_dir}", file=sys.stderr)
        return 130, run_dir

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
    return code, run_dir


def _close_session(run_dir: Path, env: dict, session: dict, summary, interrupted: bool) -> str:
    """Record the session's end in environment.json, with the table's SHA-256 (``harness check``
    reports a table edited after this). On a full disk the old record stays whole: the session
    then reads as never closed, which `check` reports and --resume continues; returns "" or why
    the record could not be written."""
    finished = _utc_now().isoformat(timespec="seconds")
    session.update(finished_at=finished, interrupted=interrupted)
    if summary is not None:
        session.update(cells_run=summary.run, cells_already_done=summary.skipped,
                       statuses=summary.statuses)
    env["finished_at"] = finished
    if (run_dir / CSV_NAME).is_file():
        env["results_sha256"] = table_sha256(run_dir / CSV_NAME)
    try:
        _write_json(run_dir / ENV_NAME, env)
    except OSError as exc:
        return f"{ENV_NAME} keeps the session open ({exc.strerror or exc})"
    return ""


def _cluster_for(plan: RunPlan, session: dict):
    """The Dask cluster of this run (harness.run.cluster), started, or a null context: --cluster,
    or 'local' when a cell is sharded. Its description goes into the session's record."""
    address = plan.request.get("cluster") or ("local" if any(c.shards for c in plan.cells) else None)
    if address is None:
        return nullcontext(None)
    cluster = Cluster.for_cells(address, plan.cells)
    cluster.start()
    session["cluster"] = cluster.description
    print(f"cluster: {json.dumps(cluster.description)}", file=sys.stderr)
    return cluster


def _check_schema(run_dir: Path) -> None:
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


