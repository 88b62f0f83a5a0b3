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
* ``first_call_s`` / ``compile_s``: the slowest shard's first call / its excess over that
  shard's median timed solve. Warm-ups: ``warmups`` untimed calls per shard (no stabilisation
  loop: large shards are what sharding is for). Accuracy, steps, RHS evaluations and failed trajectories: of the gathered ensemble,
  exactly as for an unsharded cell. Launches are not counted (a per-shard property).

A shard whose worker dies is run again on another worker by Dask (up to the cluster's
``allowed-failures``, harness.run.cluster.MAX_WORKER_DEATHS); the repeat in which that happened is
listed in ``settings.harness.shards_reprepared`` (its time includes the new worker's prepare and
first call). Past the limit the cell is one "error" row naming the shard; a cell that exceeds its
time limit is a "timeout" row and the shard workers are restarted.
"""
from __future__ import annotations

import math
import statistics
import time
import uuid
from typing import Any, Callable

import numpy as np

from harness.measure.execute import (REFERENCE_PHASE, _stat, accuracy, accuracy_tolerances, classify_exception,
                             base_row, failure_row, load_reference, now_iso, settings_json,
                             trajectory_failures)
from harness.run.suites import Cell

#: Worker-side state: token -> (prepared solve, shard info). One Dask worker process holds the
#: prepared shards of the cell being run (released when the cell ends).
_PREPARED: dict[str, tuple[Any, dict]] = {}


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
    import dataclasses

    spec = cell.spec.with_(n=stop - start, shard_of=(start, cell.spec.n))
    return dataclasses.replace(cell, spec=spec, shards=None)


def refusal(cell: Cell) -> str | None:
    """Why ``cell`` cannot be sharded (an "unsupported" row), or None."""
    spec = cell.spec
    kind = getattr(spec.prob, "kind", "ode")
    if kind != "ode":
        return (f"shards: a {kind} ensemble is not split (trajectory i's noise is keyed by its "
                f"index in the whole ensemble; a shard would need that offset in every backend)")
    if spec.saveat is not None:
        return "shards: only final states are gathered (saveat is not supported with shards)"
    if cell.shards > spec.n:
        return f"shards: {cell.shards} shards of N={spec.n} would leave shards empty"
    return None


# ---- worker side (runs in a Dask worker process) -----------------------------------------------

def _use_registry(backends: dict[str, str]) -> None:
    """Backends registered at run time in the client (tests' fakes) resolve here too."""
    from solvers import registry

    registry.BACKENDS.update(backends)


def setup_shard(token: str, cell: Cell, start: int, stop: int, backends: dict[str, str]) -> dict:
    """Prepare shard ``start:stop`` of ``cell`` on this worker and make its first call (timed)
    and ``cell.warmups`` untimed calls; kept under ``token`` for ``solve_shard``. Returns its
    status ("ok" or a failure status with a reason), first call and backend settings."""
    from solvers.registry import load_backend
    from harness.run.cluster import worker_info
    from harness.measure.threads import apply_to_libraries
    from harness.measure.threads import resolve as resolve_threads

    _use_registry(backends)
    part = shard_cell(cell, start, stop)
    info = {"start": start, "stop": stop, "worker": worker_info(cell.spec.threads)}
    backend, why = load_backend(cell.backend)
    if backend is None:
        return dict(info, status="unavailable", reason=why)
    try:
        ok, why = backend.available(part.spec.device)
        if not ok:
            return dict(info, status="unavailable", reason=why or "not available")
        apply_to_libraries(resolve_threads(part.spec.threads))
        why = backend.check(part.spec)
        if why:
            return dict(info, status="unsupported", reason=why)
        settings = backend.settings(part.spec)
        step_control = str(settings.get("step_control") or backend.step_control(part.spec))
        prepared = backend.prepare(part.spec)
        t0 = time.perf_counter()
        prepared.sync(prepared.run())
        first_call_s = time.perf_counter() - t0
        for _ in range(cell.warmups):
            prepared.sync(prepared.run())
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row on the client
        status, reason = classify_exception(exc)
        return dict(info, status=status, reason=reason)
    info.update(status="ok", reason="", first_call_s=first_call_s, settings=settings,
                step_control=step_control)
    release_shard(token)
    _PREPARED[token] = (prepared, info)
    return info


def solve_shard(token: str, cell: Cell, start: int, stop: int, backends: dict[str, str]) -> dict:
    """One timed solve of the shard prepared under ``token`` (prepared here first if this worker
    does not hold it: the task was moved after a worker died), fetched to host memory."""
    reprepared = token not in _PREPARED
    if reprepared:
        info = setup_shard(token, cell, start, stop, backends)
        if info["status"] != "ok":
            return dict(info, reprepared=True)
    prepared, info = _PREPARED[token]
    t0 = time.perf_counter()
    out = prepared.run()
    prepared.sync(out)
    solve_s = time.perf_counter() - t0
    result = prepared.fetch(out)
    from harness.run.cluster import brief

    return {"start": start, "stop": stop, "status": "ok", "solve_s": solve_s, "reprepared": reprepared,
            "worker": brief(info["worker"]), "u_final": np.asarray(result.u_final),
            "traj_status": result.status, "accepted": result.accepted, "rejected": result.rejected,
            "rhs_evals": result.rhs_evals, "notes": result.notes}


def release_shard(token: str) -> bool:
    """Close and forget the shard prepared under ``token`` (False: this worker held none)."""
    held = _PREPARED.pop(token, None)
    if held is None:
        return False
    try:
        held[0].close()
    except Exception:  # noqa: BLE001 - a failing close must not fail the sweep
        pass
    return True


# ---- client side ---------------------------------------------------------------------------------

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
    from distributed import wait

    from solvers import registry
    from solvers.base import SolveResult

    phase = on_phase or (lambda name: None)
    started_at = now_iso()
    why = refusal(cell)
    if why:
        return [failure_row(cell, context, started_at, "unsupported", why)]
    phase(REFERENCE_PHASE)  # on the client, not counted against the cell's limit
    ref, ref_note = load_reference(cell)
    deadline = time.monotonic() + cell.timeout_s
    client, backends = cluster.client, dict(registry.BACKENDS)
    bounds = split(cell.spec.n, cell.shards)
    workers = cluster.workers_for(len(bounds))
    token = f"{uuid.uuid4().hex}"
    submit = cluster.submit_options()

    def dispatch(func, label: str) -> list:
        return [client.submit(func, token, cell, a, b, backends, key=f"{label}-{k}-{token}", pure=False,
                              workers=[workers[k]], allow_other_workers=True, **submit)
                for k, (a, b) in enumerate(bounds)]

    def gather(futures: list, what: str) -> list[dict] | tuple[str, str]:
        """The futures' results, or (status, reason) when the time limit passed or a shard's
        workers kept dying."""
        left = deadline - time.monotonic()
        done, _ = wait(futures, timeout=max(left, 0.0), return_when="ALL_COMPLETED") if left > 0 else (set(), None)
        if len(done) < len(futures):
            client.cancel(futures)
            cluster.restart_workers(workers)  # a shard may be stuck in native code
            return "timeout", f"exceeded the cell time limit of {cell.timeout_s:g} s during {what}"
        try:
            return client.gather(futures)  # one round trip for all shards
        except Exception as exc:  # noqa: BLE001 - KilledWorker and the like become the row
            status, reason = classify_exception(exc)
            k = next((i for i, f in enumerate(futures) if f.status == "error"), None)
            where = "" if k is None else f"shard {k} ({bounds[k][0]}:{bounds[k][1]}): "
            if type(exc).__name__ == "KilledWorker":
                reason = f"its worker died {cluster.max_worker_deaths} times; {reason}"
            return status, where + reason

    try:
        phase("setup shards")
        infos = gather(dispatch(setup_shard, "setup"), "the shards' prepare and first call")
        if isinstance(infos, tuple):
            return [failure_row(cell, context, started_at, *infos)]
        bad = next((i for i in infos if i["status"] != "ok"), None)
        if bad is not None:
            return [failure_row(cell, context, started_at, bad["status"],
                                f"shard {bad['start']}:{bad['stop']}: {bad['reason']}")]
        samples, per_shard, reprepared, parts = [], [[] for _ in bounds], [], []
        for r in range(cell.repeats):
            phase(f"repeat {r}")
            t0 = time.perf_counter()
            parts = gather(dispatch(solve_shard, f"solve{r}"), f"repeat {r}")
            if isinstance(parts, tuple):
                return [failure_row(cell, context, started_at, *parts)]
            u_final = np.concatenate([p["u_final"] for p in parts])  # the gather, in order
            samples.append(time.perf_counter() - t0)
            bad = next((p for p in parts if p["status"] != "ok"), None)
            if bad is not None:
                return [failure_row(cell, context, started_at, bad["status"],
                                    f"shard {bad['start']}:{bad['stop']} (moved to another worker): {bad['reason']}")]
            for k, p in enumerate(parts):
                per_shard[k].append(p["solve_s"])
            if any(p["reprepared"] for p in parts):
                reprepared.append(r)
        phase("accuracy")
        result = SolveResult(u_final=u_final, status=_concat(parts, "traj_status"),
                             accepted=_concat(parts, "accepted"), rejected=_concat(parts, "rejected"),
                             rhs_evals=_concat(parts, "rhs_evals"), notes=parts[0]["notes"])
        max_err, scaled_err, accuracy_note = accuracy(ref, ref_note, result, *accuracy_tolerances(cell.spec))
        failed, failed_note = trajectory_failures(result, cell.spec.n)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row
        return [failure_row(cell, context, started_at, *classify_exception(exc))]
    finally:
        cluster.run_on_workers(release_shard, token)

    slowest = max(range(len(infos)), key=lambda k: infos[k]["first_call_s"])
    overhead = [t - max(s[r] for s in per_shard) for r, t in enumerate(samples)]
    for info in infos:
        cluster.note_worker(info["worker"])  # its fingerprint into workers.json
    shards_info = [{"start": a, "stop": b, "worker": parts[k]["worker"],
                    "first_call_s": infos[k]["first_call_s"],
                    "solve_s": per_shard[k]} for k, (a, b) in enumerate(bounds)]
    timing = {"repeats_done": len(samples), "warmup_calls": cell.warmups, "shards": shards_info,
              "overhead_s": overhead, "shards_reprepared": reprepared,
              "timer": "time.perf_counter on the client around dispatch, the shards' run+sync+fetch, "
                       "transfer and concatenation"}
    shared = base_row(cell, context, started_at)
    first_call = infos[slowest]["first_call_s"]
    shared.update({
        "step_control": infos[0]["step_control"],
        "first_call_s": first_call,
        "compile_s": max(0.0, first_call - statistics.median(per_shard[slowest])),
        "launch_counter": "not counted: sharded cell",
        "steps_mean": _stat(result.accepted, "mean"), "steps_max": _stat(result.accepted, "max"),
        "rejected_mean": _stat(result.rejected, "mean"),
        "rhs_evals_mean": _stat(result.rhs_evals, "mean"), "rhs_evals_max": _stat(result.rhs_evals, "max"),
        "max_rel_err": max_err, "max_scaled_err": scaled_err, "failed_trajectories": float(failed),
        "settings": settings_json(cell, infos[0]["settings"], result.notes, None, timing),
    })
    notes = "; ".join(x for x in (failed_note, accuracy_note) if x)
    if failed == cell.spec.n:
        return [dict(shared, status="failed", reason=notes, repeat=-1, time_s=statistics.median(samples))]
    return [dict(shared, status="ok", reason=notes, repeat=i, time_s=t, device_time_s=math.nan)
            for i, t in enumerate(samples)]


__all__ = ["split", "shard_cell", "refusal", "setup_shard", "solve_shard", "release_shard",
           "run_sharded_cell"]
