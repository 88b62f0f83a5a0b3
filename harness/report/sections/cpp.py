"""Report section: the hand-written C++ solver ("cuda-cpp") against the Numba fused kernel.

``report_section(cells)`` (registered in harness.report.sections) pairs every ok cuda-cpp cell with
the fused cell of the same key (problem, method, mode, dtype, N, device, dt, tolerances and,
where the column exists, threads), and gives the time ratio cuda-cpp / fused per N, the time per
trajectory-step of each, and whether the two took the same steps. Its closing sentence says, per
mode, how close the Numba kernel comes to the C++ one (words generated from the ratio). A pure function of the cell table.
"""
from __future__ import annotations

import pandas as pd

from harness.report.figures.style import format_number
from harness.results.cells import timed_cells

#: "Within 10%": fused time <= 1.10 x cuda-cpp time.
TOLERANCE = 0.10
_KEYS = ("problem", "method", "mode", "dtype", "n", "device", "dt", "rtol", "atol")


def _fmt(v: float, spec: str = ".3g") -> str:
    return format_number(v, spec, "n/a")


def applies(cells: pd.DataFrame) -> bool:
    """True when the cell table has a cuda-cpp cell."""
    return bool((cells["backend"] == "cuda-cpp").any())


def paired(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per key with both backends' default variants ok: median times, steps, ratio and ns
    per step, from the cell table."""
    ok = timed_cells(cells)
    ok = ok[ok["backend"].isin(["fused", "cuda-cpp"]) & ok["variant"].eq("")].copy()
    keys = [*_KEYS, "threads"]
    # NaN tolerances (fixed mode) and threads (every core) must still pair: "" stands for them
    ok["threads"] = [("" if pd.isna(t) else int(t)) for t in ok["threads"]]
    for k in ("dt", "rtol", "atol"):
        ok[k] = ok[k].astype("object").where(ok[k].notna(), "")
    ok = ok.rename(columns={"time_median_s": "time_s", "steps_mean": "steps"})
    wide = ok.pivot_table(index=keys, columns="backend", values=["time_s", "steps"], aggfunc="first")
    if ("time_s", "cuda-cpp") not in wide.columns or ("time_s", "fused") not in wide.columns:
        return pd.DataFrame()
    wide = wide.dropna(subset=[("time_s", "cuda-cpp"), ("time_s", "fused")])
    out = wide.reset_index()
    out.columns = ["_".join(c for c in col if c) if isinstance(col, tuple) else col for col in out.columns]
    out["ratio"] = out["time_s_cuda-cpp"] / out["time_s_fused"]
    for b in ("fused", "cuda-cpp"):
        out[f"ns_step_{b}"] = 1e9 * out[f"time_s_{b}"] / (out["n"].astype(float) * out[f"steps_{b}"])
    return out.sort_values(keys).reset_index(drop=True)


def closeness(ratio: float) -> str:
    """How the Numba kernel compares, in words generated from ``ratio`` = C++ time / fused time:
    "within 10% of the C++ kernel", or how much less or more time it takes."""
    fused_over_cpp = 1.0 / ratio
    if abs(fused_over_cpp - 1.0) <= TOLERANCE:
        return "is within 10% of the C++ kernel"
    if fused_over_cpp < 1.0:
        return f"takes {100 * (1 - fused_over_cpp):.0f}% less time than the C++ kernel"
    return f"takes {100 * (fused_over_cpp - 1):.0f}% more time than the C++ kernel"


def _verdict(group: pd.DataFrame) -> str:
    """Sentence for one (device, dtype, mode, tolerance) series (ratio: C++ time / fused time)."""
    big = group.loc[group["n"].astype(int).idxmax()]
    lo, hi = group["ratio"].min(), group["ratio"].max()
    return (f"at the largest N ({int(big['n']):,}) C++ time / fused time is {big['ratio']:.2f}x: the Numba "
            f"kernel {closeness(big['ratio'])} (over all N: {lo:.2f}x to {hi:.2f}x)")


def report_section(cells: pd.DataFrame) -> str | None:
    """Markdown section comparing cuda-cpp with fused, or None when the run has no cuda-cpp cell."""
    if not applies(cells):
        return None
    pairs = paired(cells)
    lines = ["## Hand-written C++ vs the Numba fused kernel", "",
             "The same algorithm written twice: the Numba kernel generated from the Python "
             "definition (`fused`) and a hand-written C++ solver (`cuda-cpp`, "
             "`solvers/cpp/fused.hpp`; right-hand side translated by SymPy, g++ -O3 "
             "-march=native with OpenMP on the CPU, NVRTC on a GPU). Same tableau, controller "
             "and lane blocking; ratio = cuda-cpp time / fused time (median of the repeats; "
             "below 1: C++ faster). ns/step = time per trajectory per accepted step.", ""]
    if pairs.empty:
        lines.append("The run has cuda-cpp rows but no fused cell with the same settings to pair them with.")
        return "\n".join(lines) + "\n"
    has_threads = "threads" in pairs.columns
    header = ["device", "problem", "method", "mode", "dtype", "tol", *(["threads"] if has_threads else []),
              "N", "fused ns/step", "cuda-cpp ns/step", "ratio", "same steps"]
    rows = []
    for _, r in pairs.iterrows():
        tol = "" if r["mode"] == "fixed" else _fmt(float(r["rtol"]), "g")
        same = r["steps_fused"] == r["steps_cuda-cpp"]
        rows.append([r["device"], r["problem"], r["method"], r["mode"], r["dtype"], tol,
                     *([r["threads"] if r["threads"] != "" else "all"] if has_threads else []),
                     f"{int(r['n']):,}", _fmt(r["ns_step_fused"]), _fmt(r["ns_step_cuda-cpp"]),
                     _fmt(r["ratio"], ".2f"), "yes" if same else
                     f"no ({_fmt(r['steps_fused'], '.6g')} vs {_fmt(r['steps_cuda-cpp'], '.6g')})"])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    lines.append("")
    group_keys = ["device", "problem", "method", "dtype", "mode", "rtol"] + (["threads"] if has_threads else [])
    verdicts = []
    for key, g in pairs.groupby(group_keys, sort=True):
        d = dict(zip(group_keys, key))
        tol = "" if d["mode"] == "fixed" else f", tol {_fmt(float(d['rtol']), 'g')}"
        thr = f", threads {d['threads'] or 'all'}" if has_threads else ""
        verdicts.append(f"* {d['device']} {d['problem']} {d['method']} {d['mode']} {d['dtype']}{tol}{thr}: "
                        + _verdict(g) + ".")
    lines += ["How close the Numba kernel comes to the hand-written C++ one (measured here; "
              "ratio = C++ time / fused time, as every peer ratio in this report):", ""] + verdicts
    return "\n".join(lines) + "\n"


def readme_paragraph(cells: pd.DataFrame) -> str | None:
    """One generated README paragraph: the Numba kernel against the hand-written C++ one at the
    largest N of each Lorenz Tsit5 series run at every core (None when the run has no pair)."""
    if not applies(cells):
        return None
    pairs = paired(cells)
    if pairs.empty:
        return None
    if "threads" in pairs.columns:
        top = pd.to_numeric(pairs["threads"], errors="coerce")
        pairs = pairs[top.isna() | (top == top.max())]
    parts = []
    for (mode, rtol), g in pairs.groupby(["mode", "rtol"], sort=True):
        big = g.loc[g["n"].astype(int).idxmax()]
        tol = "fixed step" if mode == "fixed" else f"adaptive {_fmt(float(rtol), 'g')}"
        parts.append(f"{tol}: {big['ratio']:.2f}x at N={int(big['n']):,} (Numba {closeness(big['ratio'])}; "
                     f"{g['ratio'].min():.2f}x to {g['ratio'].max():.2f}x over N)")
    return ("**Hand-written C++ (control).** Time of a hand-written C++ solver (same tableau, controller "
            "and lane blocking; g++ -O3 -march=native, OpenMP) over the Numba fused kernel's on this CPU, "
            "median of the repeats (above 1: the Numba kernel is faster): " + "; ".join(parts) + ".")
