"""The system-size section (issue 15): where the fused kernel stops winning as d grows.

Report hook (harness.report.sections.SECTIONS): ``report_section(run_dir, cells) -> str | None``
(None without Lorenz-96 cells in the run's cell table). It writes ``figures/sizes_winner.{png,svg,csv}`` (the fastest backend over
(d, N) and its lead over the runner-up) and ``figures/sizes_per_state_step.{png,svg,csv}`` (time
per trajectory-step per state vs d), and states from the data where the fused kernel stops being
the fastest (the crossover). README hook (harness.report.sections.SECTIONS): ``readme_paragraph(run_dir, cells)``
of a ``sizes`` run named to the README generator.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from harness.report.figures.canvas import write_files
from harness.report.figures.style import backend_colour
from harness.results.cells import timed_cells
from solvers.fused.looped import LOOPED_MIN_STATES

_DIM = re.compile(r"lorenz96-([0-9]+)\Z")
#: The talk's (and NonlinearSolve.jl's GPU tutorial's) rule of thumb for kernel generation.
RULE_OF_THUMB = 200


def applies(cells: pd.DataFrame) -> bool:
    """True when the cell table has a Lorenz-96 cell."""
    return bool(cells["problem"].str.fullmatch(_DIM).any())


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """The Lorenz-96 cells of a cell table with their dimension ``d`` and series label: median
    time per cell, and per trajectory-step per state."""
    ok = timed_cells(cells)
    d = ok["problem"].str.extract(_DIM, expand=False)
    s = ok[d.notna()].rename(columns={"time_median_s": "median_s", "steps_mean": "steps",
                                      "max_scaled_err": "err"})
    s["d"] = d[d.notna()].astype(int)
    s["series"] = s["backend"] + s["variant"].map(lambda v: f" [{v}]" if v else "")
    keys = ["mode", "d", "n", "series", "backend"]
    s = s[[*keys, "dtype", "device", "threads", "dt", "rtol", "median_s", "steps", "err"]]
    s["ns_per_state_step"] = s["median_s"] * 1e9 / (s["n"] * s["steps"].clip(lower=1) * s["d"])
    return s.sort_values([*keys, "dtype", "device", "threads", "dt", "rtol"], kind="mergesort").reset_index(drop=True)


def winners(s: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, d, n): the fastest series, the runner-up and the fused kernel's ratio to the best
    other backend (> 1: fused faster)."""
    out = []
    for (mode, d, n), g in s.groupby(["mode", "d", "n"]):
        g = g.sort_values("median_s")
        fused = g[g["backend"] == "fused"]
        others = g[g["backend"] != "fused"]
        out.append({
            "mode": mode, "d": d, "n": n, "winner": g.iloc[0]["series"],
            "lead": (g.iloc[1]["median_s"] / g.iloc[0]["median_s"]) if len(g) > 1 else float("nan"),
            "best_other": others.iloc[0]["series"] if len(others) else "",
            "fused_speedup": (others.iloc[0]["median_s"] / fused.iloc[0]["median_s"])
            if len(fused) and len(others) else float("nan"),
        })
    return pd.DataFrame(out)


def crossover(w: pd.DataFrame, mode: str) -> tuple[int | None, str]:
    """(smallest d from which fused loses at every N measured there, a sentence) for ``mode``."""
    g = w[(w["mode"] == mode) & w["fused_speedup"].notna()]
    if g.empty:
        return None, f"{mode}: no fused-vs-peer pairs"
    by_d = g.groupby("d")["fused_speedup"]
    lose = sorted(d for d, v in by_d if (v < 1).all())
    win = sorted(d for d, v in by_d if (v >= 1).all())
    ds = sorted(by_d.groups)
    cross = next((d for d in ds if all(x in lose for x in ds if x >= d)), None)
    lo, hi = g["fused_speedup"].min(), g["fused_speedup"].max()
    if cross is None:
        text = (f"{mode}: the fused kernel is fastest at every d measured up to {max(ds)} "
                f"(speed-up over the best other backend {lo:.2g}x to {hi:.2g}x)" if not lose else
                f"{mode}: no clean crossover: fused loses at d = {', '.join(map(str, lose))} but wins "
                f"again above (speed-ups {lo:.2g}x to {hi:.2g}x)")
    else:
        below = [d for d in ds if d < cross]
        text = (f"{mode}: the fused kernel loses to the best other backend at every N from d = {cross} on"
                + (f" (fastest somewhere up to d = {max(below)})" if below else " (at every d measured)")
                + f"; speed-up over the best other backend ranges {lo:.2g}x to {hi:.2g}x")
    mixed = [d for d in ds if d not in lose and d not in win]
    if mixed:
        text += f"; at d = {', '.join(map(str, mixed))} the winner depends on N"
    return cross, text


def _figures(run_dir: Path, s: pd.DataFrame, w: pd.DataFrame) -> list[str]:
    fig_dir = Path(run_dir) / "figures"
    modes = list(dict.fromkeys(s["mode"]))
    # 1. winner over (d, N)
    fig = Figure(figsize=(6 * len(modes), 4.2))
    axes = fig.subplots(1, len(modes), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        g = w[w["mode"] == mode]
        for series, gg in g.groupby("winner"):
            backend = series.split(" ")[0]
            ax.scatter(gg["d"], gg["n"], s=60 + 40 * gg["lead"].clip(upper=10).fillna(1),
                       color=backend_colour(backend), label=series)
            for _, r in gg.iterrows():
                ax.annotate(f"{r['lead']:.2g}x", (r["d"], r["n"]), textcoords="offset points",
                            xytext=(6, 6), fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("state dimension d (Lorenz-96)")
        ax.set_ylabel("ensemble size N")
        ax.set_title(f"fastest backend, Tsit5 {mode} (label: lead over the runner-up)", fontsize=9)
        ax.axvline(RULE_OF_THUMB, color="#999999", linestyle="--", linewidth=1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_files(fig, fig_dir, "sizes_winner", w, dpi=120)
    # 2. time per trajectory-step per state vs d (largest N measured at each d)
    fig = Figure(figsize=(6 * len(modes), 4.2))
    axes = fig.subplots(1, len(modes), squeeze=False)
    plotted = []
    for ax, mode in zip(axes[0], modes):
        g = s[s["mode"] == mode]
        for series, gg in g.groupby("series"):
            gg = gg.sort_values("n").groupby("d").tail(1).sort_values("d")
            ax.plot(gg["d"], gg["ns_per_state_step"], marker="o", label=series,
                    color=backend_colour(series.split(" ")[0]))
            plotted.append(gg.assign(mode=mode))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("state dimension d (Lorenz-96)")
        ax.set_ylabel("ns per trajectory-step per state")
        ax.set_title(f"Tsit5 {mode}, largest N measured at each d", fontsize=9)
        ax.axvline(RULE_OF_THUMB, color="#999999", linestyle="--", linewidth=1)
        ax.legend(fontsize=7)
    fig.tight_layout()
    write_files(fig, fig_dir, "sizes_per_state_step", pd.concat(plotted), dpi=120)
    return ["figures/sizes_winner.png", "figures/sizes_per_state_step.png"]


def report_section(run_dir: Path, cells: pd.DataFrame) -> str | None:
    """The system-size section (None when the cell table has no timed Lorenz-96 cell)."""
    s = summary(cells)
    if s.empty:
        return None
    w = winners(s)
    figs = _figures(run_dir, s, w)
    lines = ["## System size: where the fused kernel stops winning (Lorenz-96, d = "
             f"{s['d'].min()}..{s['d'].max()})", ""]
    for mode in dict.fromkeys(s["mode"]):
        lines.append("* " + crossover(w, mode)[1] + ".")
    lines += ["", f"The rule of thumb under test: kernel generation is ideal up to ~{RULE_OF_THUMB} "
              "ODEs (GPU register space). This run is on a CPU: there the fused kernel's state "
              "lives in vector registers and L1 (looped layout from "
              f"{LOOPED_MIN_STATES} states on, solvers/fused/looped.py), so the CPU crossover "
              "measures dispatch and vectorisation, not GPU registers; the GPU side is the "
              "register/spill/occupancy model of `python -m harness gpu-profile` (docs/sizes.md).", ""]
    lines += [f"![{Path(f).stem}]({f})" for f in figs] + [""]
    lines += gpu_lines()
    lines += ["| mode | d | N | fastest | lead | best other | fused speed-up over it |",
              "|---|---|---|---|---|---|---|"]
    for _, r in w.iterrows():
        lines.append(f"| {r['mode']} | {r['d']} | {r['n']} | {r['winner']} | {r['lead']:.2g}x | "
                     f"{r['best_other']} | {r['fused_speedup']:.2g}x |")
    return "\n".join(lines) + "\n"


def readme_paragraph(run_dir: Path, cells: pd.DataFrame) -> str | None:
    """README paragraph of the ``sizes`` run in ``run_dir`` (None when it has no Lorenz-96 cell)."""
    run = Path(run_dir)
    s = summary(cells)
    if s.empty:
        return None
    w = winners(s)
    parts = [crossover(w, mode)[1] for mode in dict.fromkeys(w["mode"])]
    first = first_spill_d()
    gpu = (f" On sm_90 the fused kernel's state first leaves the registers at d = {first} (static "
           f"machine code, results/gpu-sizes-sm_90); the model puts the H100 crossover with the array "
           f"style there" if first else " No sm_90 kernel spilled up to the largest d profiled")
    return (f"**System size (Lorenz-96).** [`{run.name}`]({run.relative_to(run.parents[1])}/report.md) "
            f"on this CPU: " + "; ".join(parts) + "." + gpu + f", against the rule of thumb of "
            f"~{RULE_OF_THUMB} ODEs (modelled, not measured on a GPU: docs/sizes.md).")


def first_spill_d(path: Path | None = None) -> int | None:
    """The smallest d whose sm_90 fused kernel spills or uses local memory (None: none/no file)."""
    path = Path(path or GPU_PROFILE)
    if not path.is_file():
        return None
    g = pd.read_csv(path)
    spill = g[(g["local_bytes"] > 0) | (g["spill_store_bytes"] > 0)]
    return int(spill["d"].min()) if len(spill) else None


#: The committed static GPU profile vs d (``python -m harness.gpu_profile sizes --out ...``).
GPU_PROFILE = Path(__file__).resolve().parents[3] / "results" / "gpu-sizes-sm_90" / "gpu_sizes.csv"


def gpu_lines(path: Path = GPU_PROFILE) -> list[str]:
    """Markdown lines: registers, spills, local memory and occupancy of the fused CUDA kernel vs d
    (machine code read statically; no GPU time)."""
    if not Path(path).is_file():
        return []
    g = pd.read_csv(path)
    g = g[g.get("status", "ok").eq("ok")] if "status" in g else g
    if g.empty:
        return []
    spill = g[(g["local_bytes"] > 0) | (g["spill_store_bytes"] > 0)]
    first = int(spill["d"].min()) if len(spill) else None
    out = [f"GPU machine code (sm_90, `{Path(path).parent.name}/{Path(path).name}`, static, no GPU time): "
           + (f"the fused kernel's state first leaves the registers at d = {first} "
              f"(local memory); the modelled H100 crossover with the array style is where that happens "
              f"(docs/sizes.md), against the rule of thumb's ~{RULE_OF_THUMB}." if first else
              "no kernel spilled to local memory."), "",
           "| d | mode | layout | registers | local bytes | spill bytes (st/ld) | occupancy |",
           "|---|---|---|---|---|---|---|"]
    for _, r in g.sort_values(["d", "mode"]).iterrows():
        out.append(f"| {r['d']} | {r['mode']} | {r['layout']} | {r['registers']} | {r['local_bytes']} | "
                   f"{r['spill_store_bytes']}/{r['spill_load_bytes']} | {r['occupancy']:.3g} |")
    return out + [""]
