"""The headline: the fused kernel against each library's strongest variant, like for like.

One row per (setting, threads, library, N): the fused kernel's median time against the fastest
variant of the library that ran the same problem, mode, dtype, device, N, dt, tolerances and
thread count (the same method where the library ran it), with "as the paper ran it" beside it.
Every number comes from the results table; rows join on key columns, never on row order, so the
same table in any order gives the same headline. Columns added by later schema versions
(``threads``, ``cpu_util``, ``max_scaled_err``) are read when present and tolerated when absent.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.results.cells import cell_table, paper_ratio, paper_speedups
from problems.kinds import kind_of

#: Libraries in the order the headline lists them (ours first). Unknown backends follow, sorted;
#: the controls (:data:`CONTROLS`) come last, in a row group of their own.
LIBRARIES = ("array", "diffrax", "torchdiffeq", "torchode", "jax-handwritten",
             "torch-handwritten", "scipy", "cuda-cpp")

#: Backends that are controls, not peers: the hand-written C++ version of the fused design
#: (same algorithm, another compiler). Never counted among the peers (group "control").
CONTROLS = ("cuda-cpp",)

#: The variant that produced the paper's published timings, per library (fused is the reference).
AS_PAPER_RAN = {"diffrax": "vmap-of-jit", "torchdiffeq": ""}

#: Mean step counts differing by more than this factor mean the two solves did different work.
WORK_DIFFERS = 1.2

#: Backends compiled by XLA: on a CPU their rows carry the loop-overhead caveat.
XLA_BACKENDS = ("diffrax", "jax-handwritten", "pallas")
XLA_CAVEAT = ("XLA:CPU adds per-operation loop overhead in recent jaxlib (jax issues #26145, "
              "#25190, #40150; the opt-out flag is gone since jax 0.7): a CPU-only handicap of "
              "JAX rows, not a property of the fused design")

#: The paper's GPU whose ratios sit beside ours (settings permitting).
PAPER_GPU = "Tesla V100"

#: The fixed-step and adaptive settings the headline uses, in order of preference. The headline
#: problem is Lorenz where the fused kernel ran it, else the first ODE problem it ran (a run of
#: a problem registered by a user: ``python -m harness run --problem NAME``).
HEADLINE_PROBLEM = "lorenz"
PROBLEM_TITLES = {"lorenz": "Lorenz"}
PREFERRED_TOLERANCES = (1e-6, 1e-8)
PAPER_TOLERANCE = 1e-8


@dataclass(frozen=True)
class Setting:
    """One headline table: a mode at a step size or tolerance, at a thread count."""

    mode: str
    dt: float
    rtol: float
    threads: float  # NaN: every core (runs that predate the threads column)
    device: str = "cpu"
    problem: str = HEADLINE_PROBLEM

    @property
    def label(self) -> str:
        what = f"fixed step, dt = {self.dt:g}" if self.mode == "fixed" else f"adaptive, tol = {self.rtol:g}"
        return f"{PROBLEM_TITLES.get(self.problem, self.problem)} {what}, {self.device}, {threads_label(self.threads)}"


def threads_label(threads: float) -> str:
    return "all cores" if not np.isfinite(threads) else f"{int(threads)} thread{'s' * (threads != 1)}"


def _same(a: pd.Series, value: float) -> pd.Series:
    return (a == value) | (a.isna() & (not np.isfinite(value)))


def headline_problem(cells: pd.DataFrame) -> str:
    """Lorenz where the fused kernel ran it successfully, else the first (sorted) ODE problem it did."""
    fused = cells[(cells["backend"] == "fused") & cells["success"]]
    names = sorted(set(fused["problem"]))
    if HEADLINE_PROBLEM in names or not names:
        return HEADLINE_PROBLEM
    fit = [p for p in names if kind_of(p).headline]
    return fit[0] if fit else HEADLINE_PROBLEM


def headline_settings(cells: pd.DataFrame) -> list[Setting]:
    """The settings the headline shows: the headline problem (``headline_problem``) fixed (its dt)
    and adaptive (1e-6 where run, and 1e-8, the paper's; else the tolerance swept over most N),
    at every core and at one thread where such rows exist."""
    problem = headline_problem(cells)
    every = cells[(cells["problem"] == problem) & (cells["backend"] == "fused") & cells["success"]]
    out = []
    # GPU first: a run with both devices leads with the paper's setting
    for device in sorted(set(every["device"]), key=lambda d: (d != "gpu", d)):
        out += [dataclasses.replace(s, problem=problem) for s in _settings_on(every[every["device"] == device], device)]
    return out


def _settings_on(fused: pd.DataFrame, device: str) -> list[Setting]:
    threads = sorted(set(fused["threads"].dropna()), reverse=True)
    levels = [float("nan")] if fused["threads"].isna().any() or not threads else [threads[0]]
    if 1.0 in threads and levels != [1.0]:
        levels.append(1.0)
    out = []
    for th in levels:
        f = fused[_same(fused["threads"], th)]
        fixed = f[f["mode"] == "fixed"]
        if not fixed.empty:
            dt = fixed.groupby("dt")["n"].nunique().sort_values(kind="mergesort").index[-1]
            out.append(Setting("fixed", float(dt), float("nan"), th, device))
        adaptive = f[f["mode"] == "adaptive"]
        found = 0
        for tol in PREFERRED_TOLERANCES:
            sub = adaptive[np.isclose(adaptive["rtol"], tol)]
            if sub["n"].nunique() >= 2:   # a sweep, not a single work-precision point
                out.append(Setting("adaptive", float(sub["dt"].iloc[0]), tol, th, device))
                found += 1
        swept = adaptive.groupby("rtol")["n"].nunique().sort_values(kind="mergesort")
        if not found and len(swept) and swept.iloc[-1] >= 2:  # a problem of its own tolerance
            tol = float(swept.index[-1])
            out.append(Setting("adaptive", float(adaptive[np.isclose(adaptive["rtol"], tol)]["dt"].iloc[0]),
                               tol, th, device))
    return out


def key_ns(cells: pd.DataFrame, setting: Setting) -> list[int]:
    """The smallest N the fused kernel ran and the largest N most libraries also reached."""
    sub = in_setting(cells, setting)
    fused_ns = sorted(set(sub[(sub["backend"] == "fused") & sub["success"]]["n"]))
    if not fused_ns:
        return []
    peers = sub[(sub["backend"] != "fused") & sub["success"]]
    reach = peers.groupby("backend")["n"].max()
    common = [n for n in fused_ns if (reach >= n).sum() >= max(1, (len(reach) + 1) // 2)]
    large = max(common) if common else fused_ns[-1]
    return sorted({fused_ns[0], large})


def in_setting(cells: pd.DataFrame, s: Setting) -> pd.DataFrame:
    """The cells of the headline problem at setting ``s`` (every backend, every N)."""
    m = ((cells["problem"] == s.problem) & (cells["mode"] == s.mode) & (cells["device"] == s.device)
         & _same(cells["threads"], s.threads))
    m &= np.isclose(cells["dt"], s.dt) if np.isfinite(s.dt) else cells["dt"].isna()
    if s.mode == "adaptive":
        m &= np.isclose(cells["rtol"], s.rtol)
    return cells[m]


def library_order(backend: str) -> tuple:
    """Sort key of a library in the headline: peers in :data:`LIBRARIES` order, controls last."""
    return (backend in CONTROLS, LIBRARIES.index(backend) if backend in LIBRARIES else len(LIBRARIES), backend)


def headline_rows(cells: pd.DataFrame, setting: Setting, published: pd.DataFrame | None = None,
                  ns: list[int] | None = None) -> pd.DataFrame:
    """The rows of one headline table (see the module docstring); empty if nothing compares.

    ``ns``: the ensemble sizes to compare (default: :func:`key_ns`); figures pass every N.
    """
    sub = in_setting(cells, setting)
    ok = sub[sub["success"]]
    paper = paper_speedups(published)
    rows = []
    for n in (key_ns(cells, setting) if ns is None else ns):
        at = ok[ok["n"] == n]
        fused = at[at["backend"] == "fused"]
        if fused.empty:
            continue
        fused = fused[fused["variant"] == ("" if (fused["variant"] == "").any() else sorted(fused["variant"])[0])]
        for lib in sorted(set(at["backend"]) - {"fused"}, key=library_order):
            lib_cells = at[at["backend"] == lib]
            matched = lib_cells[lib_cells["method"].isin(fused["method"])]
            pool = matched if not matched.empty else lib_cells
            best = pool.sort_values(["time_median_s", "variant", "method"], kind="mergesort").iloc[0]
            f = fused[fused["method"] == best["method"]]
            f = (f if not f.empty else fused.sort_values(["method"])).iloc[0]
            paper_variant = AS_PAPER_RAN.get(lib)
            as_ran = lib_cells[lib_cells["variant"] == paper_variant] if paper_variant is not None else lib_cells.iloc[0:0]
            as_ran = as_ran.sort_values("time_median_s").iloc[0] if not as_ran.empty else None
            notes = _notes(lib, f, best, setting)
            ratio_paper = float("nan")
            if setting.mode == "fixed" or np.isclose(setting.rtol, PAPER_TOLERANCE):
                ratio_paper, _ = paper_ratio(paper, lib, setting.problem, setting.mode, n, PAPER_GPU, f["method"])
            rows.append(dict(
                setting=setting.label, mode=setting.mode, threads=setting.threads, n=int(n),
                library=lib, variant=best["variant"], method=best["method"], fused_method=f["method"],
                fused_s=f["time_median_s"], peer_s=best["time_median_s"],
                speedup=best["time_median_s"] / f["time_median_s"],
                speedup_lo=best["time_min_s"] / f["time_max_s"], speedup_hi=best["time_max_s"] / f["time_min_s"],
                repeats=int(min(best["repeats"], f["repeats"])),
                as_paper_variant=paper_variant if as_ran is not None else None,
                as_paper_speedup=(as_ran["time_median_s"] / f["time_median_s"]) if as_ran is not None else float("nan"),
                err_fused=f["err"], err_peer=best["err"], err_kind=best["err_kind"],
                steps_fused=f["steps_mean"], steps_peer=best["steps_mean"],
                cpu_util_fused=f["cpu_util"], cpu_util_peer=best["cpu_util"],
                paper_speedup=ratio_paper, device=f["device"], notes="; ".join(notes),
                group="control" if lib in CONTROLS else "peer",
                contended=bool(f.get("contended", False)) or bool(best.get("contended", False))))
    return pd.DataFrame(rows)


def _notes(lib: str, f: pd.Series, peer: pd.Series, s: Setting) -> list[str]:
    notes = []
    if f["method"] != peer["method"]:
        notes.append(f"different method ({peer['method']} vs {f['method']})")
    a, b = f["steps_mean"], peer["steps_mean"]
    if np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0 and max(a, b) / min(a, b) > WORK_DIFFERS:
        notes.append(f"work differs ({b:.4g} vs {a:.4g} mean steps)")
    if lib in XLA_BACKENDS and f["device"] == "cpu":
        notes.append("XLA:CPU caveat")
    return notes


def headline_table(results: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every headline table of a run, concatenated (column ``setting`` names the table).

    Columns besides the numbers: ``group`` ("peer", or "control" for :data:`CONTROLS`) and
    ``contended`` (either cell ran while the machine was busy: quote it only with that mark)."""
    cells = cell_table(results)
    parts = [headline_rows(cells, s, published) for s in headline_settings(cells)]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
