"""The events section of a run's report (kind "event", problems.events_core).

Report hook (harness.report.sections.SECTIONS): ``report_section(run_dir, cells)`` and
``readme_paragraph(run_dir, cells)``, from the run's cell table and its results rows (the event
columns of harness.results.schema: events_mean, event_count_errors, max_event_t_err). Every
number is read from the run; the finding is each library's median time over the fused kernel's
at the largest N both ran, per problem. The section draws ``figures/events_time_vs_n.{png,svg,csv}``:
median time per solve against N, one log-log panel per problem, a line per backend (and dtype
where a run has several); the CSV holds exactly the plotted points.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from harness.report.figures.canvas import log_axes, tag, write_files
from harness.report.figures.style import backend_colour, backend_label, format_number
from harness.report.inputs import load_results
from harness.results.cells import timed_cells, untimed_cells

EVENT_COLUMNS = ("events_mean", "events_max", "event_count_errors", "max_event_t_err")
KEYS = ["problem", "backend", "variant", "n", "dtype"]
FIGURE = "events_time_vs_n"


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


def leads(summ: pd.DataFrame) -> list[tuple[str, str, str, list[tuple[int, float]]]]:
    """(problem, dtype, backend, [(N, backend time / fused time) at every N both ran]), the
    fused kernel's default variant against each other backend's fastest variant at that N."""
    out = []
    for (problem, dtype), g in summ.groupby(["problem", "dtype"], sort=True):
        fused = g[g["backend"].eq("fused") & g["variant"].fillna("").eq("")].set_index("n")["time_median_s"]
        for backend, other in g[~g["backend"].eq("fused")].groupby("backend", sort=True):
            best = other.groupby("n")["time_median_s"].min()
            common = sorted(set(fused.index) & set(best.index))
            if common:
                out.append((str(problem), str(dtype), str(backend),
                            [(int(n), float(best[n] / fused[n])) for n in common]))
    return out


def _ratio(r: float) -> str:
    """A time ratio to two or three significant digits, without exponents: 0.046, 2.5, 40, 15,800."""
    if r >= 100:
        return f"{float(f'{r:.3g}'):,.0f}"
    return f"{r:.0f}" if r >= 10 else f"{r:.2g}"


def _lead_text(pairs: list[tuple[int, float]]) -> str:
    """'3.1x at N=8 ... 40x at N=4,096' (every N when there are at most three)."""
    shown = pairs if len(pairs) <= 3 else [pairs[0], pairs[-1]]
    sep = ", " if len(pairs) <= 3 else " ... "
    return sep.join(f"{_ratio(r)}x at N={n:,}" for n, r in shown)


def _fused_top(summ: pd.DataFrame, problem: str, dtype: str) -> str:
    f = summ[summ["problem"].eq(problem) & summ["dtype"].eq(dtype) & summ["backend"].eq("fused")
             & summ["variant"].fillna("").eq("")]
    if f.empty:
        return ""
    top = f.loc[f["n"].idxmax()]
    return f"fused {float(top['time_median_s']):.3g} s at N={int(top['n']):,}"


def finding_lines(summ: pd.DataFrame, several_dtypes: bool) -> list[str]:
    """One line per problem (and dtype): each library's time over the fused kernel's per N."""
    out = []
    by_problem: dict[tuple[str, str], list[str]] = {}
    for problem, dtype, backend, pairs in leads(summ):
        by_problem.setdefault((problem, dtype), []).append(f"{backend} {_lead_text(pairs)}")
    for (problem, dtype), parts in by_problem.items():
        name = problem.replace("_", " ") + (f" ({dtype})" if several_dtypes else "")
        top = _fused_top(summ, problem, dtype)
        out.append(f"{name}: " + "; ".join(parts) + (f" ({top})" if top else ""))
    return out


def _count_errors(summ: pd.DataFrame) -> tuple[int, int]:
    """(ok event rows, trajectories with a wrong event count summed over them)."""
    col = summ["event_count_errors"] if "event_count_errors" in summ else pd.Series(dtype=float)
    return len(summ), int(col.fillna(0).sum())


def _series(r, several_dtypes: bool) -> str:
    variant = f" [{r.variant}]" if isinstance(r.variant, str) and r.variant else ""
    return f"{backend_label(r.backend)}{variant}" + (f" {r.dtype}" if several_dtypes else "")


def write_figure(run_dir: Path, summ: pd.DataFrame) -> Path | None:
    """Median time per solve vs N, one log-log panel per problem, a line per backend (and
    dtype when the run has several)."""
    summ = summ[summ["time_median_s"].notna() & (summ["time_median_s"] > 0)]
    if summ.empty:
        return None
    problems = sorted(summ["problem"].unique())
    several = summ["dtype"].nunique() > 1
    fig = Figure(figsize=(4.2 * len(problems), 3.9))
    axes = fig.subplots(1, len(problems), squeeze=False)[0]
    plotted, handles = [], {}
    for ax, problem in zip(axes, problems):
        g = summ[summ["problem"].eq(problem)]
        for r0, line in g.groupby(["backend", "variant", "dtype"], dropna=False, sort=True):
            line = line.sort_values("n")
            key = _series(pd.Series(dict(zip(["backend", "variant", "dtype"], r0))), several)
            style = "--" if several and r0[2] == "float64" else "-"
            (h,) = ax.plot(line["n"], line["time_median_s"], marker="o", markersize=3.5, linestyle=style,
                           color=backend_colour(str(r0[0])), label=key)
            tag(h, f"{problem}:{key}")
            handles.setdefault(key, h)
            plotted += [{"problem": problem, "series": key, "n": int(n), "time_median_s": float(t),
                         "events_mean": float(e) if e == e else float("nan")}
                        for n, t, e in zip(line["n"], line["time_median_s"],
                                           line.get("events_mean", pd.Series(float("nan"), index=line.index)))]
        log_axes(ax, "trajectories N", "time per solve [s] (median)", problem.replace("_", " "))
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", ncol=min(len(handles), 6),
               fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    data = pd.DataFrame(plotted).sort_values(["problem", "series", "n"], kind="mergesort")
    return write_files(fig, Path(run_dir) / "figures", FIGURE, data, dpi=130)[0]


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
    fig = write_figure(Path(run_dir), summ)
    if fig is not None:
        lines += [f"![events: time per solve vs N](figures/{fig.name})", ""]
    found = finding_lines(summ, summ["dtype"].nunique() > 1)
    if found:
        lines += ["Finding: each library's median time per solve over the fused kernel's, at every N both ran "
                  "(the fused kernel's own time at its largest N in brackets):", ""]
        lines += [f"- {line}." for line in found] + [""]
    untimed = untimed_cells(cells, "event")
    if len(untimed):
        lines += ["Cells without a time (their rows say why): " + "; ".join(
            f"{r.problem} {r.backend} N={int(r.n):,} {r.dtype}: {r.status} ({r.reason})"
            for r in untimed.sort_values(KEYS, kind="mergesort").itertuples(index=False)) + ".", ""]
    rows, wrong = _count_errors(summ)
    lines += [f"Event counts: {wrong} trajectories with a wrong number of events over the {rows} timed cells "
              "(ambiguous ones, an event within the dtype's window of the end, left out).", ""]
    lines += ["| problem | backend | N | dtype | median s | steps | events/traj | count err | max rel err |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in summ.itertuples(index=False):
        lines.append(f"| {r.problem} | {r.backend} | {int(r.n):,} | {r.dtype} | {format_number(r.time_median_s)} | "
                     f"{format_number(r.steps_mean)} | {format_number(getattr(r, 'events_mean', float('nan')))} | "
                     f"{format_number(getattr(r, 'event_count_errors', float('nan')))} | {format_number(r.max_rel_err)} |")
    return "\n".join(lines) + "\n"


def readme_paragraph(run_dir: Path, cells: pd.DataFrame) -> str | None:
    summ = summary(run_dir, cells)
    found = finding_lines(summ, summ["dtype"].nunique() > 1) if len(summ) else []
    if not found:
        return None
    rows, wrong = _count_errors(summ)
    return ("**Events** (per-trajectory callbacks, tstops, dense saving; run "
            f"`{Path(run_dir).name}`): the fused kernel handles each trajectory's events in its own thread, "
            "the others restart or cut a shared step at every event. Time per solve over the fused kernel's: "
            + "; ".join(found) + f". {wrong} trajectories with a wrong event count over {rows} timed cells; every "
            "row carries its event counts and accuracy against closed forms / SciPy (report.md).")
