"""The integrity rules of a run folder: what ``python -m harness check`` certifies besides the
accuracy bounds (those are harness.measure.accuracy's).

A results table is sound when

* the file is whole: its header is the schema's, no line is cut (``cut-line``) and every row has
  every field (``fields``), and it validates against the schema (``schema``);
* it is the table the run wrote: the SHA-256 that ``environment.json`` recorded when the last
  session closed matches the file (``checksum``), so an edit is caught even when it is plausible;
* every row is plausible: one run id, the run's (``run-id``); finite positive times (``time``);
  non-negative step, rhs and launch counts (``counts``); ``cpu_util`` within [0, threads +
  margin] (``cpu-util``); ``threads`` as its settings record (``threads``); an ok row without a
  measured error says why in its reason (``accuracy-nan``);
* every cell is complete as the resume code defines it (harness.results.store.cell_complete): one
  row of a failed cell, or repeats 0..R-1 once each (``repeats``, ``duplicate``);
* the cells are the run's plan: every cell a session selected is in the table and complete, and
  no other cell is (``planned``); the last session finished rather than being interrupted
  (``unfinished``). ``partial=True`` accepts an unfinished run (a GPU session cut at its budget:
  "skipped" cells, an interrupted sweep) but still checks every row it holds.

Each failure is one line: where (the cell, or "table"), the rule, and what is wrong.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.results.schema import COLUMNS, SchemaError, validate
from harness.results.store import (CSV_NAME, cell_complete, cell_key, last_line_cut, read_results,
                                   table_sha256)

ENV_NAME = "environment.json"
#: cpu_util is process CPU time over wall time: the committed runs reach 3.7 x threads (XLA and
#: the compiler keep threads of their own), so the bound is generous; 50 on 2 threads is an edit.
CPU_UTIL_FACTOR = 4.0
CPU_UTIL_MARGIN = 2.0
COUNT_COLUMNS = ("steps_mean", "steps_max", "rejected_mean", "rhs_evals_mean", "rhs_evals_max",
                 "launches", "failed_trajectories")
TIME_COLUMNS = ("compile_s", "first_call_s", "device_time_s")


def cell_label(row: dict[str, Any]) -> str:
    """A cell as a failure line names it: problem backend[variant] method mode dtype N threads."""
    variant = f"[{row.get('variant')}]" if row.get("variant") else ""
    threads = f" threads={row.get('threads')}" if row.get("threads") not in (None, "") else ""
    shards = f" shards={row.get('shards')}" if row.get("shards") not in (None, "") else ""
    return (f"{row.get('problem')} {row.get('backend')}{variant} {row.get('method')} {row.get('mode')} "
            f"{row.get('dtype')} N={row.get('n')}{threads}{shards}")


def load_environment(run_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """environment.json of ``run_dir``, or (None, the failure line)."""
    path = Path(run_dir) / ENV_NAME
    if not path.is_file():
        return None, [f"table: environment: no {ENV_NAME} (not a folder written by `harness run`)"]
    try:
        env = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, [f"table: environment: {ENV_NAME} is unreadable ({' '.join(str(exc).split())})"]
    if not isinstance(env, dict):
        return None, [f"table: environment: {ENV_NAME} is not a JSON object"]
    return env, []


def file_failures(path: Path) -> list[str]:
    """The rules of the file itself: header, a cut last line, rows with too few or many fields."""
    out = []
    if last_line_cut(path):
        out.append("table: cut-line: the last line has no newline (a write was cut off by a kill "
                   "or a full disk); it is not a row")
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        return out + [f"table: header: not a CSV text file ({type(exc).__name__})"]
    # a run written before a column existed lacks it (adding a column keeps the schema version)
    header = lines[0] if lines else []
    unknown = [c for c in header if c not in COLUMNS]
    if not header or unknown or [c for c in COLUMNS if c in header] != header:
        out.append(f"table: header: the columns are not the schema's ({', '.join(unknown) or 'order'})")
        return out
    for i, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(header):
            out.append(f"table: fields: line {i} has {len(fields)} fields, the header {len(header)}")
    return out


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _settings_threads(row: dict[str, Any]) -> int | None:
    try:
        return int(json.loads(row.get("settings") or "{}")["harness"]["threads_used"]["threads"])
    except (ValueError, KeyError, TypeError):
        return None


def row_failures(row: dict[str, Any], run_id: str | None) -> list[str]:
    """The rules of one row (``row``: a dict of the CSV's strings)."""
    where, rule = cell_label(row), []
    if run_id is not None and row.get("run_id") != run_id:
        rule.append(f"run-id: row says {row.get('run_id')!r}, the run is {run_id!r}")
    ok = row.get("status") == "ok"
    t = _f(row.get("time_s"))
    if ok and not (math.isfinite(t) and t > 0):
        rule.append(f"time: time_s {row.get('time_s')!r} is not a finite positive time")
    for col in TIME_COLUMNS:
        # compile_s is a difference (first call minus the median repeat) and may be negative; a
        # CUDA-event time may round to 0 for a tiny kernel
        v = _f(row.get(col))
        floor_ok = col == "compile_s" or (v >= 0 if col == "device_time_s" else v > 0)
        if ok and not math.isnan(v) and not (math.isfinite(v) and floor_ok):
            rule.append(f"time: {col} {row.get(col)!r} is not a finite time")
    for col in COUNT_COLUMNS:
        v = _f(row.get(col))
        if not math.isnan(v) and (v < 0 or not math.isfinite(v)):
            rule.append(f"counts: {col} {row.get(col)!r} is negative or infinite")
    util, threads = _f(row.get("cpu_util")), _f(row.get("threads"))
    if not math.isnan(util):
        top = CPU_UTIL_FACTOR * (threads if threads > 0 else 1.0) + CPU_UTIL_MARGIN
        if not 0 <= util <= top:
            rule.append(f"cpu-util: {util:g} is outside [0, {top:g}] for {row.get('threads') or '?'} threads")
    recorded = _settings_threads(row)
    if recorded is not None and threads > 0 and recorded != int(threads):
        rule.append(f"threads: the row says {int(threads)}, its settings {recorded}")
    if ok and math.isnan(_f(row.get("max_rel_err"))) and math.isnan(_f(row.get("max_scaled_err"))) \
            and not (row.get("reason") or "").strip():
        rule.append("accuracy-nan: no error measured and no reason given")
    return [f"{where} repeat {row.get('repeat')}: {r}" for r in rule]


def cell_failures(rows: list[dict[str, str]]) -> list[str]:
    """The rules of one cell's rows: complete (store.cell_complete), no repeat twice."""
    where = cell_label(rows[0])
    repeats = [r.get("repeat") for r in rows]
    dup = sorted({r for r in repeats if repeats.count(r) > 1})
    if dup:
        return [f"{where}: duplicate: repeat {', '.join(dup)} appears more than once"]
    if rows[0].get("status") == "skipped" or cell_complete(rows):
        return []  # skipped: recorded as not run; `planned` judges whether that is allowed
    return [f"{where}: repeats: the cell is incomplete (statuses {sorted({r['status'] for r in rows})}, "
            f"repeats {', '.join(sorted(repeats, key=lambda x: int(_f(x)) if x else -9))})"]


def plan_failures(env: dict[str, Any], by_key: dict[tuple, list[dict[str, str]]],
                  partial: bool) -> list[str]:
    """The table against what environment.json recorded: planned cells, sessions, statuses."""
    sessions = [s for s in env.get("sessions", []) if isinstance(s, dict)]
    out = []
    last = sessions[-1] if sessions else {}
    if not partial and (not sessions or last.get("interrupted") or not last.get("finished_at")):
        out.append("table: unfinished: the last session was interrupted or never closed "
                   "(`harness run --resume` completes it; `check --partial` accepts it)")
    complete = {k for k, rs in by_key.items() if rs[0]["status"] != "skipped" and cell_complete(rs)}
    planned = [s["cells_planned"] for s in sessions if isinstance(s.get("cells_planned"), list)]
    if planned:
        keys = {tuple(k) for p in planned for k in p}
        for k in sorted(set(by_key) - keys, key=str):
            out.append(f"{cell_label(by_key[k][0])}: planned: no session selected this cell")
        if not partial:
            for k in sorted(keys - set(by_key), key=str):
                out.append(f"table: planned: the planned cell {list(k)} has no row")
            for k in sorted((keys & set(by_key)) - complete, key=str):
                out.append(f"{cell_label(by_key[k][0])}: planned: the cell was not run to completion")
        return out
    # runs written before sessions recorded their cells: the counts they did record
    selected = max((int(s.get("cells_selected") or 0) for s in sessions), default=0)
    if not partial and len(complete) < selected:
        out.append(f"table: planned: {len(complete)} complete cells, the run selected {selected}")
    if len(sessions) == 1 and isinstance(last.get("statuses"), dict) and not partial:
        table = defaultdict(int)
        for rs in by_key.values():
            table[rs[0]["status"]] += 1
        if dict(table) != {k: int(v) for k, v in last["statuses"].items()}:
            out.append(f"table: planned: cells by status {dict(sorted(table.items()))}, the session "
                       f"recorded {dict(sorted(last['statuses'].items()))}")
    return out


def integrity_failures(run_dir: Path, partial: bool = False):
    """(the results as a validated DataFrame or None, one line per failure) for ``run_dir``."""
    path = Path(run_dir) / CSV_NAME
    out = file_failures(path)
    env, env_out = load_environment(run_dir)
    out += env_out
    if env is not None:
        recorded = env.get("results_sha256")
        if not recorded:
            out.append(f"table: checksum: {ENV_NAME} records no SHA-256 of {CSV_NAME}")
        elif recorded != table_sha256(path):
            out.append(f"table: checksum: {CSV_NAME} was changed after its session closed "
                       f"(its SHA-256 is not the one {ENV_NAME} recorded)")
    if any(": header:" in line for line in out):
        return None, out  # not a results table: its rows cannot be judged
    df = None
    if not any(": cut-line:" in line for line in out):
        try:
            df = validate(read_results(path))
        except (SchemaError, ValueError) as exc:
            out.append(f"table: schema: {' '.join(str(exc).split())}")
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if None not in r and None not in r.values()]
    run_id = env.get("run_id") if env else None
    by_key: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        out += row_failures(r, run_id)
        try:
            by_key[cell_key(r)].append(r)
        except (TypeError, ValueError):
            out.append(f"{cell_label(r)}: fields: the cell's key cannot be read")
    for rs in by_key.values():
        out += cell_failures(rs)
    if env is not None:
        out += plan_failures(env, by_key, partial)
    return df, out
