"""The events section of a run's report (kind "event", problems.events_core).

Report hook (harness.report.sections.SECTIONS): ``report_section(run_dir, cells)`` and
``readme_paragraph(run_dir, cells)``, from the run's cell table and its results rows (the event
columns of harness.results.schema: events_mean, event_count_errors, max_event_t_err). Every
number is read from the run; the finding is each library's median time over the fused kernel's
at the largest N both ran, per problem.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.report.figures.style import format_number
from harness.report.inputs import load_results
from harness.results.cells import timed_cells

EVENT_COLUMNS = ("events_mean", "events_max", "event_count_errors", "max_event_t_err")
KEYS = ["problem", "backend", "variant", "n", "dtype"]


def summary(run_dir: Path, cells: pd.DataFrame) -> pd.DataFrame:
    """Timed event cells: median time, accuracy, steps and event columns per cell."""
    s = timed_cells(cells, "event")
    if not len(s):
        return s
    rows = load_results(Path(run_dir))
    have = [c for c in EVENT_COLUMNS if c in rows.columns]
    ev = rows[rows["status"].eq("ok")].groupby(KEYS, dropna=False)[have].first().reset_index() if have else None
    s = s[[*KEYS, "time_median_s", "max_rel_err", "steps_mean", "step_control"]]
    if ev is not None:
        s = s.merge(ev, on=KEYS, how="left")
    return s.sort_values(KEYS, kind="mergesort").reset_index(drop=True)


def ratios(summ: pd.DataFrame) -> list[tuple[str, str, int, float]]:
    """(problem, backend, N, backend time / fused time) at the largest N both ran."""
    out = []
    for problem, g in summ.groupby("problem"):
        fused = g[g["backend"].eq("fused") & g["variant"].fillna("").eq("")]
        for backend, p in g[~g["backend"].eq("fused")].groupby("backend"):
            common = sorted(set(fused["n"]) & set(p["n"]))
            if not common:
                continue
            n = common[-1]
            tf = float(fused[fused["n"].eq(n)]["time_median_s"].iloc[0])
            tp = float(p[p["n"].eq(n)]["time_median_s"].iloc[0])
            out.append((problem, backend, int(n), tp / tf))
    return out


def report_section(run_dir: Path, cells: pd.DataFrame) -> str | None:
    summ = summary(run_dir, cells)
    if not len(summ):
        return None
    lines = ["## Events: per-trajectory callbacks, tstops and dense saving", "",
             "The fused kernel handles each trajectory's events in its own thread (condition located on the "
             "Tsit5 interpolant, affect applied, controller continued); the array replica cuts its one shared "
             "step at every event of any trajectory; diffrax restarts `diffeqsolve` at each event per "
             "trajectory under `vmap`; torchdiffeq restarts `odeint_event` for the whole batch at every "
             "event. Accuracy: event times and states against closed forms (bouncing ball, doses) and "
             "SciPy (Lorenz plane); `count err` = trajectories whose number of events differs.", ""]
    found = ratios(summ)
    if found:
        lines.append("Finding (median time over the fused kernel's at the largest N both ran): " + "; ".join(
            f"{problem}: {backend} {r:.3g}x at N={n:,}" for problem, backend, n, r in found) + ".")
        lines.append("")
    lines += ["| problem | backend | N | dtype | median s | steps | events/traj | count err | max rel err |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in summ.itertuples(index=False):
        lines.append(f"| {r.problem} | {r.backend} | {int(r.n):,} | {r.dtype} | {format_number(r.time_median_s)} | "
                     f"{format_number(r.steps_mean)} | {format_number(getattr(r, 'events_mean', float('nan')))} | "
                     f"{format_number(getattr(r, 'event_count_errors', float('nan')))} | {format_number(r.max_rel_err)} |")
    return "\n".join(lines) + "\n"


def readme_paragraph(run_dir: Path, cells: pd.DataFrame) -> str | None:
    summ = summary(run_dir, cells)
    found = ratios(summ) if len(summ) else []
    if not found:
        return None
    parts = "; ".join(f"{problem}: {backend} {r:.3g}x the fused kernel's time at N={n:,}" for problem, backend, n, r in found)
    return ("**Events** (per-trajectory callbacks, tstops, dense saving; run "
            f"`{Path(run_dir).name}`): {parts}. Each row carries its event counts and accuracy against "
            "closed forms / SciPy (report.md).")
