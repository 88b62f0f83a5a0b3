"""Executors: where a sweep's cells run. The sweep (harness.run.sweep) hands cells to an
``Executor`` and never knows which one it is, the way benchopt's runner hands its ``run`` to a
parallel backend; harness.run.cluster's DaskExecutor is one more.

Local executors (``local_executor(how)``):

* "isolate" (``ChildExecutor(per_backend=True)``): each backend's cells in a child process of
  their own (JAX and torch each hold GPU memory for the life of their process; on a CPU, one
  library's thread pools and JIT caches do not disturb another's timings); the default;
* "shared" (``ChildExecutor(per_backend=False)``): all cells in one child process (cheaper, for
  quick runs);
* "in-process" (``InProcessExecutor``): in the caller's process, for tests, profiling and
  debugging. The time limit is then a SIGALRM (main thread only) and cannot interrupt native
  code that ignores signals.

In the two child-process modes a cell that runs past its limit gets its child killed (a
"timeout" row) and the next cell starts a fresh child; a child that dies mid-cell gives an
"error" row (a killed child's signal is named), or an "oom" row when SIGKILL killed it (what the
kernel's OOM killer sends; the sweep then stops the larger N of that series, harness.run.sweep). On a GPU a child is also restarted after an
"error" or "oom" cell, since a CUDA error can poison the process's context. Cells with different
``threads`` never share a child: a child is configured for one thread count before it imports
any library (see harness.measure.threads).

Why a child: JAX preallocates most of the GPU memory and torch caches what it frees, so two
libraries in one process starve each other; and a cell that hangs inside native code can only
be stopped by killing its process. The child is started with multiprocessing's "spawn" method
(a fresh interpreter: no CUDA state inherited from the parent), receives cells over a pipe and
answers with rows, reporting each phase of a cell as it starts so a time-out can say where it
happened.

Protocol (parent -> child): ("cell", Cell) | ("stop",). Child -> parent: ("ready",) once,
then per cell any number of ("phase", name) and one ("rows", [row dicts]).
"""
from __future__ import annotations

import gc
import multiprocessing as mp
import os
import signal
import threading
import time
from contextlib import nullcontext
from multiprocessing.connection import wait
from typing import Any, Callable, Iterable, Protocol, Sequence

from harness.measure.execute import REFERENCE_PHASE, Cell, execute_cell, failure_row, now_iso
from harness.measure.threads import environment_for, pin_process
from harness.measure.threads import resolve as resolve_threads
from solvers import registry

HOW = ("isolate", "shared", "in-process")

#: ``admit(cell) -> cell | None``: the sweep's gates and series blocking, called just before a
#: cell would start; None: the sweep has recorded the cell's rows and it is not run.
Admit = Callable[[Cell], "Cell | None"]
#: ``finish(cell, rows)``: the sweep's after-gates and the writing of a cell that ran.
Finish = Callable[[Cell, list], None]


class Executor(Protocol):
    """Runs a sweep's cells somewhere."""

    def order(self, cells: Sequence[Cell]) -> list[Cell]:
        """``cells`` in the order this executor runs them best (see ``order_cells``)."""

    def run_cells(self, cells: Iterable[Cell], context: dict[str, Any], admit: Admit, finish: Finish) -> None:
        """Run ``cells``: each through ``admit`` just before it would start, each that ran to
        ``finish`` with its rows (``context``: the columns every row carries)."""

    def close(self) -> None:
        """Release what the executor holds (idle children finish cleanly)."""

    def kill(self) -> None:
        """Stop at once, a cell possibly mid-way (after an interrupt)."""


def order_cells(cells: Sequence[Cell], how: str) -> list[Cell]:
    """Cells in run order: as given, except that "isolate" groups each backend's cells together
    (in order of first appearance, stable within a backend) so each backend starts one child,
    and both child modes group cells of one ``threads`` setting together (a child serves one)."""
    if how == "in-process":
        return list(cells)
    groups = list(dict.fromkeys(_group(c, how) for c in cells))
    return [c for g in groups for c in cells if _group(c, how) == g]


def _group(cell: Cell, how: str) -> tuple:
    threads = resolve_threads(cell.spec.threads)
    return (cell.backend, threads) if how == "isolate" else (threads,)


def local_executor(how: str) -> "InProcessExecutor | ChildExecutor":
    """The executor for ``how``: "isolate", "shared" or "in-process" (module docstring)."""
    if how not in HOW:
        raise ValueError(f"invalid how {how!r}: choose one of {', '.join(HOW)}")
    return InProcessExecutor() if how == "in-process" else ChildExecutor(per_backend=how == "isolate")


class _LocalExecutor:
    """One cell after another, here; a sharded cell needs a Dask cluster (harness.run.cluster)."""

    how = ""

    def order(self, cells: Sequence[Cell]) -> list[Cell]:
        return order_cells(cells, self.how)

    def run_cells(self, cells: Iterable[Cell], context: dict[str, Any], admit: Admit, finish: Finish) -> None:
        for cell in cells:
            cell = admit(cell)
            if cell is None:
                continue
            if cell.shards:
                rows = [failure_row(cell, context, now_iso(), "unsupported",
                                    "shards: a sharded cell needs a Dask cluster (run --cluster)")]
            else:
                rows = self.run_one(cell, context)
            finish(cell, rows)

    def run_one(self, cell: Cell, context: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def kill(self) -> None:
        pass


class CellTimeout(BaseException):
    """Raised by SIGALRM in in-process mode. A BaseException so that a backend's or
    execute_cell's ``except Exception`` cannot swallow it."""


class InProcessExecutor(_LocalExecutor):
    """Cells in this process, each cell's limit a SIGALRM paused while its reference is computed."""

    how = "in-process"

    def run_one(self, cell: Cell, context: dict[str, Any]) -> list[dict[str, Any]]:
        phase = ["start"]
        on_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
        paused = [0.0]  # the cell's remaining time while the alarm is paused for the reference

        def on_alarm(signum, frame):
            raise CellTimeout(phase[0])  # the phase now: cleanup on the way out renames it

        def on_phase(name: str) -> None:
            if on_main and name == REFERENCE_PHASE:
                paused[0] = signal.setitimer(signal.ITIMER_REAL, 0)[0]
            elif on_main and phase[0] == REFERENCE_PHASE:
                signal.setitimer(signal.ITIMER_REAL, max(paused[0], 1e-3))
            phase[0] = name

        if on_main:
            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, cell.timeout_s)
        started_at = now_iso()
        try:
            return execute_cell(cell, context, on_phase=on_phase)
        except CellTimeout as exc:
            return [failure_row(cell, context, started_at, "timeout",
                                f"exceeded the cell time limit of {cell.timeout_s:g} s during {exc.args[0]}")]
        finally:
            if on_main:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)


class ChildExecutor(_LocalExecutor):
    """Cells in a child process, at most one alive: per backend and thread count
    (``per_backend``, "isolate") or per thread count ("shared")."""

    def __init__(self, per_backend: bool = True) -> None:
        self.how = "isolate" if per_backend else "shared"
        self.worker: Worker | None = None
        self.worker_for: tuple | None = None  # (backend or None, threads) the child serves

    def run_one(self, cell: Cell, context: dict[str, Any]) -> list[dict[str, Any]]:
        threads = resolve_threads(cell.spec.threads)
        serves = (cell.backend if self.how == "isolate" else None, threads)
        if self.worker is not None and self.worker_for != serves:
            self.close()  # another backend (isolate), or a child's thread settings are fixed at its start
        started_at = now_iso()
        try:
            if self.worker is None:
                self.worker, self.worker_for = Worker(context, threads), serves
            rows = self.worker.run(cell, cell.timeout_s)
        except WorkerTimeout as exc:
            self.worker = None  # already killed
            return [failure_row(cell, context, started_at, "timeout",
                                f"exceeded the cell time limit of {cell.timeout_s:g} s during {exc.phase}")]
        except WorkerDied as exc:
            phase = self.worker.phase if self.worker is not None else "start"
            self.close()
            return [failure_row(cell, context, started_at, exc.status, f"{exc} during {phase}")]
        if cell.spec.device == "gpu" and rows[0]["status"] in ("error", "oom"):
            self.close()
        return rows

    def close(self) -> None:
        """Let the idle child finish cleanly."""
        if self.worker is not None:
            self.worker.stop()
        self.worker = None

    def kill(self) -> None:
        """Kill the child now (it may be mid-cell: after an interrupt)."""
        if self.worker is not None:
            self.worker.kill()
        self.worker = None


# ---- the child process and the parent's handle on it -------------------------------------------

#: How long a fresh child may take to import its modules before the runner gives up on it.
STARTUP_TIMEOUT_S = 300.0
#: The limit for computing one float64 reference, which does not count against the cell's own
#: limit (see harness.measure.execute.REFERENCE_PHASE).
REFERENCE_TIMEOUT_S = 3600.0


def worker_main(conn, backends: dict[str, str], context: dict[str, Any], threads: int | None = None) -> None:
    """Entry point of the child. ``backends`` is the parent's registry (name -> "module:Class"),
    so backends registered at run time (tests' fakes) resolve here too. ``threads``: the CPU
    threads this worker's cells may use (its environment was set by the parent, see
    harness.measure.threads); the process is pinned to that many cores."""
    if threads is not None:
        pin_process(threads)
    # Ctrl-C reaches the whole process group: the parent decides, and kills us if it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    # Libraries that print would otherwise write to the parent's stdout; data goes to files only.
    os.dup2(2, 1)
    registry.BACKENDS.clear()
    registry.BACKENDS.update(backends)
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent is gone
            return
        if msg[0] == "stop":
            return
        cell = msg[1]
        rows = execute_cell(cell, context, on_phase=lambda name: conn.send(("phase", name)))
        conn.send(("rows", rows))
        gc.collect()  # free the cell's arrays (and their device memory) before the next cell


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """End this child when its parent dies (a killed Dask worker, harness.run.cluster): otherwise it
    would finish its cell as an orphan, using cores the cell's retry on another worker is timed on."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class WorkerDied(Exception):
    """The child ended without answering (crash, kill, or failed start). ``status``: the row's,
    "oom" when SIGKILL ended it (the OOM killer's signal), else "error"."""

    def __init__(self, message: str, status: str = "error") -> None:
        super().__init__(message)
        self.status = status


class WorkerTimeout(Exception):
    """The cell did not finish in time; the child has been killed. ``phase`` says where it was."""

    def __init__(self, phase: str) -> None:
        super().__init__(phase)
        self.phase = phase


class Worker:
    """The parent's handle on one child process."""

    def __init__(self, context: dict[str, Any], threads: int | None = None) -> None:
        """Start a child; with ``threads``, configured for that many CPU threads (see
        harness.measure.threads: environment set before it imports anything, affinity, libraries)."""
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self.threads = threads
        self.process = ctx.Process(target=worker_main, name="harness-worker",
                                   args=(child_conn, dict(registry.BACKENDS), context, threads))
        with environment_for(threads) if threads is not None else nullcontext():
            self.process.start()
        child_conn.close()
        try:
            self._receive(STARTUP_TIMEOUT_S, "start")
        except WorkerTimeout:
            raise WorkerDied(f"worker did not start within {STARTUP_TIMEOUT_S:.0f} s") from None

    def _died(self) -> WorkerDied:
        """Why the child ended, as the exception to raise (a SIGKILL is taken for the OOM killer:
        the harness's own kills are time-outs and never get here)."""
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            sig = -code
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            if sig == signal.SIGKILL:
                return WorkerDied(f"worker process killed by {name} (out of memory: the OOM killer "
                                  f"sends SIGKILL)", status="oom")
            return WorkerDied(f"worker process killed by {name}")
        return WorkerDied(f"worker process exited with code {code}")

    def _receive(self, timeout_s: float, phase: str) -> tuple:
        """The next message other than a phase report, within ``timeout_s`` seconds of work.

        Phase reports update ``self.phase``; time spent in the reference phase is not counted
        (it has its own limit, REFERENCE_TIMEOUT_S).
        """
        self.phase = phase
        deadline = time.monotonic() + timeout_s
        reference_started: float | None = None
        while True:
            now = time.monotonic()
            limit = deadline if reference_started is None else reference_started + REFERENCE_TIMEOUT_S
            if limit - now <= 0:
                self.kill()
                raise WorkerTimeout(self.phase)
            ready = wait([self._conn, self.process.sentinel], timeout=limit - now)
            if self._conn in ready or self._conn.poll():
                try:
                    msg = self._conn.recv()
                except (EOFError, OSError):
                    raise self._died() from None
                if msg[0] == "phase":
                    now = time.monotonic()
                    if reference_started is not None:  # leaving the uncounted phase
                        deadline += now - reference_started
                        reference_started = None
                    self.phase = msg[1]
                    if self.phase == REFERENCE_PHASE:
                        reference_started = now
                    continue
                return msg
            if self.process.sentinel in ready:
                raise self._died()

    def run(self, cell: Cell, timeout_s: float) -> list[dict[str, Any]]:
        """Run ``cell`` in the child; raises WorkerTimeout (child killed) or WorkerDied."""
        try:
            self._conn.send(("cell", cell))
        except (BrokenPipeError, OSError):
            raise self._died() from None
        msg = self._receive(timeout_s, "queued")
        return msg[1]

    def kill(self) -> None:
        """Stop the child at once (SIGKILL) and reap it."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=10)
        self._conn.close()

    def stop(self) -> None:
        """Ask the child to finish, kill it if it does not within a few seconds."""
        if self.process.is_alive():
            try:
                self._conn.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout=10)
        self.kill()
