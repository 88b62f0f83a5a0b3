"""The GPU time model against the paper's published timings (``results/paper_data``).

Predictions use only machine-code counts (``sources``), the spec table (``model.GPUS``) and, for
step and launch counts, what the harness measured in a results table (adaptive attempts per
trajectory; launches per array-style solve). Nothing is fitted to the published times: the
ratios predicted / published fall out.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.gpu_profile import model, sources
from harness.gpu_profile.sass import CLASSES
from harness.results import paper as P
from problems.registry import get_problem
from solvers.fused import KernelKey

PAPER_NS = tuple(8 * 4 ** k for k in range(11))
#: Lorenz's fixed protocol: exactly 1000 steps.
FIXED_STEPS = 1000
#: Array-style memory traffic per launch and trajectory: an elementwise op on the state reads two
#: state-sized float32 arrays and writes one (3 arrays x 3 states x 4 bytes); an assumption,
#: stated, not measured.
ARRAY_BYTES_PER_LAUNCH = 3 * 3 * 4
RATIO_NS = (8, 32768, 131072, 8388608)
GOAL_PS = 5.0


def headline_keys():
    return [KernelKey("lorenz", "tsit5", "fixed", "float32", target="cuda"),
            KernelKey("lorenz", "tsit5", "adaptive", "float32", target="cuda"),
            KernelKey("lorenz", "rk4_38", "fixed", "float32", target="cuda")]


def headline_profiles() -> pd.DataFrame:
    """Profile rows of the Lorenz float32 kernels (Numba's and, where it has them, the cuda-cpp
    backend's) and the MPGOS variant on sm_70/75/90."""
    return pd.DataFrame(sources.fused_profiles(sources.ARCHS, headline_keys(), include_mpgos=True))


def profile_row(profiles: pd.DataFrame, method: str, mode: str, arch: str, variant: str = "",
         source: str = sources.NUMBA_SOURCE):
    """The ok Lorenz float32 profile row of ``source``'s kernel (Numba's fused one by default;
    rows without a ``source``, from before it existed, are Numba's)."""
    src = profiles["source"] if "source" in profiles else pd.Series(sources.NUMBA_SOURCE, index=profiles.index)
    sel = profiles[(profiles["problem"] == "lorenz") & (profiles["method"] == method) & (profiles["mode"] == mode)
                   & (profiles["dtype"] == "float32") & (profiles["arch"] == arch)
                   & (profiles["variant"].fillna("") == variant) & (profiles["status"] == "ok")
                   & (src.fillna(sources.NUMBA_SOURCE) == source)]
    return None if sel.empty else sel.iloc[0]


def step_counts(row) -> model.StepCounts:
    return model.StepCounts({c: int(row[f"step_{c}"]) for c in CLASSES})


# ---- counts measured by the harness ------------------------------------------------------------------

def _ok(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "ok"] if "status" in df else df.iloc[0:0]


def committed_results() -> pd.DataFrame:
    """The newest committed results table (fallback for counts a run did not measure)."""
    root = Path(__file__).resolve().parents[2] / "results"
    runs = sorted(p for p in root.glob("*/results.csv"))
    if not runs:
        return pd.DataFrame()
    df = pd.read_csv(runs[-1])
    df.attrs["source"] = str(runs[-1].parent.name)
    return df


def adaptive_attempts(df: pd.DataFrame) -> tuple[float | None, str]:
    """Mean attempts (accepted + rejected) per trajectory of the fused Lorenz Tsit5 float32
    adaptive solve at the paper's tolerance 1e-8, from the largest N measured."""
    for frame, where in ((df, "this run"), (committed_results(), "committed run")):
        if frame.empty or "rtol" not in frame:
            continue
        sel = _ok(frame)
        sel = sel[(sel["backend"] == "fused") & (sel["problem"] == "lorenz") & (sel["method"] == "tsit5")
                  & (sel["mode"] == "adaptive") & (sel["dtype"] == "float32") & (sel["rtol"] == 1e-8)]
        if not sel.empty:
            big = sel[sel["n"] == sel["n"].max()]
            rej = big["rejected_mean"].fillna(0) if "rejected_mean" in big else 0.0
            val = float((big["steps_mean"] + rej).median())
            return val, f"{where} {frame.attrs.get('source', '')}".strip() + f", N = {int(big['n'].iloc[0])}"
    return None, "no fused Lorenz adaptive 1e-8 row in this run or a committed run"


def launches_per_step(df: pd.DataFrame, backend: str, method: str, mode: str = "fixed") -> tuple[float | None, str]:
    """Launches (array operations / ATen operators / GPU kernels) per solve / steps, for a backend's
    Lorenz float32 cells, preferring GPU-counted rows."""
    for frame, where in ((df, "this run"), (committed_results(), "committed run")):
        if frame.empty or "launches" not in frame:
            continue
        sel = _ok(frame)
        sel = sel[(sel["backend"] == backend) & (sel["problem"] == "lorenz") & (sel["method"] == method)
                  & (sel["mode"] == mode) & sel["launches"].notna()]
        if backend == "diffrax":  # on a CPU the count is compiled-executable dispatches, not kernels
            sel = sel[sel["device"] == "gpu"]
        if sel.empty:
            continue
        gpu = sel[sel["device"] == "gpu"]
        sel = gpu if not gpu.empty else sel
        steps = sel["steps_max"] if mode == "adaptive" else sel["steps_mean"]
        per_step = float((sel["launches"] / steps).median())
        return per_step, f"{where}, {sel['device'].iloc[0]} count ({sel['launch_counter'].iloc[0] if 'launch_counter' in sel else ''})"
    return None, f"no {backend} launch count (a GPU run's CUPTI count is needed for diffrax)"


# ---- predictions and the comparison ------------------------------------------------------------------

def predictions(profiles: pd.DataFrame, df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Predicted times on each card of the spec table over the paper's N; notes on what is missing."""
    rows, notes = [], []
    attempts, where = adaptive_attempts(df)
    notes.append(f"adaptive attempts per trajectory: {attempts:.1f} ({where})" if attempts else where)
    prob = get_problem("lorenz")
    bytes_traj = model.fused_bytes_per_trajectory(prob.n_states, prob.n_params, 4)
    for key, gpu in model.GPUS.items():
        series = [("EnsembleGPUKernel (Julia)", "tsit5", "fixed", "", FIXED_STEPS),
                  ("MPGOS (C++)", "tsit5", "fixed", sources.MPGOS_VARIANT, FIXED_STEPS)]
        if attempts:
            series.append(("EnsembleGPUKernel (Julia)", "tsit5", "adaptive", "", attempts))
        for impl, method, mode, variant, steps in series:
            r = profile_row(profiles, method, mode, gpu.arch, variant)
            if r is None:
                continue
            for n in PAPER_NS:
                p = model.predict_fused(step_counts(r), int(r["registers"]), gpu, n, steps,
                                        bytes_per_trajectory=bytes_traj)
                rows.append(dict(gpu=key, gpu_name=gpu.name, compares_with=impl, series=f"fused {method} {mode}"
                                 + (" (double literals)" if variant else ""), mode=mode, n=n,
                                 predicted_s=p.total_s, compute_s=p.compute_s, launch_s=p.launch_s,
                                 memory_s=p.memory_s, binding_pipe_at_full_load=p.bound, arch=r["arch"], assembled_for=r["assembled_for"]))
        for impl, backend, method in (("EnsembleGPUArray (Julia)", "array", "tsit5"),
                                      ("diffrax vmap (JAX)", "diffrax", "tsit5"),
                                      ("torchdiffeq (PyTorch)", "torchdiffeq", "rk4_38")):
            per_step, src = launches_per_step(df, backend, method)
            if per_step is None:
                if key == "V100":
                    notes.append(f"{backend}: {src}")
                continue
            if key == "V100":
                notes.append(f"{backend} {method}: {per_step:.1f} launches per step ({src})")
            for n in PAPER_NS:
                t = model.predict_array(per_step * FIXED_STEPS, n, gpu,
                                        bytes_per_launch_per_trajectory=ARRAY_BYTES_PER_LAUNCH)
                rows.append(dict(gpu=key, gpu_name=gpu.name, compares_with=impl,
                                 series=f"{backend} {method} fixed (array style)", mode="fixed", n=n,
                                 predicted_s=t, compute_s=float("nan"), launch_s=float("nan"),
                                 memory_s=float("nan"), binding_pipe_at_full_load="launches", arch="", assembled_for=""))
    return pd.DataFrame(rows), notes


def published() -> pd.DataFrame:
    pub = P.load_paper_data()
    if pub.empty:
        return pub
    pub = pub[pub["problem"] == "lorenz"].copy()
    # EnsembleGPUArray's artifact names no GPU: it is compared with the V100 model, labelled so.
    unstated = (pub["implementation"] == P.GPU_ARRAY) & (pub["gpu"] == P.GPU_NOT_STATED)
    pub["gpu_key"] = pub["gpu"].map(model.PAPER_GPU_KEYS)
    pub.loc[unstated, "gpu_key"] = "V100"
    pub.loc[unstated, "implementation"] = P.GPU_ARRAY
    return pub[pub["gpu_key"].notna()]


def ratio_table(pred: pd.DataFrame, pub: pd.DataFrame) -> pd.DataFrame:
    """predicted / published at RATIO_NS for every (card, published series, mode) both have."""
    if pred.empty or pub.empty:
        return pd.DataFrame()
    rows = []
    for (gpu, impl, mode, series), g in pred.groupby(["gpu", "compares_with", "mode", "series"]):
        p = pub[(pub["gpu_key"] == gpu) & (pub["implementation"] == impl) & (pub["mode"] == mode)]
        if p.empty:
            continue
        row = dict(gpu=gpu, published=f"{impl}, {mode} ({', '.join(sorted(set(p['method'])))})", model=series)
        for n in RATIO_NS:
            a, b = g[g["n"] == n], p[p["n"] == n]
            row[f"N={n}"] = (float(a["predicted_s"].iloc[0]) / float(b["time_s"].iloc[0])
                             if len(a) and len(b) else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def figure(pred: pd.DataFrame, pub: pd.DataFrame, out_dir: Path, save) -> Path | None:
    """Model lines and published points, one panel per paper card, written by ``save`` (the report's
    figure saver, harness.report.figures.canvas.write_files, passed down by the report); returns
    the PNG's path."""
    if pred.empty:
        return None
    import matplotlib  # optional (figures only), and slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the Agg backend: no display here

    out_dir.mkdir(parents=True, exist_ok=True)
    cards = [k for k in ("V100", "RTX5000") if k in set(pred["gpu"])]
    fig, axes = plt.subplots(1, len(cards), figsize=(6 * len(cards), 4.5), squeeze=False)
    colours = {}
    for ax, card in zip(axes[0], cards):
        for impl, g in pred[pred["gpu"] == card].groupby(["compares_with", "mode", "series"]):
            label = f"model: {impl[2]}"
            c = colours.setdefault((impl[0], impl[1]), f"C{len(colours)}")
            ax.plot(g["n"], g["predicted_s"], "-", color=c, label=label)
            if not pub.empty:
                p = pub[(pub["gpu_key"] == card) & (pub["implementation"] == impl[0]) & (pub["mode"] == impl[1])]
                if not p.empty:
                    ax.plot(p["n"], p["time_s"], "o", color=c, mfc="none", label=f"published: {impl[0]}, {impl[1]}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("trajectories N")
        ax.set_ylabel("time per solve (s)")
        ax.set_title(f"{model.GPUS[card].name}: model (lines) vs published (points)", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = save(fig, out_dir, "gpu_model_vs_published", pred, dpi=120)[0]
    plt.close(fig)
    return path


def spec_for_gpu_name(name: str) -> str | None:
    """The spec key of a GPU named by nvidia-smi ("NVIDIA H200" -> "H200"), or None."""
    text = (name or "").upper().replace(" ", "")
    for key in ("H200", "H100", "V100", "RTX5000"):
        if key in text:
            return key
    return None


def measured_vs_predicted(df: pd.DataFrame, gpu_name: str, profiles: pd.DataFrame) -> pd.DataFrame:
    """For a run with fused GPU rows of Lorenz Tsit5 float32: predicted vs measured median time."""
    key = spec_for_gpu_name(gpu_name)
    if key is None or df is None or df.empty or "device" not in df:
        return pd.DataFrame()
    gpu = model.GPUS[key]
    sel = _ok(df)
    sel = sel[(sel["backend"] == "fused") & (sel["device"] == "gpu") & (sel["problem"] == "lorenz")
              & (sel["method"] == "tsit5") & (sel["dtype"] == "float32")]
    prob = get_problem("lorenz")
    bytes_traj = model.fused_bytes_per_trajectory(prob.n_states, prob.n_params, 4)
    rows = []
    for (mode, n), g in sel.groupby(["mode", "n"]):
        r = profile_row(profiles, "tsit5", mode, gpu.arch)
        if r is None:
            continue
        steps = float(g["steps_mean"].iloc[0]) + (float(g["rejected_mean"].fillna(0).iloc[0])
                                                   if "rejected_mean" in g else 0.0)
        p = model.predict_fused(step_counts(r), int(r["registers"]), gpu, int(n), steps,
                                bytes_per_trajectory=bytes_traj)
        t = float(g["time_s"].median())
        rows.append(dict(gpu=key, mode=mode, n=int(n), steps=steps, measured_s=t, predicted_s=p.total_s,
                         ratio=p.total_s / t))
    return pd.DataFrame(rows)
