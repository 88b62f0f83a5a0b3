"""One cell's lifecycle, from backend lookup to results rows.

``execute_cell`` runs in whatever process the runner chose (a worker, or the caller's own) and
never raises for a cell's own failure: every outcome becomes rows.

* backend not importable or ``available(device)`` false -> one "unavailable" row;
* ``check(spec)`` gives a reason, or ``prepare`` raises UnsupportedError -> one "unsupported" row;
* an exception -> one "error" row (reason: exception type and message, one line), or "oom" when
  it is a MemoryError or its message says the device ran out of memory;
* otherwise the clock's samples -> one "ok" row per timed repeat, each carrying the cell's
  untimed checks: accuracy against the float64 reference, steps and RHS evaluations, failed
  trajectories and launches. A cell in which some trajectories failed stays "ok" with
  ``failed_trajectories`` > 0 and the count in ``reason``; only when every trajectory failed is
  it "failed" (one row, repeat -1, still carrying what was measured).

KeyboardInterrupt (and other BaseExceptions) are not caught: an interrupted cell leaves no row,
so a resumed sweep runs it again.
"""
from __future__ import annotations

import json
import math
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from harness.measure import load
from harness.measure.clock import make_device_timer, time_solve
from harness.measure.launches import count_launches
from harness.measure.threads import apply_to_libraries
from harness.measure.threads import resolve as resolve_threads
from harness.results.schema import SCHEMA_VERSION
from harness.results.store import cell_key
from problems.kinds import reference_for
from problems.reference import max_relative_error, max_scaled_error
from solvers.base import SolveResult, SolveSpec, Status, UnsupportedError
from solvers.registry import load_backend, one_line

#: The longest reason stored in a row (exception messages can be pages long).
MAX_REASON = 400

#: (backend, device) -> (ok, reason); a worker asks each backend once per device.
_availability: dict[tuple[str, str], tuple[bool, str]] = {}

OOM_MARKERS = ("out of memory", "resource_exhausted", "outofmemory", "cuda_error_out_of_memory")


@dataclass(frozen=True)
class Cell:
    """One point of a sweep: a backend, a fully specified solve, and how to time it.

    Attributes:
        backend: registry name of the backend.
        spec: the solve (problem, method, mode, dtype, n, device, steps, tolerances, ...).
        repeats: number of timed repeats.
        warmups: untimed runs between the first call and the repeats.
        timeout_s: wall-clock limit for the whole cell (prepare, first call, repeats, checks).
        min_repeats, repeat_budget_s: the repeats' time box (see harness.measure.clock.time_solve);
            None: all ``repeats`` are made.
        count_launches: count launches in this cell (the runner counts once per series:
            harness.run.gates.LaunchesOncePerSeries).
        shards: None: the ensemble is solved whole in one process; K: split into K contiguous
            shards, each solved on a Dask worker, final states gathered (harness.run.shards).
    """

    backend: str
    spec: SolveSpec
    repeats: int
    warmups: int
    timeout_s: float
    min_repeats: int | None = None
    repeat_budget_s: float | None = None
    count_launches: bool = True
    shards: int | None = None

    @property
    def key(self) -> tuple:
        """The cell's identity: the schema's key columns, canonicalised (see results.store.cell_key)."""
        return cell_key(self.key_fields())

    def key_fields(self) -> dict[str, Any]:
        """The schema's key columns for this cell, with the spec's defaults resolved."""
        d = self.spec.as_dict()
        return {"problem": d["problem"], "backend": self.backend, "variant": d["variant"],
                "method": d["method"], "mode": d["mode"], "dtype": d["dtype"], "n": d["n"],
                "device": d["device"], "dt": d["dt"], "rtol": d["rtol"], "atol": d["atol"],
                "threads": resolve_threads(d["threads"]), "shards": self.shards}

    @property
    def label(self) -> str:
        """Short human-readable name for progress lines."""
        s = self.spec
        parts = [s.problem, self.backend + (f"[{s.variant}]" if s.variant else ""), s.method,
                 s.mode, s.dtype, s.device]
        if s.mode == "adaptive":
            parts.append("tol=%g" % s.tol[0])
        if s.threads is not None:
            parts.append(f"threads={s.threads}")
        if self.shards is not None:
            parts.append(f"shards={self.shards}")
        return " ".join(parts) + f" N={s.n}"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(status, one-line reason) for an exception raised while running a cell."""
    reason = one_line(f"{type(exc).__name__}: {exc}")[:MAX_REASON]
    if isinstance(exc, UnsupportedError):
        return "unsupported", one_line(str(exc))[:MAX_REASON] or reason
    text = reason.lower()
    # KilledWorker: Dask gave a task up after its workers died (killed, most often by the OOM
    # killer); like any out-of-memory failure it stops the larger N of its series
    if isinstance(exc, MemoryError) or type(exc).__name__ == "KilledWorker" or any(m in text for m in OOM_MARKERS):
        return "oom", reason
    return "error", reason


def base_row(cell: Cell, context: dict[str, Any], started_at: str) -> dict[str, Any]:
    """The columns every row of ``cell`` shares, before anything is measured."""
    row: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run_id": context.get("run_id", ""),
                           "suite": context.get("suite", ""), "started_at": started_at}
    row.update(cell.key_fields())
    row.update({"cpu_util": math.nan, "step_control": "", "status": "", "reason": "", "repeat": -1,
                "time_s": math.nan, "device_time_s": math.nan, "compile_s": math.nan,
                "first_call_s": math.nan, "launches": math.nan, "launch_counter": "",
                "steps_mean": math.nan, "steps_max": math.nan, "rejected_mean": math.nan,
                "rhs_evals_mean": math.nan, "rhs_evals_max": math.nan, "max_rel_err": math.nan,
                "max_scaled_err": math.nan, "failed_trajectories": math.nan,
                "load_before": math.nan, "load_after": math.nan, "others_runnable": math.nan,
                "steal": math.nan, "contended": None})
    row["settings"] = settings_json(cell, None)
    return row


def settings_json(cell: Cell, backend_settings: dict | None, notes: dict | None = None,
                  device_timer: str | None = None, timing: dict | None = None) -> str:
    """JSON of every setting: the resolved spec, the backend's own settings (they win on a
    clash: they are what it used), the harness's timing settings and the backend's notes."""
    d: dict[str, Any] = dict(cell.spec.as_dict())
    d.update(backend_settings or {})
    d["harness"] = {"repeats": cell.repeats, "warmups": cell.warmups, "cell_timeout_s": cell.timeout_s,
                    "min_repeats": cell.min_repeats, "repeat_budget_s": cell.repeat_budget_s,
                    "timer": "time.perf_counter around run()+sync()"}
    d["harness"].update(timing or {})
    if device_timer is not None:
        d["harness"]["device_timer"] = device_timer
    if notes:
        d["notes"] = notes
    return json.dumps(d, sort_keys=True, default=str)


def failure_row(cell: Cell, context: dict[str, Any], started_at: str, status: str, reason: str,
                settings: str | None = None) -> dict[str, Any]:
    """The single row (repeat -1) of a cell that has no timings."""
    row = base_row(cell, context, started_at)
    row["status"], row["reason"] = status, one_line(reason)[:MAX_REASON] or status
    if settings is not None:
        row["settings"] = settings
    return row


def _stat(values: np.ndarray | None, how: str) -> float:
    if values is None or len(values) == 0:
        return math.nan
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean() if how == "mean" else v.max())


def measured_columns(result: SolveResult, max_err: float, scaled_err: float, failed: int) -> dict[str, float]:
    """The untimed checks of a solve as row columns: steps, RHS evaluations, accuracy, failures."""
    return {"steps_mean": _stat(result.accepted, "mean"), "steps_max": _stat(result.accepted, "max"),
            "rejected_mean": _stat(result.rejected, "mean"),
            "rhs_evals_mean": _stat(result.rhs_evals, "mean"), "rhs_evals_max": _stat(result.rhs_evals, "max"),
            "max_rel_err": max_err, "max_scaled_err": scaled_err, "failed_trajectories": float(failed)}


def trajectory_failures(result: SolveResult, n: int) -> tuple[int, str]:
    """(number of failed trajectories, "k of n trajectories failed: STATUS count, ...")."""
    if result.status is None:
        return 0, ""
    status = np.asarray(result.status).reshape(-1)
    failed = int(np.count_nonzero(status != int(Status.SUCCESS)))
    if failed == 0:
        return 0, ""
    codes, counts = np.unique(status[status != int(Status.SUCCESS)], return_counts=True)
    parts = []
    for c, k in zip(codes, counts):
        try:
            name = Status(int(c)).name
        except ValueError:
            name = f"status {int(c)}"
        parts.append(f"{name} {int(k)}")
    return failed, f"{failed} of {n} trajectories failed: {', '.join(parts)}"


#: The phase in which the float64 reference is computed (or read from its cache). The runner
#: does not count it against the cell's time limit: a reference is computed once per problem,
#: N and dtype (512 SciPy solves at most) and then cached for every backend.
REFERENCE_PHASE = "reference"


def load_reference(cell: Cell) -> tuple[Any, str]:
    """(the float64 reference for ``cell``'s ensemble, "") or (None, why it is unavailable)."""
    spec = cell.spec
    try:
        # The problem's kind supplies the reference (ODE: the float64 SciPy reference; SDE: its
        # moment/path measure, problems.sde_core) so that this runner stays kind-agnostic.
        return reference_for(spec), ""
    except Exception as exc:  # noqa: BLE001 - a reference failure must not lose the timings
        return None, one_line(f"accuracy not measured: {type(exc).__name__}: {exc}")[:MAX_REASON]


def accuracy(ref: Any, why: str, result: SolveResult, rtol: float, atol: float) -> tuple[float, float, str]:
    """(max relative error, max scaled error of the final state vs the reference, note if not
    measured). The scaled error uses ``rtol``/``atol``: the solve's tolerances (see
    ``accuracy_tolerances``)."""
    if ref is None:
        return math.nan, math.nan, why
    own_measure = getattr(ref, "accuracy", None)  # a problem kind's own measure (problems.sde_core)
    if own_measure is not None:
        err, note = own_measure(result)
        scaled = getattr(ref, "scaled_accuracy", None)  # in units of the kind's own tolerance
        return err, (scaled(result) if scaled is not None else math.nan), note
    return max_relative_error(result.u_final, ref), max_scaled_error(result.u_final, ref, rtol, atol), ""


def own_columns(ref: Any, result: SolveResult) -> dict[str, float]:
    """Row columns a kind's accuracy measure adds (``columns(result)``, e.g. event counts:
    problems.events_core); {} where it has none or it fails (the timings are kept)."""
    columns = getattr(ref, "columns", None)
    if columns is None:
        return {}
    try:
        return dict(columns(result))
    except Exception:  # noqa: BLE001 - extra columns must not lose the row
        return {}


def accuracy_tolerances(spec: Any) -> tuple[float, float]:
    """The (rtol, atol) that scale ``max_scaled_err``: the adaptive solve's own tolerances; in
    fixed mode, which has none, the problem's default adaptive tolerances (``spec.tol``)."""
    return spec.tol


#: Launch counting's own time limit: it runs a profiled solve, which can cost several solves.
LAUNCH_COUNT_LIMIT_S = 20.0


class _CountTimeout(BaseException):
    pass


def launches_limited(prepared: Any, device: str, time_left_s: float,
                     limit_s: float = LAUNCH_COUNT_LIMIT_S) -> tuple[float, str]:
    """``launches`` under its own time limit, so counting can never cost the cell's timings:
    not attempted when less than ``limit_s`` of the cell's limit is left (the worker would be
    killed with the measured repeats), and cut by SIGALRM after ``limit_s`` where an alarm can
    be set (the main thread, no other alarm pending: in-process runs keep their cell alarm)."""
    if time_left_s < limit_s + 1.0:
        return math.nan, f"not counted: {time_left_s:.0f} s of the cell's limit left, counting may take {limit_s:g} s"
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        return launches(prepared, device)

    def on_alarm(signum, frame):
        raise _CountTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        return launches(prepared, device)
    except _CountTimeout:
        return math.nan, f"not counted: counting exceeded its own limit of {limit_s:g} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def launches(prepared: Any, device: str) -> tuple[float, str]:
    """(launches per solve, how counted) from harness.measure.launches, NaN when it cannot count."""
    try:
        count, method = count_launches(prepared, device)
    except Exception as exc:  # noqa: BLE001 - counting is a side measurement
        return math.nan, one_line(f"error: {type(exc).__name__}: {exc}")[:MAX_REASON]
    return (math.nan if count is None else float(count)), one_line(str(method))


class CellRefused(Exception):
    """A cell that is not run here: its row's status ("unavailable", "unsupported") and reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class ReadyCell:
    """A cell's prepared solve and what ``prepare_cell`` learnt on the way.

    prepared: the backend's ``Prepared`` (the caller closes it).
    settings: the backend's own settings for the spec; step_control: how it controls steps.
    threads_used: what each library was set to (harness.measure.threads.apply_to_libraries).
    """

    prepared: Any
    settings: dict[str, Any]
    step_control: str
    threads_used: Any


def prepare_cell(cell: Cell, on_phase: Callable[[str], None] | None = None) -> ReadyCell:
    """Look the backend up, ask whether it is available on the cell's device (once per process),
    set the thread counts, check the spec, read the settings and prepare the solve (untimed).

    Raises CellRefused when the backend is unavailable or refuses the spec; any other exception
    is the backend's own (``classify_exception`` makes it a row).
    """
    phase = on_phase or (lambda name: None)
    spec = cell.spec
    phase("load backend")
    backend, why = load_backend(cell.backend)
    if backend is None:
        raise CellRefused("unavailable", why)
    phase("available")
    if (cell.backend, spec.device) not in _availability:
        _availability[(cell.backend, spec.device)] = backend.available(spec.device)
    ok, why = _availability[(cell.backend, spec.device)]
    if not ok:
        raise CellRefused("unavailable", why or "not available")
    phase("threads")
    threads_used = apply_to_libraries(resolve_threads(spec.threads))
    phase("check")
    why = backend.check(spec)
    if why:
        raise CellRefused("unsupported", why)
    settings = backend.settings(spec)
    step_control = str(settings.get("step_control") or backend.step_control(spec))
    phase("prepare")
    return ReadyCell(backend.prepare(spec), settings, step_control, threads_used)


def execute_cell(cell: Cell, context: dict[str, Any] | None = None,
                 on_phase: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run ``cell`` from start to end and return its results rows (see module docstring).

    Args:
        cell: what to run and how to time it.
        context: columns shared by the run ("run_id", "suite").
        on_phase: called with the name of each phase as it starts ("prepare", "first call", ...).
    """
    context = context or {}
    phase = on_phase or (lambda name: None)
    started_at = now_iso()
    clock_start = time.monotonic()
    spec = cell.spec
    ready = None
    try:
        ready = prepare_cell(cell, phase)
        phase(REFERENCE_PHASE)
        ref_start = time.monotonic()
        ref, ref_note = load_reference(cell)
        clock_start += time.monotonic() - ref_start  # the reference does not count against the limit
        timer, timer_name = make_device_timer(spec.device)
        load_before = load.measure()
        timing = time_solve(ready.prepared, cell.repeats, cell.warmups, timer, phase,
                            min_repeats=cell.min_repeats, repeat_budget_s=cell.repeat_budget_s)
        load_after = load.measure()
        phase("fetch")
        result = ready.prepared.fetch(timing.output)
        timing.output = None
        phase("accuracy")
        max_err, scaled_err, accuracy_note = accuracy(ref, ref_note, result, *accuracy_tolerances(spec))
        kind_columns = own_columns(ref, result)
        failed, failed_note = trajectory_failures(result, spec.n)
        # the timings are measured: counting launches is bounded so that it cannot lose them
        phase("launches")
        if cell.count_launches:
            n_launches, counter = launches_limited(ready.prepared, spec.device,
                                                   cell.timeout_s - (time.monotonic() - clock_start))
        else:
            n_launches, counter = math.nan, "not counted: counted once per series, at its first N run"
    except CellRefused as refused:
        return [failure_row(cell, context, started_at, refused.status, refused.reason)]
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row
        return [failure_row(cell, context, started_at, *classify_exception(exc))]
    finally:
        if ready is not None:
            phase("close")
            try:
                ready.prepared.close()
            except Exception:  # noqa: BLE001 - a failing close must not hide the result
                pass

    shared = base_row(cell, context, started_at)
    shared.update(measured_columns(result, max_err, scaled_err, failed))
    shared.update(kind_columns)
    shared.update({
        "step_control": ready.step_control,
        "compile_s": timing.compile_s, "first_call_s": timing.first_call_s,
        "launches": n_launches, "launch_counter": counter, "cpu_util": timing.cpu_util,
        **load.columns(load_before, load_after, resolve_threads(spec.threads)),
        "settings": settings_json(cell, ready.settings, result.notes, timing.device_timer,
                                  {"repeats_done": len(timing.samples), "warmup_calls": timing.warmup_calls,
                                   "warmup_stable": timing.warmup_stable, "threads_used": ready.threads_used}),
    })
    notes = "; ".join(x for x in (failed_note, accuracy_note) if x)
    if failed == spec.n:
        row = dict(shared, status="failed", reason=notes, repeat=-1,
                   time_s=statistics.median(timing.samples),
                   device_time_s=statistics.median(timing.device_samples))
        return [row]
    return [dict(shared, status="ok", reason=notes, repeat=i, time_s=t, device_time_s=d)
            for i, (t, d) in enumerate(zip(timing.samples, timing.device_samples))]
