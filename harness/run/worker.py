"""A child process that runs cells for the runner, and the parent's handle on it.

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
import time
from multiprocessing.connection import wait
from typing import Any

from harness.measure.execute import REFERENCE_PHASE
from harness.run.suites import Cell

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
        from harness.measure.threads import pin_process

        pin_process(threads)
    # Ctrl-C reaches the whole process group: the parent decides, and kills us if it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    # Libraries that print would otherwise write to the parent's stdout; data goes to files only.
    os.dup2(2, 1)
    from solvers import registry

    registry.BACKENDS.clear()
    registry.BACKENDS.update(backends)
    from harness.measure.execute import execute_cell

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
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class WorkerDied(Exception):
    """The child ended without answering (crash, kill, or failed start)."""


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
        from contextlib import nullcontext

        from harness.measure.threads import environment_for
        from solvers import registry

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

    def _exit_reason(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            sig = -code
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
            hint = " (the OOM killer sends SIGKILL)" if sig == signal.SIGKILL else ""
            return f"worker process killed by {name}{hint}"
        return f"worker process exited with code {code}"

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
                    raise WorkerDied(self._exit_reason()) from None
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
                raise WorkerDied(self._exit_reason())

    def run(self, cell: Cell, timeout_s: float) -> list[dict[str, Any]]:
        """Run ``cell`` in the child; raises WorkerTimeout (child killed) or WorkerDied."""
        try:
            self._conn.send(("cell", cell))
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._exit_reason()) from None
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
