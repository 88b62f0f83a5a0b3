"""Sweeps on a Dask cluster: the cluster's lifecycle and how cells are sent to its workers.

``python -m harness run --cluster ADDRESS``:

* ``local`` starts a ``LocalCluster`` here (``processes=True``, one thread per worker), or a
  ``dask_cuda.LocalCUDACluster`` (one worker per GPU) where nvidia-smi sees GPUs and dask-cuda is
  installed; ``local:W`` asks for W workers. By default a CPU cluster gets
  ``cores // threads`` workers (the most cells that can run side by side without sharing a core),
  and at least as many as the largest ``shards`` of the run;
* ``tcp://host:8786`` (or ``host:8786``) joins a running scheduler (docs/cluster.md: one worker
  per GPU, ``--nthreads 1 --resources cell=1``).

Each unsharded cell is one Dask task. The task runs the cell exactly as a sweep without a
cluster does: in a child process of the Dask worker (harness.run.executors.ChildExecutor, as
"isolate": one child per backend and thread count, killed at the cell's time limit), so
a cell's timing is what it is without a cluster. One cell per worker at a time: every worker of
a cluster started here has the resource ``cell = 1`` and every task asks for it (a joined
cluster is asked for it when its workers advertise it), and the client keeps at most
``max_in_flight`` cells running. Rows stream back into the run's results.csv as cells finish
(each cell's rows in one write, so an interrupted run leaves no half cell and ``--resume``
works as without a cluster). Sharded cells (harness.run.shards) run after the others, one at a
time, each over K workers. ``DaskExecutor`` is the harness.run.executors.Executor that does this
for a sweep.

Faults: a worker that dies mid-task (killed, out of memory) loses its task, which Dask runs again
on another worker; at ``MAX_WORKER_DEATHS`` + 1 deaths (the scheduler's ``allowed-failures``
+ 1) the cell is one "oom" row saying so. Dask counts a death against every task the worker
held, also one sent to it and waiting for its ``cell`` resource behind the cell that killed it:
with several cells in flight an innocent cell can be given up with a killer. Exceptions inside a
task are not retried: a cell's own
failures are rows already, and a retry would time a different process.

Provenance: every row of a clustered run carries in ``settings.harness.worker`` the address,
host, process id and fingerprint id of the Dask worker that ran it; ``workers.json`` in the run
folder maps each fingerprint id to that worker's environment fingerprint (harness.measure.environment).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from harness.errors import UsageError
from harness.measure.environment import brief, gpu_info, worker_info
from harness.measure.execute import Cell, classify_exception, failure_row, now_iso
from harness.measure.threads import cpu_count, resolve, worker_environment
from harness.run.executors import Admit, ChildExecutor, Finish, order_cells
from harness.run.shards import run_sharded_cell
from solvers import registry

#: The scheduler's ``distributed.scheduler.allowed-failures`` of a cluster started here: the
#: deaths of workers running a task that Dask tolerates; at the next one (MAX_WORKER_DEATHS + 1
#: deaths) it gives the task up with KilledWorker and the cell gets an "oom" row.
MAX_WORKER_DEATHS = 2
WORKERS_JSON = "workers.json"
#: The worker resource that keeps one cell per worker.
CELL_RESOURCE = "cell"


def require_dask(option: str) -> None:
    """UsageError (one line) unless dask.distributed imports."""
    try:
        import distributed  # noqa: F401 - optional: asked for only when a run needs it
    except Exception as exc:  # noqa: BLE001 - missing or broken: the same message
        raise UsageError(f"{option} needs Dask: pip install 'dask[distributed]' (the extras of "
                         f"`make reproduce` install it); here: {type(exc).__name__}: {exc}") from None


def parse_address(text: str) -> tuple[str, int | None]:
    """``local`` / ``local:W`` -> ("local", W or None); a scheduler address -> (address, None)."""
    text = str(text).strip()
    if text == "local":
        return "local", None
    if text.startswith("local:"):
        w = text.split(":", 1)[1]
        if not w.isdigit() or int(w) <= 0:
            raise UsageError(f"invalid --cluster {text!r}: local:W needs a positive number of workers")
        return "local", int(w)
    if "://" in text or (":" in text and text.rsplit(":", 1)[1].isdigit()):
        return (text if "://" in text else f"tcp://{text}"), None
    raise UsageError(f"invalid --cluster {text!r}: give local, local:W or a scheduler address "
                     f"such as tcp://host:8786")


#: How long ``check_reachable`` waits for the scheduler's port (a refused port fails at once).
REACH_TIMEOUT_S = 3.0


def check_reachable(text: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """UsageError unless the scheduler address's TCP port accepts a connection within seconds:
    checked before a run folder exists (Dask's client would wait 30 s, then fail mid-run)."""
    address, _ = parse_address(text)
    rest = address.split("://", 1)[-1]
    host, _, port = rest.rpartition(":")
    if not port.isdigit():
        return  # not host:port (another transport): the client's own connect decides
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: "
                         f"{exc.strerror or type(exc).__name__} (waited {timeout_s:g} s)") from None


# ---- the cell task (runs in a Dask worker process) ---------------------------------------------

_EXECUTORS: dict[tuple, ChildExecutor] = {}


def run_cell_task(cell: Cell, context: dict[str, Any], backends: dict[str, str]) -> dict[str, Any]:
    """Run ``cell`` in an isolated child of this Dask worker (a ChildExecutor as "isolate", kept
    between tasks so consecutive cells of one backend share a child, as in a sweep without a
    cluster); returns its rows and who ran it."""
    registry.BACKENDS.update(backends)
    key = (context.get("run_id"), context.get("suite"))
    executor = _EXECUTORS.get(key)
    if executor is None:
        for old in _EXECUTORS.values():
            old.close()
        _EXECUTORS.clear()
        executor = _EXECUTORS[key] = ChildExecutor(per_backend=True)
    rows = executor.run_one(cell, dict(context))
    return {"rows": rows, "worker": worker_info(cell.spec.threads)}


# ---- the cluster ---------------------------------------------------------------------------------

class Cluster:
    """A Dask client and, for ``local``, the cluster it started. Use as a context manager.

    Attributes (after ``start``): client; max_in_flight (unsharded cells run at once);
    max_worker_deaths; local (True: started here); description (for environment.json).
    """

    def __init__(self, address: str, *, workers: int | None = None, cell_threads: int = 1,
                 shard_threads: int = 1, max_shards: int = 0) -> None:
        require_dask("--cluster/--shards")
        self.address, self.requested_workers = parse_address(address)
        self.text = address
        self.cell_threads, self.shard_threads, self.max_shards = cell_threads, shard_threads, max_shards
        self.client = None
        self._cluster = None
        self._config = None
        self.local = self.address == "local"
        self.max_in_flight = 1
        self.max_worker_deaths = MAX_WORKER_DEATHS
        self.description: dict[str, Any] = {}
        self.run_dir: Path | None = None
        self._seen: dict[str, dict] = {}
        if workers is not None:
            self.requested_workers = workers

    @classmethod
    def for_cells(cls, address: str, cells: Sequence) -> "Cluster":
        """A cluster sized for ``cells``: their largest thread count and shard count."""
        plain = [resolve(c.spec.threads) for c in cells if not c.shards]
        sharded = [c for c in cells if c.shards]
        return cls(address, cell_threads=max(plain, default=1),
                   shard_threads=max((resolve(c.spec.threads) for c in sharded), default=1),
                   max_shards=max((c.shards for c in sharded), default=0))

    # ---- lifecycle ----
    def __enter__(self) -> "Cluster":
        if self.client is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        import dask  # optional (dask[distributed]): only a run with a cluster needs it
        from distributed import Client

        # A cell task starts a child process (harness.run.executors): worker processes must not be
        # daemonic. allowed-failures: how often a task may lose its worker before it is given up.
        self._config = dask.config.set({"distributed.worker.daemon": False,
                                        "distributed.scheduler.allowed-failures": MAX_WORKER_DEATHS})
        self._config.__enter__()
        try:
            if self.local:
                self._cluster, kind = self._start_local(cpu_count(), worker_environment(self.shard_threads))
                self.client = Client(self._cluster)
                self.description = {"address": "local", "kind": kind,
                                    "workers": len(self._cluster.workers),
                                    "threads_per_worker": 1, "allowed_failures": MAX_WORKER_DEATHS}
            else:
                try:
                    self.client = Client(self.address, timeout=30)
                except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                    raise UsageError(f"cannot reach the Dask scheduler at {self.address}: "
                                     f"{type(exc).__name__}: {exc}") from None
                info = self.client.scheduler_info()
                self.max_worker_deaths = int(dask.config.get("distributed.scheduler.allowed-failures"))
                self.description = {"address": self.address, "kind": "joined",
                                    "workers": len(info.get("workers", {}))}
            n_workers = len(self.client.scheduler_info().get("workers", {}))
            if n_workers == 0:
                raise UsageError(f"the Dask cluster {self.text} has no workers")
            self.max_in_flight = self._plain_parallel(n_workers, cpu_count())
            self.description["cells_at_once"] = self.max_in_flight
        except BaseException:
            self.close()
            raise

    def _plain_parallel(self, n_workers: int, cores: int) -> int:
        if self.local and self.description.get("kind") == "LocalCluster":
            # cells side by side only as far as each keeps its own cores
            return max(1, min(n_workers, cores // max(self.cell_threads, 1)))
        return n_workers

    def _start_local(self, cores: int, env: dict[str, str]):
        from distributed import LocalCluster  # optional (dask[distributed])

        resources = {CELL_RESOURCE: 1}
        if gpu_info()["gpus"]:
            try:
                from dask_cuda import LocalCUDACluster  # optional: one worker per GPU
            except ImportError:
                print("note: GPUs present but dask-cuda is not installed: starting a CPU "
                      "LocalCluster (pip install dask-cuda for one worker per GPU)", file=sys.stderr)
            else:
                cluster = LocalCUDACluster(threads_per_worker=1, resources=resources,
                                           dashboard_address=None, silence_logs=logging.ERROR)
                return cluster, "LocalCUDACluster"
        n = self.requested_workers or max(max(1, cores // max(self.cell_threads, 1)), self.max_shards)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, resources=resources,
                               dashboard_address=None, silence_logs=logging.ERROR, env=env)
        return cluster, "LocalCluster"

    def close(self) -> None:
        for obj in (self.client, self._cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # noqa: BLE001 - closing must not hide the run's outcome
                    pass
        self.client = self._cluster = None
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None

    # ---- helpers for harness.run.shards and the sweep ----
    def submit_options(self) -> dict[str, Any]:
        """resources={"cell": 1} where the workers have it (always on a cluster started here)."""
        workers = self.client.scheduler_info().get("workers", {}).values()
        if workers and all(CELL_RESOURCE in (w.get("resources") or {}) for w in workers):
            return {"resources": {CELL_RESOURCE: 1}}
        return {}

    def workers_for(self, k: int) -> list[str]:
        """K worker addresses, one per shard (waiting up to 60 s for K workers; with fewer,
        shards share workers round-robin)."""
        try:
            self.client.wait_for_workers(k, timeout=60)
        except Exception:  # noqa: BLE001 - fewer workers: shards share them
            pass
        addresses = sorted(self.client.scheduler_info().get("workers", {}))
        return [addresses[i % len(addresses)] for i in range(k)]

    def restart_workers(self, workers: Sequence[str]) -> None:
        try:
            self.client.restart_workers(sorted(set(workers)))
        except Exception:  # noqa: BLE001 - best effort; a joined cluster may refuse
            pass

    def stranded(self, keys: Sequence[str]) -> dict[int, int]:
        """Of the tasks ``keys``, those waiting with no worker to run them while some worker
        runs (harness.run.shards.STRANDED_POLL_S): their index -> the deaths Dask counted
        against them; {} where the scheduler will not say (one that refuses pickled functions:
        such a task then waits for the cell's time limit, as it would without this)."""
        try:
            return self.client.run_on_scheduler(_stranded_tasks, list(keys))
        except Exception:  # noqa: BLE001 - best effort, like restart_workers
            return {}

    def run_on_workers(self, func: Callable, *args) -> None:
        try:
            self.client.run(func, *args)
        except Exception:  # noqa: BLE001 - releasing is best effort (a worker may have died)
            pass

    def note_worker(self, info: dict[str, Any]) -> dict[str, Any]:
        """Record ``info``'s fingerprint in run_dir/workers.json; returns its brief form."""
        fid = info.get("fingerprint_id")
        if fid and fid not in self._seen and "fingerprint" in info:
            self._seen[fid] = info["fingerprint"]
            if self.run_dir is not None:
                path = self.run_dir / WORKERS_JSON
                known = json.loads(path.read_text()) if path.is_file() else {}
                known[fid] = info["fingerprint"]
                tmp = path.with_name(path.name + ".partial")
                tmp.write_text(json.dumps(known, indent=2, default=str) + "\n")
                os.replace(tmp, path)
        return brief(info)


def _stranded_tasks(keys: list[str], dask_scheduler=None) -> dict[int, int]:
    """Runs on the scheduler (Client.run_on_scheduler): Cluster.stranded."""
    if not dask_scheduler.running:
        return {}  # no worker yet: the restarted ones have not joined, nothing to move to
    tasks = [dask_scheduler.tasks.get(key) for key in keys]
    return {i: ts.suspicious for i, ts in enumerate(tasks) if ts is not None and ts.state == "no-worker"}


def stamp_rows(rows: list[dict], worker: dict[str, Any]) -> list[dict]:
    """``rows`` with ``settings.harness.worker`` = who ran them."""
    out = []
    for row in rows:
        try:
            settings = json.loads(row.get("settings") or "{}")
        except ValueError:
            settings = {}
        settings.setdefault("harness", {})["worker"] = worker
        out.append(dict(row, settings=json.dumps(settings, sort_keys=True, default=str)))
    return out


class DaskExecutor:
    """harness.run.executors.Executor on a started ``Cluster``: unsharded cells as tasks, at most
    ``max_in_flight`` at once, then sharded ones one at a time (harness.run.shards). Rows carry
    who ran them (``stamp_rows``); workers' fingerprints go to ``run_dir/workers.json``."""

    def __init__(self, cluster: Cluster, run_dir: Path) -> None:
        self.cluster = cluster
        cluster.run_dir = Path(run_dir)

    def order(self, cells: Sequence[Cell]) -> list[Cell]:
        return order_cells(cells, "isolate")  # each task runs its cell as "isolate" does

    def run_cells(self, cells: Iterable[Cell], context: dict[str, Any], admit: Admit, finish: Finish) -> None:
        cells = list(cells)
        self._run_tasks([c for c in cells if not c.shards], context, admit, finish)
        for cell in (c for c in cells if c.shards):
            cell = admit(cell)
            if cell is not None:
                finish(cell, run_sharded_cell(cell, self.cluster, context))

    def _run_tasks(self, cells: list[Cell], context: dict[str, Any], admit: Admit, finish: Finish) -> None:
        from distributed import as_completed  # optional (dask[distributed])

        cluster = self.cluster
        client, backends = cluster.client, dict(registry.BACKENDS)
        options = cluster.submit_options()
        pending = deque(cells)
        running: dict[Any, Cell] = {}
        done = as_completed()

        def submit_more() -> None:
            while pending and len(running) < cluster.max_in_flight:
                cell = admit(pending.popleft())
                if cell is not None:
                    future = client.submit(run_cell_task, cell, context, backends, pure=False, **options)
                    running[future] = cell
                    done.add(future)

        try:
            submit_more()
            for future in done:
                cell = running.pop(future)
                try:
                    out = future.result()
                    rows = stamp_rows(out["rows"], cluster.note_worker(out["worker"]))
                except Exception as exc:  # noqa: BLE001 - KilledWorker etc. become the cell's row
                    status, reason = classify_exception(exc)
                    if type(exc).__name__ == "KilledWorker":
                        # Dask raises KilledWorker at the death after the allowed ones
                        reason = f"the worker running this cell died {cluster.max_worker_deaths + 1} times; {reason}"
                    rows = [failure_row(cell, context, now_iso(), status, reason)]
                finish(cell, rows)
                submit_more()
        finally:
            for future in running:
                future.cancel()

    def close(self) -> None:
        """Nothing to release: the cluster's owner (harness.run.session) closes it."""

    def kill(self) -> None:
        """Nothing to stop here: tasks still running were cancelled on the way out."""
