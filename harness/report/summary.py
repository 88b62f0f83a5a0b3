"""The five-minute summary: what was measured on what, the answer, and the compact table.

Read by the README generator (:mod:`harness.report.readme`) and at the top of report.md, so both
open with the same generated sentences. Pure functions of the headline table
(:func:`harness.results.headline.headline_table`), the run's environment and the GPU model's
facts; every number is computed, and every ratio is *peer time / fused time* (above 1: the fused
kernel is faster), the C++ control's included.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.gpu_profile import section as gpu_section
from harness.measure.load import STEAL_LIMIT
from harness.report.figures import style
from harness.results.headline import AS_PAPER_RAN, PAPER_GPU, PAPER_TOLERANCE

#: Mark of a number measured while the machine was busy (harness.measure.load), and its footnote.
CONTENDED_MARK = "⚑"
CONTENDED_NOTE = (f"{CONTENDED_MARK} measured while other processes, or other guests of the host (steal), competed "
                  "for the cores (`contended` in results.csv): that time may be inflated; rerun on a quiet machine "
                  "before quoting it.")

#: The compact table's ensemble sizes: the smallest, and the largest most libraries reached.
COMPACT_NS = (8, 32768)


def top_threads(table: pd.DataFrame) -> pd.DataFrame:
    """The headline rows at the largest thread count of the first device (GPU first)."""
    if table.empty:
        return table
    device = sorted(set(table["device"]), key=lambda d: (d != "gpu", d))[0]
    t = table[table["device"] == device]
    top = t["threads"].max()
    return t[(t["threads"] == top) | (t["threads"].isna() & np.isnan(top))]


def compact_columns(table: pd.DataFrame) -> list[tuple[str, float, int]]:
    """``[(mode, rtol, n)]``: fixed and adaptive (the paper's tolerance where run), each at the
    smallest and the largest N of the headline (N = 8 and 32,768 in the cpu suite)."""
    cols = []
    for mode in ("fixed", "adaptive"):
        t = table[table["mode"] == mode]
        if t.empty:
            continue
        rtol = float("nan")
        if mode == "adaptive":
            tols = sorted(set(t["setting"].str.extract(r"tol = ([0-9.e+-]+)")[0].dropna().astype(float)))
            rtol = PAPER_TOLERANCE if PAPER_TOLERANCE in tols else (tols[-1] if tols else float("nan"))
            t = t[t["setting"].str.contains(f"tol = {rtol:g},", regex=False)]
        ns = sorted(set(t["n"]))
        cols += [(mode, rtol, n) for n in sorted({ns[0], ns[-1]})]
    return cols


def _rows_at(table: pd.DataFrame, mode: str, rtol: float, n: int) -> pd.DataFrame:
    t = table[(table["mode"] == mode) & (table["n"] == n)]
    if mode == "adaptive":
        t = t[t["setting"].str.contains(f"tol = {rtol:g},", regex=False)]
    return t


def _column_label(mode: str, rtol: float, n: int) -> str:
    what = "fixed step" if mode == "fixed" else f"adaptive (tol {rtol:g})"
    return f"{what}, N = {n:,}"


def _cell(r: pd.Series) -> str:
    text = style.format_ratio(r["speedup"])
    if r["variant"]:
        text += f" ({r['variant']})"
    if bool(r.get("contended", False)):
        text += f" {CONTENDED_MARK}"
    if np.isfinite(r["paper_speedup"]):
        text += f" · V100: {style.format_ratio(r['paper_speedup'])}"
    return text


def compact_table(table: pd.DataFrame) -> list[str]:
    """Markdown lines: one row per library (peers, then the control in a group of its own)."""
    t = top_threads(table)
    cols = compact_columns(t)
    if not cols:
        return []
    header = ["library (its fastest variant)"] + [_column_label(*c) for c in cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in ("peer", "control"):
        libs = list(dict.fromkeys(t[t["group"] == group]["library"]))
        if group == "control" and libs:
            lines.append("| *control, not a peer:* |" + " |" * len(cols))
        for lib in libs:
            row = [style.backend_label(lib)]
            for c in cols:
                r = _rows_at(t[t["library"] == lib], *c)
                row.append(_cell(r.iloc[0]) if not r.empty else "")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def compact_caption(table: pd.DataFrame) -> str:
    t = top_threads(table)
    threads = t["threads"].iloc[0] if not t.empty else float("nan")
    text = ("Lorenz, float32: each library's time over the fused kernel's at the same N and threads "
            f"({'every core' if not np.isfinite(threads) else f'{int(threads)} threads'}), median of the "
            "repeats; above 1 the fused kernel is faster. In brackets: the library's fastest variant where it "
            f"is not its default. *V100*: the same ratio in the paper's published {PAPER_GPU} timings "
            "(where it ran these settings).")
    if bool(t.get("contended", pd.Series(dtype=bool)).any()):
        text += " " + CONTENDED_NOTE
    return text


def answer_lines(table: pd.DataFrame, model_ratios: list[float] | None = None) -> list[str]:
    """The answer, one sentence each: fused vs the strongest array-style code, vs the libraries as
    the paper ran them, and what the static GPU model predicts (labelled *modelled*)."""
    t = top_threads(table)
    cols = compact_columns(t)
    peers = t[t["group"] == "peer"]
    lines = []
    best = [(c, _rows_at(peers, *c).sort_values("speedup").iloc[0]) for c in cols if not _rows_at(peers, *c).empty]
    if best:
        lo = min(best, key=lambda x: x[1]["speedup"])
        hi = max(best, key=lambda x: x[1]["speedup"])
        mark = CONTENDED_MARK if any(bool(r.get("contended", False)) for _, r in best) else ""
        lines.append(
            f"- **Against the fastest array-style code** (each library at its fastest variant, the closest one at "
            f"each setting): the fused kernel is {style.format_ratio(lo[1]['speedup'])} to "
            f"{style.format_ratio(hi[1]['speedup'])} faster{mark} (least: {style.backend_label(lo[1]['library'])}, "
            f"{_column_label(*lo[0])}; most: {style.backend_label(hi[1]['library'])}, {_column_label(*hi[0])}).")
    as_ran = peers[peers["library"].isin(AS_PAPER_RAN) & peers["as_paper_speedup"].notna()]
    as_ran = pd.concat([_rows_at(as_ran, *c) for c in cols]) if cols and not as_ran.empty else as_ran
    if not as_ran.empty:
        paper = as_ran["paper_speedup"].dropna()
        busy = f" {CONTENDED_MARK}" if as_ran["contended"].fillna(False).astype(bool).any() else ""
        lines.append(
            "- **Against the libraries as the paper ran them** (diffrax under vmap, torchdiffeq batched): they take "
            f"{style.format_ratio(as_ran['as_paper_speedup'].min())} to {style.format_ratio(as_ran['as_paper_speedup'].max())}"
            f"{busy} the fused kernel's time here"
            + (f"; the paper measured {style.format_ratio(paper.min())} to {style.format_ratio(paper.max())} "
               f"on a {PAPER_GPU} at the same N." if not paper.empty else "."))
    if model_ratios:
        lines.append(
            f"- **On a GPU (*modelled*, not measured):** from its compiled machine code and spec-sheet numbers, a static "
            f"model puts the paper's published Julia-kernel {PAPER_GPU} times at {min(model_ratios):.2f}× to "
            f"{max(model_ratios):.2f}× our kernel's predicted time for N ≥ 131,072 (above 1: ours predicted faster).")
    return lines


def model_ratios(results: pd.DataFrame) -> list[float]:
    """Published Julia-kernel V100 time / our kernel's modelled time at the paper's large N (the
    static GPU model, harness.gpu_profile); empty where the CUDA tools are missing."""
    try:
        f = gpu_section.facts(results)
    except Exception:  # noqa: BLE001 - the summary stands without the model
        return []
    return [pub / pred for pred, pub in (f or {}).get("headline", {}).values() if pred > 0]


def machine_sentence(env: dict, devices: list[str], n_cells: int, ns: list[int]) -> str:
    """What was measured and on what: CPU-only so far, which CPU (from the run's fingerprint)."""
    fields = dict(style.environment_fields(env))
    cpu = fields.get("CPU") or "an unnamed CPU"
    cores = fields.get("cores")
    gpu = "gpu" in devices
    where = (f"a GPU ({fields.get('GPU')}) and a CPU" if gpu else
             f"a CPU only so far ({cpu}{f', {cores} cores' if cores else ''}); no GPU has been measured yet")
    span = f"N = {min(ns):,} to {max(ns):,}" if ns else "several N"
    return (f"**What was measured, and on what.** Ensembles of N independent small ODE systems (Lorenz, float32, {span}) "
            f"solved at once by a fused one-launch kernel (ours, Numba) and by array-style codes (diffrax, torchdiffeq, "
            f"torchode, hand-written JAX and PyTorch, our array-style replica, SciPy), {n_cells} cells in all, on {where}.")


def cpu_differs_sentence(env: dict) -> str:
    """How much CPUs differ and that ratios, not times, carry over (numbers from the fingerprint)."""
    vec = (env or {}).get("cpu_vector") or {}
    # The kernel-cost sentence's floor was computed from its own peak measurement: quote that
    # one when there is one, so "that FMA-bound floor" is the floor of the number printed (the
    # fingerprint's two measurements differ when the host was busy during one of them).
    kc = (env or {}).get("fused_kernel_costs") or {}
    peak = (kc.get("fma_peak_f32_per_ns") if _has_kernel_costs(kc) else None) or vec.get("fma_peak_f32_per_ns")
    what = (f"This CPU ({vec.get('cpu_name', 'its model')}, {vec.get('isa', 'its vector ISA')}) measured "
            f"{peak:.3g} float32 FMA per ns on one core. " if peak else "")
    return (what + kernel_costs_sentence(env) + "Other CPUs differ several-fold in vector width, core count and "
            "memory bandwidth, so the times on your machine will differ; the ratios, which compare codes on the "
            "same machine, are what carries over.")


def _has_kernel_costs(kc: dict) -> bool:
    """Whether ``kernel_costs_sentence`` says something for these ``fused_kernel_costs``."""
    return bool((kc.get("cases") or {}).get("fixed")) and "wall" in (kc.get("adaptive_over_fixed") or {})


def kernel_costs_sentence(env: dict) -> str:
    """The fused CPU kernels' step against this core's floor, from the fingerprint's
    ``fused_kernel_costs`` (``harness.measure.fused_costs``); empty when the run has none."""
    kc = (env or {}).get("fused_kernel_costs") or {}
    if not _has_kernel_costs(kc):
        return ""
    cases, ratios = kc["cases"], kc["adaptive_over_fixed"]
    fixed = cases["fixed"]
    mca = (f" (llvm-mca's model of this CPU: {ratios['mca_dependencies']:.2f}x)"
           if "mca_dependencies" in ratios else "")
    # Each round times both cases back to back: the ratio taken round by round moves less with
    # a host whose speed drifts than the ratio of the medians, and its spread says how much.
    by_round = ratios.get("wall_by_round") or {}
    rounds = (f"; {by_round['median']:.2f}x taken round by round, {by_round['min']:.2f}-{by_round['max']:.2f}x "
              f"over {by_round['rounds']} rounds" if by_round.get("rounds", 0) >= 2 else "")
    steal = max((c.get("host_steal", 0.0) for c in cases.values()), default=0.0)
    stolen = (f" The host gave other guests {steal:.0%} of this machine's CPU time while it was measured "
              "(steal): that ratio is not the kernels' alone. " if steal >= STEAL_LIMIT else " ")
    # The fastest round says what the step costs when the core is the kernel's own (runs
    # recorded before it was measured have none: nothing said either way).
    best = (fixed.get("best_round") or {}).get("fma_floor_fraction")
    fastest = (f" by its median time, {best:.0%} in the fastest of its {by_round['rounds']} rounds"
               if best is not None and by_round.get("rounds", 0) >= 2 else "")
    return (f"The fused kernel's fixed Lorenz step reached {fixed['fma_floor_fraction']:.0%} of that FMA-bound floor"
            f"{fastest} ({fixed['fma_lane_ops_per_step']:.0f} lane-FMAs per step), and an adaptive step taken (1e-6) cost "
            f"{ratios['wall']:.2f}x a fixed one by median times{rounds}{mca}, at N = {kc['n']:,} "
            f"(`{kc['command']}`).{stolen}")


__all__ = ["CONTENDED_MARK", "CONTENDED_NOTE", "answer_lines", "compact_caption", "compact_table",
           "cpu_differs_sentence", "kernel_costs_sentence", "kind_finding", "machine_sentence", "model_ratios", "top_threads"]


def kind_finding(cells: pd.DataFrame, kind: str) -> str | None:
    """A run's own finding for a workload kind without a Lorenz headline: per problem, at the
    largest N where the fused kernel and another backend both ran, each backend's time over the
    fused kernel's (peer / fused, as everywhere; contended cells marked)."""
    ok = cells[cells["success"] & (cells["kind"] == kind)]
    parts = []
    for problem, p in ok.groupby("problem", sort=True):
        fused = p[(p["backend"] == "fused") & (p["variant"] == "")].set_index("n")
        items = []
        for backend, b in p[p["backend"] != "fused"].groupby("backend", sort=False):
            common = sorted(set(fused.index) & set(b["n"]))
            if not common:
                continue
            n = common[-1]
            r = b[b["n"] == n].sort_values("time_median_s").iloc[0]
            f = fused.loc[[n]].sort_values("time_median_s").iloc[0]
            mark = f" {CONTENDED_MARK}" if bool(r.get("contended", False)) or bool(f.get("contended", False)) else ""
            items.append((n, f"{style.backend_label(backend)}{f' [{r.variant}]' if r['variant'] else ''} "
                             f"{style.format_ratio(r['time_median_s'] / f['time_median_s'])}{mark} (N = {int(n):,})"))
        if items:
            parts.append(f"`{problem}`: " + ", ".join(t for _, t in sorted(items, key=lambda x: -x[0])))
    if not parts:
        return None
    return "**Finding** (peer time / fused time, median of the repeats; above 1 the fused kernel is faster): " + "; ".join(parts) + "."
