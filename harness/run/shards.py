"""Sharded ensembles: one cell's N trajectories split into K contiguous shards, each solved by the
same backend on a Dask worker, the final states gathered in order on the client.

Shard k of K covers trajectories ``split(N, K)[k]`` (the first N mod K shards get one more, as
the paper's MPI script split its 2^30 trajectories). Each shard's solve is the cell's spec with
``n`` = the shard's size and ``shard_of = (start, N)``: the worker builds exactly its slice of
the sweep (``rho = linspace(0, 21, N)[start:stop]``, bit-identical to the slice of the whole),
so the gathered final states equal the unsharded solve's wherever trajectories are independent
(the fused kernel: bitwise).

What a sharded cell's row measures (``shards`` = K):

* ``time_s``, one sample per timed repeat: the client's wall time from dispatching the K shard
  solves to holding the gathered (N, n_states) final states: dispatch to the workers, the
  slowest shard's run + sync, its fetch to host memory on the worker, the transfer to the client
  and the concatenation. This is the paper's MPI scatter / solve / gather except the scatter of
  the parameters: each worker builds its slice from the problem definition during the untimed
  prepare, as every unsharded cell builds its inputs.
* ``settings.harness.shards``: per shard its trajectories, the worker that ran it, its first
  call and the solve time (run + sync, timed on the worker) of every repeat; the overhead of
  distribution is ``time_s`` minus the slowest shard's solve time of that repeat
  (``settings.harness.overhead_s``).
* The client times whole rounds (dispatch, solves, gather) with harness.measure.clock's
  ``time_repeats``: the same first call, warm-up policy and GC pause as an unsharded cell's
  repeats, so the scaling figure compares like with like. ``first_call_s`` / ``compile_s``: the
  slowest shard's solve in the first round / its excess over that shard's median timed solve.
  Accuracy, steps, RHS evaluations and failed trajectories: of the gathered ensemble, exactly as
  for an unsharded cell. Launches are not counted (a per-shard property).

A shard whose worker dies is run again on another worker by Dask (up to the cluster's
``allowed-failures``, harness.run.cluster.MAX_WORKER_DEATHS); the repeat in which that happened is
listed in ``settings.harness.shards_reprepared`` (its time includes the new worker's prepare and
first call). When every worker died at once, Dask leaves the shard without a worker and the
client moves it itself (``STRANDED_POLL_S``), counting the same deaths. Past the limit the cell
is one "oom" row naming the shard (KilledWorker: most often the OOM killer's doing); a cell that
exceeds its time limit is a "timeout" row and the shard workers are restarted.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
import uuid
from typing import Any, Callable

import numpy as np

from harness.measure.clock import time_call, time_repeats
from harness.measure.environment import brief, worker_info
from harness.measure.execute import (REFERENCE_PHASE, Cell, CellRefused, accuracy, accuracy_tolerances,
                                     base_row, classify_exception, failure_row, load_reference,
                                     measured_columns, now_iso, prepare_cell, settings_json,
                                     trajectory_failures)
from problems.kinds import kind_of
from solvers import registry
from solvers.base import SolveResult

#: Worker-side state: (token, shard start) -> (prepared solve, shard info). One Dask worker
#: process holds the prepared shards of the cell being run, more than one where shards share a
#: worker (fewer workers than shards, or a shard moved after its worker died): released when
#: the cell ends.
_PREPARED: dict[tuple[str, int], tuple[Any, dict]] = {}

#: How often (seconds) the client asks the scheduler for stranded shard tasks while it waits.
#: A shard task is pinned to its worker with ``allow_other_workers``; when its worker dies, Dask
#: moves it to another worker, but when every worker died at once (an OOM killer taking all
#: shards of a cell) the task waits in "no-worker", and Dask (distributed 2026.8) does not
#: reconsider loose restrictions when the restarted workers join: it would wait there until the
#: cell's time limit. The client then resubmits it to a worker alive now.
STRANDED_POLL_S = 2.0


def split(n: int, k: int) -> list[tuple[int, int]]:
    """K contiguous (start, stop) slices of range(n), sizes differing by at most one (the first
    n mod k are one larger)."""
    if k <= 0 or n <= 0:
        raise ValueError(f"cannot split {n} trajectories into {k} shards")
    q, r = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        stop = start + q + (1 if i < r else 0)
        out.append((start, stop))
        start = stop
    return out


def shard_cell(cell: Cell, start: int, stop: int) -> Cell:
    """The cell that solves trajectories start .. stop-1 of ``cell``'s ensemble, whole."""
    spec = cell.spec.with_(n=stop - start, shard_of=(start, cell.spec.n))
    return dataclasses.replace(cell, spec=spec, shards=None)


def refusal(cell: Cell) -> str | None:
    """Why ``cell`` cannot be sharded (an "unsupported" row), or None."""
    spec = cell.spec
    kind = kind_of(spec.prob)
    if not kind.shardable:
        return (f"shards: a {kind.name} ensemble is not split (problems.kinds: an SDE's trajectory i "
                f"draws noise keyed by its index in the whole ensemble; a shard would need that "
                f"offset in every backend)")
    if spec.saveat is not None:
        return "shards: only final states are gathered (saveat is not supported with shards)"
    if cell.shards > spec.n:
        return f"shards: {cell.shards} shards of N={spec.n} would leave shards empty"
    return None


# ---- worker side (runs in a Dask worker process) -----------------------------------------------

def setup_shard(token: str, cell: Cell, start: int, stop: int, backends: dict[str, str]) -> dict:
    """Prepare shard ``start:stop`` of ``cell`` on this worker (harness.measure.execute.
    prepare_cell, untimed) and keep it under ``token`` for ``solve_shard``. Returns its status
    ("ok" or a failure status with a reason) and backend settings. ``backends``: the client's
    registry, so backends registered at run time (tests' fakes) resolve here too."""
    registry.BACKENDS.update(backends)
    part = shard_cell(cell, start, stop)
    info = {"start": start, "stop": stop, "worker": worker_info(cell.spec.threads)}
    try:
        ready = prepare_cell(part)
    except CellRefused as refused:
        return dict(info, status=refused.status, reason=refused.reason)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row on the client
        status, reason = classify_exception(exc)
        return dict(info, status=status, reason=reason)
    info.update(status="ok", reason="", settings=ready.settings, step_control=ready.step_control)
    _release((token, start))
    _PREPARED[(token, start)] = (ready.prepared, info)
    return info


def solve_shard(token: str, cell: Cell, start: int, stop: int, backends: dict[str, str]) -> dict:
    """One solve of the shard prepared under ``token`` (prepared here first if this worker does
    not hold it: the task was moved after a worker died), its run + sync timed by the clock,
    fetched to host memory."""
    reprepared = (token, start) not in _PREPARED
    if reprepared:
        info = setup_shard(token, cell, start, stop, backends)
        if info["status"] != "ok":
            return dict(info, reprepared=True)
    prepared, info = _PREPARED[(token, start)]
    solve_s, out = time_call(prepared.run, prepared.sync)
    result = prepared.fetch(out)
    return {"start": start, "stop": stop, "status": "ok", "solve_s": solve_s, "reprepared": reprepared,
            "worker": brief(info["worker"]), "u_final": np.asarray(result.u_final),
            "traj_status": result.status, "accepted": result.accepted, "rejected": result.rejected,
            "rhs_evals": result.rhs_evals, "notes": result.notes}


def release_shard(token: str) -> bool:
    """Close and forget the shards prepared under ``token`` (False: this worker held none)."""
    held = [key for key in _PREPARED if key[0] == token]
    for key in held:
        _release(key)
    return bool(held)


def _release(key: tuple[str, int]) -> None:
    held = _PREPARED.pop(key, None)
    if held is None:
        return
    try:
        held[0].close()
    except Exception:  # noqa: BLE001 - a failing close must not fail the sweep
        pass


# ---- client side ---------------------------------------------------------------------------------

class ShardFailure(Exception):
    """A sharded cell that cannot go on: its row's status and reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class ShardedRun:
    """The client's side of one sharded cell on ``cluster`` (harness.run.cluster.Cluster): its
    shards' bounds and workers, and the dispatch and gather of their tasks within the cell's
    time limit (counted from now)."""

    def __init__(self, cell: Cell, cluster: Any) -> None:
        self.cell, self.cluster = cell, cluster
        self.deadline = time.monotonic() + cell.timeout_s
        self.backends = dict(registry.BACKENDS)
        self.bounds = split(cell.spec.n, cell.shards)
        self.workers = cluster.workers_for(len(self.bounds))
        self.token = uuid.uuid4().hex
        self.submit = cluster.submit_options()
        self.rounds = 0
        self.deaths = [0] * len(self.bounds)  # per shard: deaths counted when its task was moved
        self.phase = "setup"

    def run(self, func: Callable, what: str) -> list[dict]:
        """``func(token, cell, start, stop, backends)`` on every shard's worker; the results in
        shard order. Raises ShardFailure when the time limit passes or a shard's workers keep dying."""
        from distributed import wait  # optional (dask[distributed]): sharded cells need it

        client, label = self.cluster.client, f"{func.__name__}-{self.rounds}"
        self.rounds += 1

        def submit(k: int, key: str):
            a, b = self.bounds[k]
            return client.submit(func, self.token, self.cell, a, b, self.backends, key=key, pure=False,
                                 workers=[self.workers[k]], allow_other_workers=True, **self.submit)

        futures = [submit(k, f"{label}-{k}-{self.token}") for k in range(len(self.bounds))]
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                client.cancel(futures)
                self.cluster.restart_workers(self.workers)  # a shard may be stuck in native code
                raise ShardFailure("timeout", f"exceeded the cell time limit of {self.cell.timeout_s:g} s during {what}")
            try:
                wait(futures, timeout=min(left, STRANDED_POLL_S), return_when="ALL_COMPLETED")
                break
            except TimeoutError:  # distributed.wait raises it when the timeout passes first
                pass
            for k, deaths in self.cluster.stranded([f.key for f in futures]).items():
                client.cancel(futures[k])
                if not self._move(k, deaths):
                    client.cancel(futures)
                    a, b = self.bounds[k]
                    raise ShardFailure("oom", f"shard {k} ({a}:{b}): its worker died {self.deaths[k]} times "
                                              "(every worker of the cluster at once)")
                futures[k] = submit(k, f"{futures[k].key}-moved")
        try:
            results = client.gather(futures)  # one round trip for all shards
        except Exception as exc:  # noqa: BLE001 - KilledWorker and the like become the row
            status, reason = classify_exception(exc)
            k = next((i for i, f in enumerate(futures) if f.status == "error"), None)
            where = "" if k is None else f"shard {k} ({self.bounds[k][0]}:{self.bounds[k][1]}): "
            if type(exc).__name__ == "KilledWorker":
                reason = f"its worker died {self.cluster.max_worker_deaths + 1} times; {reason}"  # allowed + 1
            raise ShardFailure(status, where + reason) from None
        # The next round goes where each shard is prepared now (Dask may have moved it).
        self.workers = [r["worker"].get("address") or w for r, w in zip(results, self.workers)]
        return results

    def _move(self, k: int, deaths: int) -> bool:
        """Shard ``k``'s task lost its workers ``deaths`` times and Dask left it with none (see
        STRANDED_POLL_S): count the deaths and pin the shard to a worker alive now; False past
        the cluster's allowed deaths (where Dask's KilledWorker would give it up)."""
        self.deaths[k] += deaths
        if self.deaths[k] > self.cluster.max_worker_deaths:
            return False
        self.workers[k] = self.cluster.workers_for(len(self.bounds))[k]
        return True

    def setup(self) -> list[dict]:
        """Every shard prepared on its worker; their infos."""
        infos = self.run(setup_shard, "the shards' prepare")
        bad = next((i for i in infos if i["status"] != "ok"), None)
        if bad is not None:
            raise ShardFailure(bad["status"], f"shard {bad['start']}:{bad['stop']}: {bad['reason']}")
        return infos

    def solve(self) -> tuple[list[dict], np.ndarray]:
        """One round: every shard solved, the final states gathered in order."""
        parts = self.run(solve_shard, f"{self.phase} (round {self.rounds})")
        bad = next((p for p in parts if p["status"] != "ok"), None)
        if bad is not None:
            raise ShardFailure(bad["status"], f"shard {bad['start']}:{bad['stop']} "
                                              f"(moved to another worker): {bad['reason']}")
        return parts, np.concatenate([p["u_final"] for p in parts])  # the gather, in order


def _concat(parts: list[dict], name: str) -> np.ndarray | None:
    values = [p[name] for p in parts]
    if any(v is None for v in values):
        return None
    return np.concatenate([np.asarray(v) for v in values])


def run_sharded_cell(cell: Cell, cluster: Any, context: dict[str, Any],
                     on_phase: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run ``cell`` split into ``cell.shards`` shards on ``cluster``'s workers (harness.run.cluster.
    Cluster) and return its rows (see the module docstring). Never raises for the cell's own
    failure; KeyboardInterrupt propagates (the cell leaves no row)."""
    phase = on_phase or (lambda name: None)
    started_at = now_iso()
    why = refusal(cell)
    if why:
        return [failure_row(cell, context, started_at, "unsupported", why)]
    phase(REFERENCE_PHASE)  # on the client, not counted against the cell's limit
    ref, ref_note = load_reference(cell)
    run = ShardedRun(cell, cluster)
    rounds: list[list[dict]] = []  # per round, per shard: solve_s, reprepared, worker (no states)
    last: list = []  # the latest round's parts and gathered final states

    def one_round() -> None:
        parts, u_final = run.solve()
        last[:] = [parts, u_final]
        rounds.append([{k: p[k] for k in ("solve_s", "reprepared", "worker")} for p in parts])

    def on_clock_phase(name: str) -> None:
        run.phase = name
        phase(name)

    try:
        phase("setup shards")
        infos = run.setup()
        samples = time_repeats(one_round, cell.repeats, cell.warmups, on_phase=on_clock_phase)
        phase("accuracy")
        parts, u_final = last
        result = SolveResult(u_final=u_final, status=_concat(parts, "traj_status"),
                             accepted=_concat(parts, "accepted"), rejected=_concat(parts, "rejected"),
                             rhs_evals=_concat(parts, "rhs_evals"), notes=parts[0]["notes"])
        max_err, scaled_err, accuracy_note = accuracy(ref, ref_note, result, *accuracy_tolerances(cell.spec))
        failed, failed_note = trajectory_failures(result, cell.spec.n)
    except ShardFailure as failure:
        return [failure_row(cell, context, started_at, failure.status, failure.reason)]
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row
        return [failure_row(cell, context, started_at, *classify_exception(exc))]
    finally:
        cluster.run_on_workers(release_shard, run.token)

    for info in infos:
        cluster.note_worker(info["worker"])  # its fingerprint into workers.json
    shared = base_row(cell, context, started_at)
    shared.update(measured_columns(result, max_err, scaled_err, failed))
    shared.update(_timing_columns(cell, run.bounds, infos, rounds, samples, result.notes))
    notes = "; ".join(x for x in (failed_note, accuracy_note) if x)
    if failed == cell.spec.n:
        return [dict(shared, status="failed", reason=notes, repeat=-1, time_s=statistics.median(samples))]
    return [dict(shared, status="ok", reason=notes, repeat=i, time_s=t, device_time_s=math.nan)
            for i, t in enumerate(samples)]


def _timing_columns(cell: Cell, bounds: list[tuple[int, int]], infos: list[dict], rounds: list[list[dict]],
                    samples: list[float], notes: dict) -> dict[str, Any]:
    """The columns and ``settings.harness`` of a sharded cell's timings: ``rounds`` holds every
    round the clock made (first call, warm-up, then the timed ones: the last len(samples))."""
    timed = rounds[len(rounds) - len(samples):]
    per_shard = [[r[k]["solve_s"] for r in timed] for k in range(len(bounds))]
    first = [p["solve_s"] for p in rounds[0]]
    slowest = max(range(len(bounds)), key=lambda k: first[k])
    shards_info = [{"start": a, "stop": b, "worker": timed[-1][k]["worker"], "first_call_s": first[k],
                    "solve_s": per_shard[k]} for k, (a, b) in enumerate(bounds)]
    timing = {"repeats_done": len(samples), "warmup_calls": len(rounds) - 1 - len(samples),
              "shards": shards_info,
              "overhead_s": [t - max(s[r] for s in per_shard) for r, t in enumerate(samples)],
              "shards_reprepared": [r for r, parts in enumerate(timed) if any(p["reprepared"] for p in parts)],
              "timer": "harness.measure.clock.time_repeats on the client around dispatch, the shards' "
                       "run+sync+fetch, transfer and concatenation"}
    return {"step_control": infos[0]["step_control"], "first_call_s": first[slowest],
            "compile_s": max(0.0, first[slowest] - statistics.median(per_shard[slowest])),
            "launch_counter": "not counted: sharded cell",
            "settings": settings_json(cell, infos[0]["settings"], notes, None, timing)}


__all__ = ["split", "shard_cell", "refusal", "setup_shard", "solve_shard", "release_shard",
           "run_sharded_cell"]
