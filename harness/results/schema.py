"""The results schema: one tidy row per (cell, timed repeat); a failed cell is one row.

Readers join on KEY_COLUMNS and ignore columns they do not know. Bump SCHEMA_VERSION when a
column changes meaning; adding a column does not require it.
"""
from __future__ import annotations

import pandas as pd

SCHEMA_VERSION = 1

#: What identifies a cell. Figures and comparisons join on these, never on row order.
KEY_COLUMNS = ("problem", "backend", "variant", "method", "mode", "dtype", "n", "device",
               "dt", "rtol", "atol", "threads", "shards")
_N_INDEX = KEY_COLUMNS.index("n")

#: Every column, with its pandas dtype. "string" columns may be empty; floats may be NaN.
COLUMNS: dict[str, str] = {
    "schema_version": "int64",
    "run_id": "string",
    "suite": "string",
    "problem": "string",
    "backend": "string",
    "variant": "string",          # a backend's named option; "" is its default
    "method": "string",
    "mode": "string",             # fixed | adaptive
    "step_control": "string",     # none | per-trajectory | lockstep | shared | serial
    "dtype": "string",
    "n": "int64",
    "device": "string",           # cpu | gpu
    "dt": "float64",              # fixed step, or dt0 when adaptive
    "rtol": "float64",
    "atol": "float64",
    "threads": "Int64",           # CPU threads the cell was given (resolved; <NA> in older runs)
    # K: the ensemble was split into K contiguous shards, each solved on a Dask worker, and the
    # time is the client's wall time including dispatch and gather (harness.run.shards); <NA>: solved
    # whole in one process (every run written before it existed).
    "shards": "Int64",
    "status": "string",           # see STATUSES
    "reason": "string",           # why a cell is not "ok"
    "repeat": "int64",            # 0..repeats-1; -1 for a failed cell's single row
    "time_s": "float64",          # host wall time of run + sync
    "device_time_s": "float64",   # CUDA-event time on a GPU, else NaN
    "cpu_util": "float64",        # process CPU time (all threads) / wall time over the repeats
    # The load the timed repeats ran under (harness.measure.load): the 1-minute load average just
    # before and after them, other processes' runnable threads (the larger of the two counts), the
    # fraction of the CPU time the hypervisor gave other guests meanwhile (steal; NaN off a VM's
    # Linux and in runs made before it), and whether either wanted more than the cell could spare.
    # Empty in runs made before.
    "load_before": "float64",
    "load_after": "float64",
    "others_runnable": "float64",
    "steal": "float64",
    "contended": "boolean",
    "compile_s": "float64",       # first call (compile + run) minus the median repeat; see harness.measure.clock
    "first_call_s": "float64",    # the first call's wall time, as measured
    "launches": "float64",        # device kernel launches (GPU) / host array ops (CPU) per solve
    "launch_counter": "string",   # how `launches` was measured
    "steps_mean": "float64",      # accepted steps per trajectory
    "steps_max": "float64",
    "rejected_mean": "float64",
    "rhs_evals_mean": "float64",
    "rhs_evals_max": "float64",
    "max_rel_err": "float64",     # vs the float64 reference subsample (see problems.reference)
    # The primary accuracy column: max over components and reference trajectories of
    # |u - ref| / (atol + rtol*|ref|) (problems.reference.max_scaled_error), with the solve's
    # rtol/atol; fixed-mode cells (no tolerances) use the problem's default rtol/atol. Absent
    # (NaN) in runs made before it existed.
    "max_scaled_err": "float64",
    "failed_trajectories": "float64",  # trajectories whose status is not SUCCESS
    # Event problems (problems.events_core; NaN elsewhere): events per trajectory (mean, max),
    # trajectories whose event count differs from the reference (ambiguous ones left out), and
    # the largest event-time error in units of the time span.
    "events_mean": "float64",
    "events_max": "float64",
    "event_count_errors": "float64",
    "max_event_t_err": "float64",
    "settings": "string",         # JSON: every setting the backend used
    "started_at": "string",       # ISO time the cell started
}

#: Cell statuses. "ok" cells have timed repeats; others have one row with a reason.
#: "skipped": not run for lack of time (run --budget-s); --resume runs it (harness.run.gates).
STATUSES = ("ok", "unsupported", "unavailable", "error", "timeout", "oom", "failed", "skipped")

REQUIRED = ("schema_version", "run_id", "problem", "backend", "method", "mode", "dtype", "n",
            "device", "status", "reason", "repeat", "time_s", "compile_s", "launches",
            "steps_mean", "steps_max", "rhs_evals_mean", "max_rel_err")


def series_of(key: tuple) -> tuple:
    """A cell key (KEY_COLUMNS order) without its N: the cells of one curve of a scaling plot."""
    return key[:_N_INDEX] + key[_N_INDEX + 1:]


class SchemaError(ValueError):
    pass


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Add missing known columns (as NA) and cast known ones; unknown columns are kept."""
    df = df.copy()
    for col, typ in COLUMNS.items():
        if col not in df.columns:
            df[col] = pd.Series([pd.NA] * len(df), dtype=typ) if typ == "string" else pd.Series([float("nan")] * len(df))
        try:
            df[col] = df[col].astype(typ)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"column {col!r} cannot be read as {typ}: {exc}") from None
    return df


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Raise SchemaError unless ``df`` is a valid, non-empty results table; return it conformed."""
    if len(df) == 0:
        raise SchemaError("the results table has no rows")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise SchemaError(f"missing columns: {', '.join(missing)}")
    df = conform(df)
    bad = sorted(set(df["status"].dropna()) - set(STATUSES))
    if bad:
        raise SchemaError(f"unknown status values: {bad}")
    if df["schema_version"].isna().any() or (df["schema_version"] > SCHEMA_VERSION).any():
        raise SchemaError(f"schema_version must be <= {SCHEMA_VERSION}")
    ok = df["status"] == "ok"
    if (ok & ~(df["time_s"] > 0)).any():
        raise SchemaError("an 'ok' row has no positive time_s")
    if ((~ok) & df["reason"].fillna("").eq("")).any():
        raise SchemaError("a failed row has no reason")
    if (df["n"] <= 0).any():
        raise SchemaError("n must be positive")
    for col in ("max_rel_err", "max_scaled_err"):  # NaN: not measured (or an older run)
        if (df[col] < 0).any():
            raise SchemaError(f"{col} must not be negative")
    return df
