"""Red-team check: at every N, was each library's strongest variant chosen among all of them?

``python -m harness fairness RUN_DIR`` lists, per problem, method, mode, tolerance, threads, N
and library, the fastest variant that ran and the variants that did NOT run there although the
run holds them elsewhere for the same problem, method and mode (so a variant missing at one N
is visible), with the reason when a row recorded one. A library's variants are the ones the run
holds for it; ``declared`` adds the variants its backend declares but the run never ran.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.results.cells import cell_table
from harness.results.schema import validate
from harness.results.store import read_results
from solvers.registry import get_backend

#: Columns that name one comparison (a library's cell is one of these plus ``backend``).
GROUP = ["problem", "method", "mode", "rtol", "threads", "n"]


def _label(variant: str) -> str:
    return variant if variant else "default"


def fairness_table(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison and library: the fastest variant that ran, its median time, the
    variants that ran, and those (of the library's variants for this problem/method/mode in
    the run) that did not, with their recorded reason if any."""
    cells = cells.copy()
    cells["variant"] = cells["variant"].fillna("").astype(str)
    cells["threads"] = cells["threads"].fillna(0).astype(int)
    cells["rtol"] = cells["rtol"].fillna(0.0)
    known = cells.groupby(["problem", "backend", "method", "mode"])["variant"].agg(lambda v: sorted(set(v)))
    rows = []
    for key, group in cells.groupby(GROUP + ["backend"], sort=True, dropna=False):
        problem, method, mode, _, _, _, backend = key
        ok = group[group["status"] == "ok"].dropna(subset=["time_median_s"])
        ran = sorted(set(ok["variant"]))
        reasons = {v: str(r) for v, r in zip(group["variant"], group["reason"]) if v not in ran and str(r)}
        missing = [v for v in known[(problem, backend, method, mode)] if v not in ran]
        best = ok.loc[ok["time_median_s"].idxmin()] if len(ok) else None
        rows.append({
            **dict(zip(GROUP + ["backend"], key)),
            "fastest": _label(best["variant"]) if best is not None else "(none ran)",
            "time_median_s": float(best["time_median_s"]) if best is not None else float("nan"),
            "ran": ", ".join(map(_label, ran)),
            "not_run": "; ".join(_label(v) + (f" ({reasons[v][:80]})" if v in reasons else "") for v in missing),
        })
    return pd.DataFrame(rows)


def declared_never_run(cells: pd.DataFrame) -> dict[str, list[str]]:
    """Backend -> the variants its class declares that the run holds no row of (registry lookup;
    a backend that cannot be loaded here is skipped)."""
    out = {}
    for backend, group in cells.groupby("backend"):
        try:
            declared = tuple(getattr(get_backend(backend), "variants", ("",)) or ("",))
        except Exception:  # an unknown or unloadable backend: nothing declared to compare
            continue
        seen = set(group["variant"].fillna("").astype(str))
        never = [_label(v) for v in declared if v not in seen]
        if never:
            out[backend] = never
    return out


def render(table: pd.DataFrame, never: dict[str, list[str]] | None = None, only_missing: bool = False) -> str:
    """The table as text: one block per comparison, one line per library."""
    lines = []
    if only_missing:
        table = table[table["not_run"] != ""]
    for key, group in table.groupby(GROUP, sort=True):
        problem, method, mode, rtol, threads, n = key
        tol = f" rtol={rtol:g}" if mode == "adaptive" else ""
        lines.append(f"{problem} {method} {mode}{tol} threads={threads or 'all'} N={n}")
        for r in group.itertuples():
            t = f"{r.time_median_s * 1e3:10.3f} ms" if r.time_median_s == r.time_median_s else " " * 13
            miss = f"   NOT RUN: {r.not_run}" if r.not_run else ""
            lines.append(f"  {r.backend:20s} fastest {r.fastest:16s} {t}   ran: {r.ran}{miss}")
    if never:
        lines.append("")
        lines.append("variants declared by a backend but never run in this run:")
        for backend, variants in sorted(never.items()):
            lines.append(f"  {backend}: {', '.join(variants)}")
    n_missing = int((table["not_run"] != "").sum())
    lines.append("")
    lines.append(f"{n_missing} of {len(table)} library cells miss a variant the run holds elsewhere")
    return "\n".join(lines)


def fairness_report(run_dir: Path, only_missing: bool = False, declared: bool = True) -> tuple[str, int]:
    """(text, number of library cells missing a variant) for the run in ``run_dir``."""
    cells = cell_table(validate(read_results(Path(run_dir))))
    table = fairness_table(cells)
    text = render(table, declared_never_run(cells) if declared else None, only_missing)
    return text, int((table["not_run"] != "").sum())
