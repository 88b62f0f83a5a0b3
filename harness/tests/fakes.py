"""Fake backends with known timings and failures, for testing the harness (not solvers).

Register them with the ``fake_backends`` fixture below (import it by name), which adds
``FAKES`` to ``solvers.registry.BACKENDS``; worker processes receive the registry, so the fakes
also resolve there. Every fake "solves" by returning the float64 reference's final states
(exact to the dtype's rounding: ``max_rel_err`` ~ 0; a shard returns its slice of them) and reports its process id
in ``notes`` (tests of isolation).

Behaviour that must change between a first run and a resumed run is switched by a marker
file named in the environment variable ``HARNESS_FAKE_MARKER``: the fake acts (interrupts,
kills) only while the marker does not exist, and creates it when it does.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec, Status

#: name -> "module:Class", as solvers.registry.BACKENDS spells it.
FAKES = {
    "fake-ok": "harness.tests.fakes:OkBackend",
    "fake-sync": "harness.tests.fakes:SlowSyncBackend",
    "fake-compile": "harness.tests.fakes:CompileBackend",
    "fake-raise": "harness.tests.fakes:RaisingBackend",
    "fake-hang": "harness.tests.fakes:HangingBackend",
    "fake-oom": "harness.tests.fakes:OomBackend",
    "fake-die": "harness.tests.fakes:DyingBackend",
    "fake-partial": "harness.tests.fakes:PartlyFailingBackend",
    "fake-interrupt": "harness.tests.fakes:InterruptingBackend",
    "fake-killparent": "harness.tests.fakes:ParentKillingBackend",
    "fake-noop": "harness.tests.fakes:NoopBackend",
    "fake-unsupported": "harness.tests.fakes:UnsupportedBackend",
    "fake-busy": "harness.tests.fakes:BusyBackend",
    "fake-killworker": "harness.tests.fakes:WorkerKillingBackend",
    "fake-killworker-always": "harness.tests.fakes:AlwaysWorkerKillingBackend",
    "fake-killself": "harness.tests.fakes:SelfKillingBackend",
    "fake-killself-each": "harness.tests.fakes:ShardSelfKillingBackend",
    "fake-killself-always": "harness.tests.fakes:AlwaysSelfKillingBackend",
    "fake-oomkill": "harness.tests.fakes:OomKilledBackend",
    "fake-threads": "harness.tests.probe:ThreadProbeBackend",
}


class RealClock:
    """Time as it passes: what the fakes' timed work uses unless a test installs a VirtualClock."""

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @staticmethod
    def spin(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass


class VirtualClock:
    """Time that passes only when the fakes say so: ``sleep`` advances the wall clock, ``spin``
    the wall and CPU clocks together. Installed by the ``virtual_clock`` fixture in place of the
    harness clock's ``perf_counter`` and ``process_time``, it makes timings exact on any machine,
    quiet or busy (in-process sweeps only: a worker process has its own, real, clock)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def perf_counter(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu

    def sleep(self, seconds: float) -> None:
        self.wall += seconds

    def spin(self, seconds: float) -> None:
        self.wall += seconds
        self.cpu += seconds


#: The clock the fakes' timed work runs on (run/sync durations of fake-sync, fake-compile, fake-busy).
CLOCK: RealClock | VirtualClock = RealClock()


def kill_log() -> Path:
    """The file where the killing fakes log each kill (one line: the backend's name), beside
    the marker: a test counts the deaths it caused from it, not from timing."""
    return Path(os.environ["HARNESS_FAKE_MARKER"] + ".kills")


def log_kill(name: str) -> None:
    with open(kill_log(), "a") as f:  # one short append per kill: whole lines
        f.write(name + "\n")


def _first_time(suffix: str = "") -> bool:
    """True (and the marker is created) if the marker file named in the environment (plus
    ``suffix``) is absent. Created atomically: of two processes asking at once (two shards on
    two workers), exactly one is first."""
    try:
        os.close(os.open(os.environ["HARNESS_FAKE_MARKER"] + suffix, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


class FakePrepared(Prepared):
    """A solve whose run/sync take known times; fetch returns the reference solution."""

    dispatch = "python"

    def __init__(self, spec: SolveSpec, owner: "FakeBackend") -> None:
        self.spec, self.owner = spec, owner
        self.calls = 0

    def run(self):
        self.calls += 1
        self.owner.on_run(self.spec, self.calls)
        return self.calls

    def sync(self, out) -> None:
        self.owner.on_sync(self.spec, out)

    def fetch(self, out) -> SolveResult:
        from problems.reference import reference

        n = self.spec.n
        start, total = self.spec.shard_of or (0, n)  # a shard: its slice of the whole ensemble's
        ref = reference(self.spec.prob, total, self.spec.dtype)
        u = np.zeros((total, self.spec.prob.n_states))
        u[ref.indices] = ref.u_final
        u = u[start:start + n]
        return SolveResult(u_final=u.astype(self.spec.dtype), status=self.owner.statuses(n),
                           accepted=np.full(n, 100), rejected=np.zeros(n, dtype=np.int64),
                           rhs_evals=np.full(n, 601),
                           notes={"pid": os.getpid(), "affinity": len(os.sched_getaffinity(0)),
                                  "NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS"),
                                  "XLA_FLAGS": os.environ.get("XLA_FLAGS")})


#: The methods every fake declares (method -> modes).
FAKE_METHODS = {"tsit5": ("fixed", "adaptive"), "rk4": ("fixed",)}
#: Each fake's solvers.registry.MANIFEST entry.
FAKE_MANIFEST = {"kinds": {"ode": FAKE_METHODS}, "variants": ("",)}


class FakeBackend(Backend):
    """Base fake: every method and mode, CPU only, behaviour in the hooks below."""

    devices = ("cpu",)
    kinds = {"ode": KindSupport(FAKE_METHODS)}

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return True, "fake"

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return FakePrepared(spec, self)

    def on_run(self, spec: SolveSpec, call: int) -> None:
        """Called by run(); ``call`` counts from 1."""

    def on_sync(self, spec: SolveSpec, out) -> None:
        """Called by sync()."""

    def statuses(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=np.int64)


class OkBackend(FakeBackend):
    name = "fake-ok"


class BusyBackend(FakeBackend):
    """Each run spins one Python thread for 30 ms: one core busy, a known cpu_util of ~1."""

    name = "fake-busy"

    def on_run(self, spec, call) -> None:
        CLOCK.spin(0.03)


class NoopBackend(FakeBackend):
    """run and sync do nothing: what remains of a timed repeat is the harness's own overhead."""

    name = "fake-noop"


class SlowSyncBackend(FakeBackend):
    """run() returns at once, sync() waits 50 ms: the work is 'on the device'."""

    name = "fake-sync"

    def on_sync(self, spec, out) -> None:
        CLOCK.sleep(0.05)


class CompileBackend(FakeBackend):
    """The first call takes 300 ms (compilation), every later one 10 ms."""

    name = "fake-compile"

    def on_run(self, spec, call) -> None:
        CLOCK.sleep(0.3 if call == 1 else 0.01)


class RaisingBackend(FakeBackend):
    name = "fake-raise"

    def on_run(self, spec, call) -> None:
        raise RuntimeError("boom\nsecond line of the message")


class HangingBackend(FakeBackend):
    """Runs far past any test's cell time limit."""

    name = "fake-hang"

    def on_run(self, spec, call) -> None:
        time.sleep(60)


class OomBackend(FakeBackend):
    name = "fake-oom"

    def on_run(self, spec, call) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


class DyingBackend(FakeBackend):
    """The process dies in the middle of a solve (as a segfault or the OOM killer would)."""

    name = "fake-die"

    def on_run(self, spec, call) -> None:
        os._exit(3)


class WorkerKillingBackend(FakeBackend):
    """Mid-cell, SIGKILLs the process that started this one (in a clustered sweep: the Dask
    worker whose task runs the cell; harness.run.cluster), once per marker; then waits to be ended."""

    name = "fake-killworker"

    def on_run(self, spec, call) -> None:
        if self.kills():
            log_kill(self.name)
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(30)  # mid-cell: ended by harness.run.executors' exit-with-parent watch

    def kills(self) -> bool:
        return _first_time()


class AlwaysWorkerKillingBackend(WorkerKillingBackend):
    """Kills the worker running it every time (the cell must end as an "oom" row: KilledWorker)."""

    name = "fake-killworker-always"

    def kills(self) -> bool:
        return True


class SelfKillingBackend(FakeBackend):
    """SIGKILLs its own process on its first solve, once per marker: run as a shard inside a Dask
    worker (harness.run.shards), that kills the worker mid-shard."""

    name = "fake-killself"

    def on_run(self, spec, call) -> None:
        if self.kills(spec):
            log_kill(self.name)
            os.kill(os.getpid(), signal.SIGKILL)

    def kills(self, spec) -> bool:
        return _first_time()


class ShardSelfKillingBackend(SelfKillingBackend):
    """Kills its own process on the first solve of each shard (one marker per shard): the shards
    of a cell on as many workers kill them all at once, leaving Dask no worker to move the shards
    to until the nannies have restarted them."""

    name = "fake-killself-each"

    def kills(self, spec) -> bool:
        return _first_time(f".shard{spec.shard_of[0] if spec.shard_of else ''}")


class AlwaysSelfKillingBackend(SelfKillingBackend):
    """Kills its own process in every solve (a sharded cell must end as one "oom" row)."""

    name = "fake-killself-always"

    def kills(self, spec) -> bool:
        return True


class OomKilledBackend(FakeBackend):
    """SIGKILLs its own process (as the kernel's OOM killer does) in every solve of N >=
    ``KILL_AT_N``; smaller N solve. Run it in a child process only (how="isolate"/"shared")."""

    name = "fake-oomkill"
    KILL_AT_N = 16

    def on_run(self, spec, call) -> None:
        if spec.n >= self.KILL_AT_N:
            os.kill(os.getpid(), signal.SIGKILL)


class PartlyFailingBackend(FakeBackend):
    """rk4 cells: every trajectory hits MAX_STEPS; tsit5 cells: only the first two do."""

    name = "fake-partial"

    def prepare(self, spec):
        self._all = spec.method == "rk4"
        return super().prepare(spec)

    def statuses(self, n: int) -> np.ndarray:
        s = np.zeros(n, dtype=np.int64)
        s[: n if self._all else 2] = int(Status.MAX_STEPS)
        return s


class InterruptingBackend(FakeBackend):
    """Raises KeyboardInterrupt (as Ctrl-C would) the first time it runs."""

    name = "fake-interrupt"

    def on_run(self, spec, call) -> None:
        if _first_time():
            raise KeyboardInterrupt


class ParentKillingBackend(FakeBackend):
    """The first time it runs, SIGKILLs the runner (its parent process), then dies itself."""

    name = "fake-killparent"

    def on_run(self, spec, call) -> None:
        if _first_time():
            os.kill(os.getppid(), signal.SIGKILL)
            os._exit(1)


class UnsupportedBackend(FakeBackend):
    """Declares rk4 but refuses it at run time through check()."""

    name = "fake-unsupported"

    def check(self, spec):
        if spec.method == "rk4":
            return "fake-unsupported refuses rk4"
        return super().check(spec)



@pytest.fixture
def fake_backends(monkeypatch, tmp_path):
    """Register FAKES in the backend registry for one test (import this fixture by name).

    Also points ``HARNESS_FAKE_MARKER`` at a fresh file, so once-only behaviour acts once.
    """
    from solvers import registry

    for name, target in FAKES.items():
        monkeypatch.setitem(registry.BACKENDS, name, target)
        monkeypatch.setitem(registry.MANIFEST, name, FAKE_MANIFEST)
    monkeypatch.setattr(registry, "_instances", {})
    monkeypatch.setenv("HARNESS_FAKE_MARKER", str(tmp_path / "fake-marker"))
    return FAKES


@pytest.fixture
def virtual_clock(monkeypatch):
    """A VirtualClock for the harness clock and the fakes' timed work (import it by name)."""
    from harness.measure import clock as harness_clock

    virtual = VirtualClock()
    monkeypatch.setattr(harness_clock, "perf_counter", virtual.perf_counter)
    monkeypatch.setattr(harness_clock, "process_time", virtual.process_time)
    monkeypatch.setattr(sys.modules[__name__], "CLOCK", virtual)
    return virtual
