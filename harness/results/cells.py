"""From results rows to cells, sweeps and speedups: the numbers every figure and the report share.

A *cell* is one setting of :data:`harness.results.schema.KEY_COLUMNS`; its timed repeats collapse to a
median (what we plot), a min (what the paper reported), the interquartile range and the spread
(max / min) that show the noise. :func:`cell_table` is the only place that groups timed repeats:
the headline, the figures and every report section read it. Everything here joins on key columns
and uses order-free statistics (median, min, max, quartiles), so shuffling the rows of the results
table changes nothing.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.results import paper as pd_
from harness.results.schema import KEY_COLUMNS
from problems.kinds import kind_of

#: The string keys (missing values read as "") and the float keys (NaN kept, matched as equal).
#: threads is NaN in runs that predate it (and means "every core").
STRING_KEYS = tuple(k for k in KEY_COLUMNS if k not in ("n", "dt", "rtol", "atol", "threads"))
FLOAT_KEYS = tuple(k for k in ("dt", "rtol", "atol", "threads") if k in KEY_COLUMNS)

#: A series: every key but n. Cells of one series differ only in the number of trajectories.
SERIES_KEYS = tuple(k for k in KEY_COLUMNS if k != "n")

#: The settings that a speedup comparison holds equal between the fused kernel and a peer.
MATCH_KEYS = ("problem", "mode", "dtype", "device", "n", "dt", "rtol", "atol", "threads")

#: The backend every speedup is measured for.
REFERENCE_BACKEND = "fused"

#: Mean step counts differing by more than this factor: "work differs" (issue 12: 1.2, not 1.5).
WORK_DIFFERS = 1.2

#: max/min of a cell's repeats above which it is flagged noisy: its median and its minimum can
#: then give speedups far apart.
NOISY_SPREAD = 1.5

#: Stand-in for a missing float key while joining (NaN never equals NaN in a join).
_NO_VALUE = -1.0

#: Peer backend -> the published implementation it corresponds to (for the paper's ratios).
PUBLISHED_PEER = {"diffrax": pd_.JAX, "torchdiffeq": pd_.TORCH, "array": pd_.GPU_ARRAY}


def _normalise_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Key columns with plain values: strings with "" for missing, floats, int n."""
    df = df.copy()
    for col in STRING_KEYS:
        if col not in df.columns:
            df[col] = ""
        df[col] = df[col].astype("object").where(df[col].notna(), "").astype(str)
    for col in FLOAT_KEYS:
        if col not in df.columns:
            df[col] = np.nan
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["n"] = pd.to_numeric(df["n"]).astype("int64")
    return df


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(np.nan, index=df.index, dtype="float64")
    return pd.to_numeric(df[col], errors="coerce").astype("float64")


def _text(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series("", index=df.index, dtype="object")
    return df[col].astype("object").where(df[col].notna(), "").astype(str)


def cell_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, sorted by the key columns.

    Args:
        results: a results table (rows as :mod:`harness.results.schema` describes; extra columns ignored).

    Returns:
        The key columns plus: ``kind`` (the problem's workload kind, problems.kinds), ``status``
        ("ok" when every row is ok, else the first failing status), ``reason``, ``repeats``
        (timed repeats), ``time_median_s``, ``time_min_s``, ``time_max_s``, ``time_q1_s``,
        ``time_q3_s``, ``time_iqr_s`` (quartiles by linear interpolation), ``time_spread``
        (max / min), ``noisy`` (spread above :data:`NOISY_SPREAD`), ``device_time_median_s``,
        ``cpu_util`` (median over the repeats; NaN for runs without it), ``compile_s``,
        ``launches``, ``steps_mean``, ``steps_max``, ``rhs_evals_mean``, ``max_rel_err``,
        ``max_scaled_err`` (NaN for runs without it), ``err`` and ``err_kind`` (adaptive cells:
        the scaled error where measured, else the relative one), ``failed_trajectories``,
        ``contended`` (any repeat ran on a busy machine: harness.measure.load; False for runs
        without the column), ``step_control``, ``launch_counter``, ``settings`` and ``success`` (ok, a positive
        time, and no failed trajectories).
    """
    work = _cell_inputs(results)

    def unique_text(values: pd.Series) -> str:
        # Sorted so the result does not depend on row order.
        return "; ".join(sorted({v for v in values if v}))

    grouped = work.groupby(list(KEY_COLUMNS), dropna=False, sort=True)
    cells = grouped.agg(
        _statuses=("_status", lambda s: sorted(set(s))),
        reason=("_reason", unique_text),
        repeats=("_time", lambda s: int(s.notna().sum())),
        time_median_s=("_time", "median"),
        time_min_s=("_time", "min"),
        time_max_s=("_time", "max"),
        time_q1_s=("_time", lambda s: s.quantile(0.25)),
        time_q3_s=("_time", lambda s: s.quantile(0.75)),
        device_time_median_s=("_device_time", "median"),
        cpu_util=("cpu_util", "median"),
        compile_s=("compile_s", "median"),
        launches=("launches", "median"),
        steps_mean=("steps_mean", "median"),
        steps_max=("steps_max", "max"),
        rhs_evals_mean=("rhs_evals_mean", "median"),
        max_rel_err=("max_rel_err", "max"),
        max_scaled_err=("max_scaled_err", "max"),
        failed_trajectories=("failed_trajectories", "max"),
        contended=("contended", "any"),
        step_control=("step_control", unique_text),
        launch_counter=("launch_counter", unique_text),
        settings=("settings", lambda s: min((v for v in s if v), default="")),
    ).reset_index()
    cells.insert(1, "kind", [kind_of(p).name for p in cells["problem"]])
    cells["status"] = [("ok" if st == ["ok"] else next(s for s in st if s != "ok"))
                       for st in cells.pop("_statuses")]
    cells["time_iqr_s"] = cells["time_q3_s"] - cells["time_q1_s"]
    cells["time_spread"] = cells["time_max_s"] / cells["time_min_s"]
    cells["noisy"] = cells["time_spread"] > NOISY_SPREAD
    # A fixed-step solve has no tolerance of its own (its scaled error would be in units of the
    # problem's adaptive tolerance, below float32's rounding for Lorenz): relative error there.
    scaled = cells["max_scaled_err"].notna() & cells["mode"].eq("adaptive")
    cells["err"] = cells["max_scaled_err"].where(scaled, cells["max_rel_err"])
    cells["err_kind"] = np.where(scaled, "scaled", "rel")
    cells["success"] = (cells["status"].eq("ok") & (cells["time_median_s"] > 0)
                        & ~(cells["failed_trajectories"].fillna(0) > 0))
    return _sorted(cells)


def timed_cells(cells: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """The cells whose rows are all ok (so they have timed repeats), of workload ``kind`` if given."""
    out = cells[cells["status"].eq("ok")]
    if kind is not None:
        out = out[out["kind"].eq(kind)]
    return out.reset_index(drop=True)


def untimed_cells(cells: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """The cells that are not ok (each with its status and reason), of workload ``kind`` if given."""
    out = cells[~cells["status"].eq("ok")]
    if kind is not None:
        out = out[out["kind"].eq(kind)]
    return out.reset_index(drop=True)


def _cell_inputs(results: pd.DataFrame) -> pd.DataFrame:
    """The key columns normalised, and the per-row values :func:`cell_table` aggregates (times of
    rows that are not ok are NaN, so they never enter a cell's statistics)."""
    df = _normalise_keys(results)
    work = pd.DataFrame({k: df[k] for k in KEY_COLUMNS})
    work["_status"] = _text(df, "status")
    work["_reason"] = _text(df, "reason")
    ok = work["_status"].eq("ok")
    work["_time"] = _numeric(df, "time_s").where(ok)
    work["_device_time"] = _numeric(df, "device_time_s").where(ok)
    for col in ("cpu_util", "compile_s", "launches", "steps_mean", "steps_max", "rhs_evals_mean",
                "max_rel_err", "max_scaled_err", "failed_trajectories"):
        work[col] = _numeric(df, col)
    for col in ("step_control", "settings", "launch_counter"):
        work[col] = _text(df, col)
    work["contended"] = _flag(df, "contended")
    return work


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    """A boolean column read from a CSV ("True"/"False"/1/0; missing or blank: False)."""
    if col not in df.columns:
        return pd.Series(False, index=df.index, dtype="bool")
    text = df[col].astype("object").where(df[col].notna(), "").astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "1.0", "yes"))


def _sorted(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    keys = [k for k in (*KEY_COLUMNS, *extra) if k in frame.columns]
    return frame.sort_values(keys, kind="mergesort", na_position="last").reset_index(drop=True)


def series_id(frame: pd.DataFrame, keys: tuple[str, ...] = SERIES_KEYS) -> pd.Series:
    """A readable, unique id per series (the non-n keys), e.g. 'lorenz|fused||tsit5|fixed|...'."""
    parts = [frame[k].map(lambda v: "" if isinstance(v, float) and np.isnan(v) else f"{v:g}"
                          if isinstance(v, float) else str(v)) for k in keys]
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return out


def sweep_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells of series that were swept over n: at least two n with a successful cell.

    Single-n cells (work-precision points: other tolerances or steps at one n) are left out so
    time-vs-N figures show the sweeps. If no series is a sweep, every cell is kept.
    """
    if cells.empty:
        return cells
    ids = series_id(cells)
    good_n = cells[cells["success"]].groupby(ids[cells["success"]])["n"].nunique()
    sweeps = set(good_n[good_n >= 2].index)
    if not sweeps:
        return cells
    return cells[ids.isin(sweeps)].reset_index(drop=True)


def _join_frame(cells: pd.DataFrame) -> pd.DataFrame:
    out = cells.copy()
    for col in FLOAT_KEYS:
        out[col] = out[col].fillna(_NO_VALUE)
    return out


def speedup_table(cells: pd.DataFrame, reference: str = REFERENCE_BACKEND) -> pd.DataFrame:
    """The fused kernel's speedup over every other backend, cell by cell.

    Pairs a successful ``reference`` cell with each successful cell of another backend that
    matches it on :data:`MATCH_KEYS` (same problem, mode, dtype, device, n, dt, tolerances, threads),
    with the same method where the fused kernel ran it, else with each fused method (e.g.
    torchdiffeq's dopri5 against fused Tsit5). When the reference backend has
    several variants, only its default variant ("" or else the first by name) is the reference.

    Returns:
        One row per pair: the match keys, ``fused_method``, ``peer``, ``peer_variant``,
        ``peer_method``, ``fused_s``/``peer_s`` (medians), ``speedup`` (ratio of medians),
        ``speedup_min`` (ratio of mins, as the paper), ``err_fused``/``err_peer``,
        ``steps_fused``/``steps_peer`` and ``note`` (why the comparison is not like for like).
    """
    ok = cells[cells["success"]]
    ref = ok[ok["backend"] == reference]
    if ref.empty:
        return pd.DataFrame(columns=[*MATCH_KEYS, "fused_method", "peer", "peer_variant", "peer_method",
                                     "fused_s", "peer_s", "speedup", "speedup_min", "err_fused",
                                     "err_peer", "steps_fused", "steps_peer", "note"])
    default_variant = "" if (ref["variant"] == "").any() else sorted(ref["variant"])[0]
    ref = ref[ref["variant"] == default_variant]
    peers = ok[ok["backend"] != reference]
    left = _join_frame(ref)[[*MATCH_KEYS, "method", "time_median_s", "time_min_s", "max_rel_err",
                             "steps_mean", "rhs_evals_mean"]]
    right = _join_frame(peers)[[*MATCH_KEYS, "backend", "variant", "method", "time_median_s",
                                "time_min_s", "max_rel_err", "steps_mean", "rhs_evals_mean"]]
    pairs = left.merge(right, on=list(MATCH_KEYS), suffixes=("_f", "_p"))
    # Like for like where possible: a peer cell whose method the fused kernel also ran at these
    # settings is compared with that method only; other peer cells (dopri5, kvaerno5, SciPy's
    # methods) are compared with every fused method run at the same settings.
    same = pairs["method_f"] == pairs["method_p"]
    peer_cell = [*MATCH_KEYS, "backend", "variant", "method_p"]
    has_same = same.groupby([pairs[k] for k in peer_cell], dropna=False).transform("any")
    pairs = pairs[same | ~has_same].reset_index(drop=True)
    out = pd.DataFrame({k: pairs[k] for k in MATCH_KEYS})
    for col in FLOAT_KEYS:
        out[col] = out[col].where(out[col] != _NO_VALUE)
    out["fused_method"] = pairs["method_f"]
    out["peer"] = pairs["backend"]
    out["peer_variant"] = pairs["variant"]
    out["peer_method"] = pairs["method_p"]
    out["fused_s"] = pairs["time_median_s_f"]
    out["peer_s"] = pairs["time_median_s_p"]
    out["speedup"] = pairs["time_median_s_p"] / pairs["time_median_s_f"]
    out["speedup_min"] = pairs["time_min_s_p"] / pairs["time_min_s_f"]
    out["err_fused"] = pairs["max_rel_err_f"]
    out["err_peer"] = pairs["max_rel_err_p"]
    out["steps_fused"] = pairs["steps_mean_f"]
    out["steps_peer"] = pairs["steps_mean_p"]
    out["note"] = [comparison_note(*row) for row in zip(
        out["fused_method"], out["peer_method"], out["err_fused"], out["err_peer"],
        out["steps_fused"], out["steps_peer"])]
    return out.sort_values([*MATCH_KEYS[:4], "peer", "peer_variant", "peer_method", "fused_method",
                            "dt", "rtol", "atol", "n"], kind="mergesort",
                           na_position="last").reset_index(drop=True)


def comparison_note(fused_method: str, peer_method: str, err_fused: float, err_peer: float,
                    steps_fused: float, steps_peer: float) -> str:
    """Why a speedup is not like for like: another method, accuracy or amount of work."""
    notes = []
    if fused_method != peer_method:
        text = f"different method ({peer_method} vs {fused_method})"
        if peer_method == "rk4_38":
            text += "; torchdiffeq's rk4 is the 3/8 rule and it has no Tsit5"
        notes.append(text)
    if np.isfinite(err_fused) and np.isfinite(err_peer) and err_fused > 0 and err_peer > 0:
        if max(err_fused, err_peer) / min(err_fused, err_peer) > 10:
            notes.append(f"accuracy differs (max rel err {err_peer:.2g} vs {err_fused:.2g})")
    if np.isfinite(steps_fused) and np.isfinite(steps_peer) and steps_fused > 0 and steps_peer > 0:
        if max(steps_fused, steps_peer) / min(steps_fused, steps_peer) > WORK_DIFFERS:
            notes.append(f"work differs (mean steps {steps_peer:.4g} vs {steps_fused:.4g})")
    return "; ".join(notes)


def paper_speedups(published: pd.DataFrame | None) -> pd.DataFrame:
    """The paper's own ratios: each published implementation's time over the Julia kernel's.

    Pairs rows of the same GPU, problem, mode and n (GPUs are never mixed). For stiff problems
    the kernel has several methods; every kernel method is paired.

    Returns:
        Columns gpu, problem, mode, n, implementation, method (the peer's), kernel_method,
        kernel_s, peer_s, speedup, branch, note (says when the two ran in different precisions).
    """
    cols = ["gpu", "problem", "mode", "n", "implementation", "method", "kernel_method", "kernel_s",
            "peer_s", "speedup", "branch", "note"]
    if published is None or published.empty:
        return pd.DataFrame(columns=cols)
    kernel = published[published["implementation"] == pd_.KERNEL]
    others = published[~published["implementation"].isin([pd_.KERNEL, pd_.KERNEL_VENDOR])]
    pairs = kernel.merge(others, on=["gpu", "problem", "mode", "n"], suffixes=("_k", "_p"))
    pairs = pairs[pairs["gpu"] != pd_.GPU_NOT_STATED]
    out = pd.DataFrame({
        "gpu": pairs["gpu"], "problem": pairs["problem"], "mode": pairs["mode"], "n": pairs["n"],
        "implementation": pairs["implementation_p"], "method": pairs["method_p"],
        "kernel_method": pairs["method_k"], "kernel_s": pairs["time_s_k"], "peer_s": pairs["time_s_p"],
        "speedup": pairs["time_s_p"] / pairs["time_s_k"], "branch": pairs["branch_p"],
        "note": [f"paper: {impl} ran {dp}, the kernel {dk}" if dp != dk else ""
                 for impl, dp, dk in zip(pairs["implementation_p"], pairs["dtype_p"], pairs["dtype_k"])],
    }, columns=cols)
    return out.sort_values(["problem", "mode", "gpu", "implementation", "kernel_method", "n"],
                           kind="mergesort").reset_index(drop=True)


def paper_ratio(paper: pd.DataFrame, peer: str, problem: str, mode: str, n: int, gpu: str,
                fused_method: str) -> tuple[float, str]:
    """The paper's ratio (peer's counterpart over the Julia kernel) at one n on one GPU.

    Returns:
        ``(ratio, note)``; ratio is NaN when the paper has no such pair (or no single one).
    """
    implementation = PUBLISHED_PEER.get(peer)
    if implementation is None or paper.empty:
        return float("nan"), ""
    rows = paper[(paper["implementation"] == implementation) & (paper["problem"] == problem)
                 & (paper["mode"] == mode) & (paper["n"] == n) & (paper["gpu"] == gpu)]
    # Same kernel method when the paper has it (stiff problems); else the one method it ran.
    same = rows[rows["kernel_method"] == fused_method]
    rows = same if not same.empty else rows
    if len(rows) != 1:
        return float("nan"), ""
    row = rows.iloc[0]
    note = row["note"]
    if row["kernel_method"] != fused_method:
        note = "; ".join(x for x in (note, f"paper kernel method {row['kernel_method']}") if x)
    return float(row["speedup"]), note
