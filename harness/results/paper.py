"""The paper's published timings as a tidy table, for plotting beside (never inside) our rows.

The folder (``results/paper_data``, shipped with the project; its README.md names the source
repository and commit) holds the raw files of Utkarsh et al.'s
artifact: one line per ensemble size, ``N time_ms``, the minimum over repeats, the GPU only in the
folder name. :func:`load_paper_data` turns every file it recognises into rows of
:data:`COLUMNS`; a missing folder gives an empty table (figures then omit the published series).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: Environment variable naming the folder; it wins over the shipped copy.
PAPER_DATA_ENV = "PAPER_DATA_DIR"
#: The shipped copy, relative to the repository root (nothing outside the checkout is read).
SHIPPED = Path("results") / "paper_data"

#: The columns of the published table, in order.
COLUMNS = ("gpu", "implementation", "mode", "problem", "method", "dtype", "n", "time_s",
           "source_file", "branch", "note")

#: Implementation labels (also used by the figures to pick a colour).
KERNEL = "EnsembleGPUKernel (Julia)"
KERNEL_VENDOR = "EnsembleGPUKernel (Julia, vendor run)"
JAX = "diffrax vmap (JAX)"
TORCH = "torchdiffeq (PyTorch)"
MPGOS = "MPGOS (C++)"
GPU_ARRAY = "EnsembleGPUArray (Julia)"
CPU_THREADS = "EnsembleThreads CPU (Julia)"

MAIN_BRANCH = "main"
STIFF_BRANCH = "u/stiff branch"

#: What the folder names say about the hardware. "" means the run was on a CPU.
GPU_NOT_STATED = "GPU not stated"
_GPU_BY_FOLDER = {
    "Tesla_V100": "Tesla V100",
    "RTX_5000": "Quadro RTX 5000",
    # The vendor comparison: the README says devices/CUDA is the RTX 5000 run.
    "CUDA": "Quadro RTX 5000",
    "AMDGPU": "AMD GPU (model not stated)",
    "Metal": "Apple GPU via Metal (model not stated)",
    "oneAPI": "Intel GPU via oneAPI (model not stated)",
}


@dataclass(frozen=True)
class _Rule:
    """How to read one family of files: ``pattern`` matches the path relative to the folder.

    ``methods`` maps mode -> method name (our spelling, e.g. "tsit5", "rk4_38"). The pattern's
    named groups: ``folder`` (the GPU folder), ``mode`` ("unadaptive"/"adaptive"), and
    optionally ``tag`` (the stiff-solver suffix, looked up in ``tag_methods``).
    """

    pattern: str
    implementation: str
    problem: str
    methods: dict
    dtype: str
    note: str
    tag_methods: dict | None = None


_MODE = r"(?P<mode>unadaptive|adaptive)"
_RULES = (
    # The stiff files first: their paths also match the broader Lorenz patterns' folders.
    _Rule(r"^(?P<folder>Tesla_V100)/Julia/stiff_ode/Julia_times_(?P<mode>adaptive)_(?P<tag>rb|rs4|rs5p)\.txt$",
          KERNEL, "robertson", {}, "float32",
          "Robertson, k3 = linspace(10, 1e4, N); solver default tolerances",
          tag_methods={"rb": "rosenbrock23", "rs4": "rodas4", "rs5p": "rodas5p"}),
    _Rule(r"^(?P<folder>Tesla_V100)/JAX/stiff_ode/Jax_times_(?P<mode>adaptive)\.txt$",
          JAX, "robertson", {"adaptive": "kvaerno5"}, "float64",
          "Robertson; Kvaerno5, rtol = atol = 1e-8; no block_until_ready in the timed region"),
    _Rule(r"^Julia/devices/(?P<folder>AMDGPU|CUDA|Metal|oneAPI)/stiff_ode/Julia_times_(?P<mode>adaptive)\.txt$",
          KERNEL_VENDOR, "robertson", {"adaptive": "rosenbrock23"}, "float32",
          "Robertson; GPURosenbrock23, solver default tolerances"),
    _Rule(rf"^(?P<folder>Tesla_V100|RTX_5000)/Julia/Julia_times_{_MODE}\.txt$",
          KERNEL, "lorenz", {"fixed": "tsit5", "adaptive": "tsit5"}, "float32",
          "kernel time only; problem upload excluded"),
    _Rule(rf"^(?P<folder>Tesla_V100|RTX_5000)/JAX/Jax_times_{_MODE}\.txt$",
          JAX, "lorenz", {"fixed": "tsit5", "adaptive": "tsit5"}, "float32",
          "no block_until_ready in the timed region"),
    _Rule(rf"^(?P<folder>Tesla_V100|RTX_5000)/PyTorch/Torch_times_{_MODE}\.txt$",
          TORCH, "lorenz", {"fixed": "rk4_38"}, "float32",
          "torchdiffeq fork under torch.vmap; rk4 is the 3/8 rule; no torch.cuda.synchronize"),
    _Rule(rf"^(?P<folder>Tesla_V100|RTX_5000)/CPP/MPGOS_times_{_MODE}\.txt$",
          MPGOS, "lorenz", {"fixed": "rk4", "adaptive": "rkck45"}, "float32",
          "Lorenz literals are double: the arithmetic probably ran in float64"),
    _Rule(rf"^Julia/EnsembleGPUArray/Julia_EnGPUArray_times_{_MODE}\.txt$",
          GPU_ARRAY, "lorenz", {"fixed": "rk4", "adaptive": "tsit5"}, "float32",
          "array style, one kernel per operation; adaptive used abstol 1e-6, reltol 1e-3; "
          "GPU not stated in the artifact"),
    _Rule(rf"^Julia/devices/(?P<folder>AMDGPU|CUDA|Metal|oneAPI)/Julia_times_{_MODE}\.txt$",
          KERNEL_VENDOR, "lorenz", {"fixed": "tsit5", "adaptive": "tsit5"}, "float32",
          "vendor comparison"),
    _Rule(rf"^Julia/CPU/times_{_MODE}\.txt$",
          CPU_THREADS, "lorenz", {"fixed": "tsit5", "adaptive": "tsit5"}, "float64",
          "16 CPU threads"),
    _Rule(rf"^Julia/CPU/SDE/times_{_MODE}\.txt$",
          CPU_THREADS, "linear_sde", {"fixed": "em"}, "float64",
          "linear SDE du = 1.5 u dt + 0.01 u dW, Euler-Maruyama dt = 1/256, 16 CPU threads"),
    _Rule(rf"^Julia/CPU/SDE/CRN/Julia_times_{_MODE}\.txt$",
          CPU_THREADS, "crn_sde", {"fixed": "em"}, "float64",
          "chemical reaction network SDE, Euler-Maruyama, 16 CPU threads"),
    _Rule(rf"^Julia/SDE/Julia_times_{_MODE}\.txt$",
          KERNEL, "linear_sde", {"fixed": "em"}, "float32",
          "linear SDE du = 1.5 u dt + 0.01 u dW, GPUEM dt = 1/256; GPU not stated in the artifact"),
    _Rule(rf"^Julia/SDE/CRN/Julia_times_{_MODE}\.txt$",
          KERNEL, "crn_sde", {"fixed": "em"}, "float32",
          "chemical reaction network SDE, GPUEM dt = 0.1; GPU not stated in the artifact"),
)


def repo_root() -> Path:
    """The repository root (the folder holding ``harness/``)."""
    return Path(__file__).resolve().parents[2]


def locate_paper_data(root: Path | None = None) -> tuple[Path | None, str]:
    """Find the published-data folder.

    Args:
        root: repository root to search from; defaults to this checkout's root.

    Returns:
        ``(folder, where)``: the folder, or None when absent, and a sentence saying where it
        was found or looked for (used in figure footnotes and the report).
    """
    env = os.environ.get(PAPER_DATA_ENV, "").strip()
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path, f"${PAPER_DATA_ENV} = {path}"
        # An explicit setting that points nowhere is a mistake worth seeing, not a fallback.
        return None, f"${PAPER_DATA_ENV} = {path} is not a folder"
    root = Path(root) if root is not None else repo_root()
    path = root / SHIPPED
    if path.is_dir():
        return path, str(SHIPPED)
    return None, f"not found ({path} is missing from this checkout; set ${PAPER_DATA_ENV})"


def empty_published() -> pd.DataFrame:
    """An empty published table with the right columns."""
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "n" else "float64" if c == "time_s" else "string")
                         for c in COLUMNS})


def read_timing_file(path: Path) -> list[tuple[int, float]]:
    """``[(n, time_ms), ...]`` from one ``N time_ms`` file (spaces, tabs or CRLF; blank lines skipped).

    Raises:
        ValueError: a line that is not two numbers, naming the file and line.
    """
    pairs = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            pairs.append((int(fields[0]), float(fields[1])))
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected 'N time_ms', got {line.strip()!r}") from None
    return pairs


def _rows_for(folder: Path, rel: str) -> list[dict] | None:
    """The rows of one file, or None when no rule describes it."""
    for rule in _RULES:
        match = re.match(rule.pattern, rel)
        if not match:
            continue
        groups = match.groupdict()
        mode = "fixed" if groups["mode"] == "unadaptive" else "adaptive"
        method = (rule.tag_methods or {}).get(groups.get("tag") or "", rule.methods.get(mode, ""))
        if rel.startswith("Julia/CPU/"):
            gpu = ""
        else:
            gpu = _GPU_BY_FOLDER.get(groups.get("folder") or "", GPU_NOT_STATED)
        branch = STIFF_BRANCH if "/stiff_ode/" in rel else MAIN_BRANCH
        return [dict(gpu=gpu, implementation=rule.implementation, mode=mode, problem=rule.problem,
                     method=method, dtype=rule.dtype, n=n, time_s=ms / 1e3, source_file=rel,
                     branch=branch, note=rule.note)
                for n, ms in read_timing_file(folder / rel)]
    return None


def load_paper_data(folder: Path | str | None = None) -> pd.DataFrame:
    """The published timings as a tidy table of :data:`COLUMNS` (``time_s`` = min over repeats).

    Args:
        folder: the paper_data folder; None locates it with :func:`locate_paper_data`.

    Returns:
        One row per (file, N), sorted; empty (with the columns) when the folder is absent.
        ``frame.attrs["source"]`` says where the data came from or where it was looked for.
        Files no rule describes, and malformed files, are skipped with a warning.
    """
    if folder is None:
        path, where = locate_paper_data()
    else:
        path = Path(folder)
        where = str(path) if path.is_dir() else f"{path} is not a folder"
        path = path if path.is_dir() else None
    if path is None:
        frame = empty_published()
        frame.attrs["source"] = where
        return frame
    rows: list[dict] = []
    for file in sorted(path.rglob("*.txt")):
        rel = file.relative_to(path).as_posix()
        try:
            found = _rows_for(path, rel)
        except ValueError as exc:
            warnings.warn(f"paper data: skipped a malformed file: {exc}", stacklevel=2)
            continue
        if found is None:
            warnings.warn(f"paper data: no rule describes {rel}; skipped", stacklevel=2)
            continue
        rows.extend(found)
    frame = pd.DataFrame(rows, columns=list(COLUMNS)) if rows else empty_published()
    frame = frame.astype({"n": "int64", "time_s": "float64"})
    frame = frame.sort_values(["problem", "mode", "implementation", "gpu", "method", "source_file", "n"],
                              kind="mergesort").reset_index(drop=True)
    frame.attrs["source"] = where
    return frame
