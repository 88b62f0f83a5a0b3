"""The scaling section of a run's report and its README paragraph: sharded ensembles over Dask
workers (harness.run.shards), strong and weak scaling, and the paper's MPI run scaled down.

Report hook (harness.report.sections.SECTIONS): ``report_section(run_dir, cells) -> str | None``,
None when the run's cell table has no sharded cell. It writes ``figures/scaling.{png,svg,csv}`` (the CSV holds
exactly the plotted points): time per solve against the number of workers K for

* strong scaling: the N that was run at the most K (ideal: T(K=1) / K), with the unsharded
  solves of that N in one process (1 thread, every core) drawn as horizontal references;
* weak scaling: the trajectories per worker (N / K) run at the most K (ideal: flat).

The paper's MPI run (problem ``lorenz_mpi``) is a table row: its time, the slowest shard's solve
and the distribution overhead. The artifact's data (results/paper_data) holds no time for the
paper's 2^30 run, so none is drawn beside it.

README hook (harness.report.sections.SECTIONS): ``readme_paragraph(run_dir, cells)`` of a scaling run
named to the README generator.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from harness.report.figures.canvas import write_files
from harness.report.figures.style import backend_colour, format_number
from harness.results.cells import timed_cells

#: The problem of the paper's multi-node run (problems.lorenz.LORENZ_MPI).
MPI_PROBLEM = "lorenz_mpi"
PAPER_MPI_N = 2 ** 30


def _harness(settings: str) -> dict:
    try:
        return json.loads(settings or "{}").get("harness", {})
    except ValueError:
        return {}


def applies(cells: pd.DataFrame) -> bool:
    """True when the cell table has a sharded cell (its ``shards`` key is text, "" when unsharded)."""
    return bool(cells["shards"].ne("").any())


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per ok cell of a run with sharded cells: problem, mode, n, K (0: unsharded),
    threads, median/min time, the median over repeats of the slowest shard's solve and of the
    overhead (time minus that), steps, accuracy. Empty when the run has no sharded cell."""
    if not applies(cells):
        return pd.DataFrame()
    ok = timed_cells(cells)
    harness = ok["settings"].map(_harness)
    out = ok[["problem", "backend", "mode", "n", "threads"]].assign(
        K=pd.to_numeric(ok["shards"], errors="coerce").fillna(0).astype(int), time_s=ok["time_median_s"], time_min_s=ok["time_min_s"],
        slowest_shard_s=harness.map(_slowest_shard), overhead_s=harness.map(_median_overhead),
        steps_mean=ok["steps_mean"], max_scaled_err=ok["max_scaled_err"], repeats=ok["repeats"])
    return out.sort_values(["problem", "n", "K", "threads", "backend", "mode"],
                           kind="mergesort").reset_index(drop=True)


def _slowest_shard(h: dict) -> float:
    """Median over the repeats of the slowest shard's solve time (NaN without shard timings)."""
    if not h.get("shards"):
        return math.nan
    return float(pd.Series([max(s) for s in zip(*[x["solve_s"] for x in h["shards"]])]).median())


def _median_overhead(h: dict) -> float:
    """Median over the repeats of the distribution overhead (NaN when not recorded)."""
    overhead = h.get("overhead_s") or []
    return float(pd.Series(overhead).median()) if overhead else math.nan


def strong_and_weak(summ: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(strong, weak, baselines): the sharded cells of the N run at the most K, those of the
    per-worker size run at the most K, and the unsharded cells at the strong N."""
    fixed = summ[(summ["problem"] != MPI_PROBLEM) & (summ["K"] > 0)]
    if fixed.empty:
        return fixed, fixed, fixed
    strong_n = fixed.groupby("n")["K"].nunique().sort_values(kind="mergesort").index[-1]
    strong = fixed[fixed["n"] == strong_n]
    per = fixed.assign(per_worker=fixed["n"] // fixed["K"])
    weak_size = per.groupby("per_worker")["K"].nunique().sort_values(kind="mergesort").index[-1]
    weak = per[per["per_worker"] == weak_size]
    base = summ[(summ["problem"] == strong["problem"].iloc[0]) & (summ["K"] == 0) & (summ["n"] == strong_n)]
    return strong, weak, base


def write_figure(run_dir: Path, strong: pd.DataFrame, weak: pd.DataFrame, base: pd.DataFrame) -> Path | None:
    if strong.empty:
        return None
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    points = []
    colour = backend_colour("fused")
    ax = axes[0]
    t1 = strong.loc[strong["K"] == strong["K"].min(), "time_s"].iloc[0] * strong["K"].min()
    ax.plot(strong["K"], strong["time_s"], "o-", color=colour, label="sharded: client wall time")
    ax.plot(strong["K"], strong["slowest_shard_s"], "s:", color=colour, alpha=0.6, label="slowest shard's solve")
    ax.plot(strong["K"], [t1 / k for k in strong["K"]], "--", color="#7f7f7f", label="ideal T(1)/K")
    for _, b in base.iterrows():
        ax.axhline(b["time_s"], color="#000000", linestyle="-." if b["threads"] > 1 else ":", linewidth=1,
                   label=f"unsharded, one process, {int(b['threads'])} thread(s)")
        points.append({"panel": "strong", "series": f"unsharded {int(b['threads'])} threads", "K": 0,
                       "n": int(b["n"]), "time_s": b["time_s"]})
    ax.set_title(f"strong scaling: N = {int(strong['n'].iloc[0]):,}")
    ax = axes[1]
    ax.plot(weak["K"], weak["time_s"], "o-", color=colour, label="sharded: client wall time")
    ax.plot(weak["K"], weak["slowest_shard_s"], "s:", color=colour, alpha=0.6, label="slowest shard's solve")
    ax.axhline(weak["time_s"].iloc[0], color="#7f7f7f", linestyle="--", label="ideal: flat")
    ax.set_title(f"weak scaling: {int(weak['per_worker'].iloc[0]):,} trajectories per worker")
    for panel, frame in (("strong", strong), ("weak", weak)):
        points += [{"panel": panel, "series": "sharded", "K": int(r["K"]), "n": int(r["n"]), "time_s": r["time_s"],
                    "slowest_shard_s": r["slowest_shard_s"], "overhead_s": r["overhead_s"]}
                   for _, r in frame.iterrows()]
    for ax in axes:
        ax.set_xlabel("Dask workers K (one shard each)")
        ax.set_ylabel("time per solve (s)")
        ax.set_xticks(sorted(set(strong["K"]) | set(weak["K"])))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Fused kernel sharded over Dask workers (Lorenz, Tsit5 fixed, float32; one thread per worker)",
                 fontsize=9)
    fig.tight_layout()
    return write_files(fig, Path(run_dir) / "figures", "scaling", pd.DataFrame(points), dpi=130)[0]


def _cores(run_dir: Path) -> str:
    try:
        env = json.loads((Path(run_dir) / "environment.json").read_text())
        cpu = env.get("cpu", {})
        return f"{cpu.get('usable_cores', '?')} cores ({cpu.get('model', 'CPU')})"
    except (OSError, ValueError):
        return "this machine"


def _fmt(x: float) -> str:
    return format_number(x, ".3g", "n/a")


def report_section(run_dir: Path, cells: pd.DataFrame) -> str | None:
    """The scaling section (None when the cell table has no sharded cell)."""
    summ = summary(cells)
    if summ.empty:
        return None
    strong, weak, base = strong_and_weak(summ)
    png = write_figure(run_dir, strong, weak, base)
    lines = ["## Sharded ensembles on Dask workers (strong and weak scaling)", ""]
    lines += [f"Each sharded cell splits its N trajectories into K contiguous shards, one per Dask worker "
              f"(LocalCluster, one process and one thread each), and gathers the final states in order. "
              f"Time = the client's wall time per solve including dispatch and gather; the slowest "
              f"shard's own solve is beside it, the difference is the cost of distribution. Machine: "
              f"{_cores(run_dir)}: with K above the core count, workers share cores, so this shows the "
              f"overhead of dispatch and gather and scaling up to the core count, not network costs "
              f"between nodes or scaling beyond one machine (docs/cluster.md has the multi-node recipe).", ""]
    if png is not None:
        lines += [f"![scaling](figures/{png.name})", ""]
    lines += ["| problem | mode | N | K (0: whole) | threads | time (s) | slowest shard (s) | overhead (s) | steps | max scaled err |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in summ.iterrows():
        lines.append(f"| {r['problem']} | {r['mode']} | {int(r['n']):,} | {int(r['K'])} | {int(r['threads'])} | "
                     f"{_fmt(r['time_s'])} | {_fmt(r['slowest_shard_s'])} | {_fmt(r['overhead_s'])} | "
                     f"{_fmt(r['steps_mean'])} | {_fmt(r['max_scaled_err'])} |")
    mpi = summ[summ["problem"] == MPI_PROBLEM]
    if len(mpi):
        r = mpi.iloc[0]
        lines += ["", f"The paper's MPI run (2^30 = {PAPER_MPI_N:,} trajectories, t in [0, 10], adaptive Tsit5 "
                      f"from dt = 0.1, DiffEqGPU's default tolerances, 5 nodes x 1 V100) scaled to N = "
                      f"{int(r['n']):,} on K = {int(r['K'])} workers here: {_fmt(r['time_s'])} s per solve "
                      f"(slowest shard {_fmt(r['slowest_shard_s'])} s, {_fmt(r['steps_mean'])} steps per "
                      f"trajectory). The paper's artifact data holds no time for its 2^30 run, so none is "
                      f"shown beside it."]
    return "\n".join(lines) + "\n"


def readme_paragraph(run_dir: Path, cells: pd.DataFrame) -> str | None:
    """One paragraph from the scaling run in ``run_dir`` (None when it has no sharded cell)."""
    run = Path(run_dir)
    summ = summary(cells)
    if summ.empty:
        return None
    strong, _weak, base = strong_and_weak(summ)
    parts = []
    if len(strong):
        ks = ", ".join(f"K = {int(r['K'])}: {_fmt(r['time_s'])} s" for _, r in strong.iterrows())
        parts.append(f"strong scaling of the fused kernel at N = {int(strong['n'].iloc[0]):,} (Lorenz fixed, "
                     f"one thread per worker): {ks}")
        if len(base):
            parts.append("unsharded in one process: " + ", ".join(
                f"{int(b['threads'])} thread(s) {_fmt(b['time_s'])} s" for _, b in base.iterrows()))
        over = strong["overhead_s"].dropna()
        if len(over):
            parts.append(f"distribution overhead (dispatch + gather) {_fmt(float(over.median()) * 1e3)} ms per solve")
    mpi = summ[summ["problem"] == MPI_PROBLEM]
    if len(mpi):
        r = mpi.iloc[0]
        parts.append(f"the paper's 2^30 MPI run scaled to N = {int(r['n']):,} (t in [0, 10]) took "
                     f"{_fmt(r['time_s'])} s on {int(r['K'])} workers")
    rel = run.name
    return (f"**Sharded ensembles on Dask** (`python -m harness run --suite scaling`, run `{rel}`, "
            f"{_cores(run)}): " + "; ".join(parts) + ". Figure and table: the run's report.md.")
