"""How series look and are named: one colour per backend, line styles for variants, labels.

Every figure takes its colours from :data:`BACKEND_COLOURS` so a backend is the same colour in
every figure. Published series are drawn dashed (:data:`PUBLISHED_LINESTYLE`) in the colour of
the backend they correspond to, with a marker per GPU; our variants never use the dashed style.
"""
from __future__ import annotations

import json
import math
import re
import textwrap
import zlib

from harness.results import paper as pd_

#: One colour per backend (registry names), fixed across figures.
BACKEND_COLOURS: dict[str, str] = {
    "fused": "#2ca02c",
    "array": "#8c564b",
    "diffrax": "#1f77b4",
    "torchdiffeq": "#d62728",
    "torchode": "#ff7f0e",
    "scipy": "#7f7f7f",
    "jax-handwritten": "#17becf",
    "torch-handwritten": "#e377c2",
    "pallas": "#9467bd",
    "cuda-cpp": "#006d2c",
}

#: Colours for backends not in the table, picked by a stable hash of the name.
_FALLBACK_COLOURS = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")

#: Human names of backends, for legends and the report.
BACKEND_LABELS: dict[str, str] = {
    "fused": "fused kernel (ours)",
    "array": "array-style replica (ours)",
    "diffrax": "diffrax (JAX)",
    "torchdiffeq": "torchdiffeq batched (PyTorch)",
    "torchode": "torchode (PyTorch)",
    "scipy": "SciPy solve_ivp (serial)",
    "jax-handwritten": "hand-written JAX",
    "torch-handwritten": "hand-written PyTorch",
    "pallas": "Pallas kernel (JAX)",
    "cuda-cpp": "hand-written C++ (control)",
}

#: Method names as the papers write them. torchdiffeq's rk4 is the 3/8 rule: say so.
METHOD_LABELS: dict[str, str] = {
    "tsit5": "Tsit5",
    "rk4": "RK4",
    "rk4_38": "RK4 3/8 rule",
    "dopri5": "Dopri5",
    "rk45": "RK45",
    "rosenbrock23": "Rosenbrock23",
    "rodas4": "Rodas4",
    "rodas5p": "Rodas5P",
    "kvaerno5": "Kvaerno5",
    "lsoda": "LSODA",
    "radau": "Radau",
    "bdf": "BDF",
    "rkck45": "RKCK45",
    "em": "Euler-Maruyama",
}

#: Line styles for a backend's variants, in sorted-variant order ("" first). Never "--".
VARIANT_LINESTYLES = ("-", ":", "-.", (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)), (0, (5, 1)))

#: Published series: dashed. Where one figure shows several published methods of the same
#: implementation and GPU (the stiff solvers), the later ones get other dash patterns.
PUBLISHED_LINESTYLE = "--"
_PUBLISHED_DASHES = ("--", (0, (8, 2)), (0, (2.5, 1.5)), (0, (8, 2, 2, 2)))

#: Markers per method, so two methods of one backend stay apart.
_METHOD_MARKERS = {"tsit5": "o", "rk4": "s", "rk4_38": "D", "dopri5": "P", "rosenbrock23": "^",
                   "rodas4": "v", "rodas5p": "<", "kvaerno5": ">", "lsoda": "X", "radau": "h",
                   "bdf": "H", "rkck45": "d"}
_FALLBACK_MARKERS = ("o", "s", "D", "^", "v", "<", ">", "P", "X")

#: Published series: a marker per GPU.
_GPU_MARKERS = {"Tesla V100": "*", "Quadro RTX 5000": "p"}

#: The backend whose colour a published implementation borrows (the closest counterpart).
_PUBLISHED_COUNTERPART = {
    pd_.KERNEL: "fused",
    pd_.KERNEL_VENDOR: "fused",
    pd_.JAX: "diffrax",
    pd_.TORCH: "torchdiffeq",
    pd_.GPU_ARRAY: "array",
}
_PUBLISHED_COLOURS = {pd_.MPGOS: "#bcbd22", pd_.CPU_THREADS: "#000000"}


def _stable_pick(name: str, choices: tuple) -> object:
    return choices[zlib.crc32(name.encode()) % len(choices)]


def backend_colour(backend: str) -> str:
    """The fixed colour of ``backend`` (a stable hashed colour for unknown names)."""
    return BACKEND_COLOURS.get(backend) or str(_stable_pick(backend, _FALLBACK_COLOURS))


def backend_label(backend: str) -> str:
    return BACKEND_LABELS.get(backend, backend)


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_marker(method: str) -> str:
    return _METHOD_MARKERS.get(method) or str(_stable_pick(method, _FALLBACK_MARKERS))


def variant_linestyle(variant: str, variants: list[str]) -> object:
    """The line style of ``variant`` among the backend's ``variants`` present in the figure."""
    ordered = sorted(set(variants) | {variant}, key=lambda v: (v != "", v))
    return VARIANT_LINESTYLES[ordered.index(variant) % len(VARIANT_LINESTYLES)]


#: The paper's series are grey (never a backend colour), one shade per implementation, so a
#: reader never mistakes a published GPU series for one of ours; the legend names the GPU.
_PUBLISHED_GREYS = {pd_.KERNEL: "#222222", pd_.KERNEL_VENDOR: "#222222", pd_.JAX: "#6e6e6e",
                    pd_.TORCH: "#9a9a9a", pd_.GPU_ARRAY: "#4a4a4a", pd_.MPGOS: "#b5b5b5",
                    pd_.CPU_THREADS: "#000000"}
_FALLBACK_GREYS = ("#555555", "#888888", "#aaaaaa")


def published_colour(implementation: str) -> str:
    """A grey per published implementation (ours own the colours)."""
    return _PUBLISHED_GREYS.get(implementation) or str(_stable_pick(implementation, _FALLBACK_GREYS))


#: Line style per tolerance (adaptive) or mode: the same tolerance looks the same in every figure.
_TOLERANCE_LINESTYLES = {1e-3: (0, (1, 1)), 1e-4: (0, (3, 1, 1, 1)), 1e-5: (0, (5, 1)),
                         1e-6: "-.", 1e-7: (0, (3, 1, 1, 1, 1, 1)), 1e-8: ":"}


def mode_linestyle(mode: str, rtol: float) -> object:
    """Solid for fixed step; one pattern per adaptive tolerance (never the published "--")."""
    if mode != "adaptive" or rtol is None or not math.isfinite(rtol):
        return "-"
    for tol, ls in _TOLERANCE_LINESTYLES.items():
        if math.isclose(rtol, tol, rel_tol=1e-6):
            return ls
    return (0, (2, 2, 6, 2))


def dtype_fill(dtype: str, colour: str) -> str:
    """Marker fill encodes the dtype: filled float32, hollow float64."""
    return "none" if dtype == "float64" else colour


#: Markers per variant, in sorted-variant order ("" first): the variant is the marker shape.
VARIANT_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")


def variant_marker(variant: str, variants: list[str]) -> str:
    ordered = sorted(set(variants) | {variant}, key=lambda v: (v != "", v))
    return VARIANT_MARKERS[ordered.index(variant) % len(VARIANT_MARKERS)]


def mode_text(mode: str, rtol: float) -> str:
    return "fixed" if mode != "adaptive" else f"tol {rtol:g}"


def published_linestyle(method: str, methods: list[str]) -> object:
    """The dash pattern of a published ``method`` among the ``methods`` shown for its series."""
    ordered = sorted(set(methods) | {method})
    return _PUBLISHED_DASHES[ordered.index(method) % len(_PUBLISHED_DASHES)]


def gpu_marker(gpu: str) -> str:
    return _GPU_MARKERS.get(gpu, "h")


def published_label(gpu: str, implementation: str, method: str = "", branch: str = "") -> str:
    """Legend text of a published series: always names its GPU (or says it ran on a CPU)."""
    where = gpu or "CPU"
    text = f"paper, {where}: {implementation}"
    if method:
        text += f" {method_label(method)}"
    if branch and branch != pd_.MAIN_BRANCH:
        text += f" ({branch})"
    return text


def format_seconds(seconds: float) -> str:
    """A time with a unit a reader takes in at once: '231 µs', '61.1 ms', '14.4 s'."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if abs(seconds) >= scale or unit == "ns":
            return f"{_sig3(seconds / scale)} {unit}"
    return f"{seconds} s"  # unreachable: the loop always returns


def format_ratio(ratio: float) -> str:
    """A speedup as '48.2×' (three significant figures)."""
    if ratio is None or not math.isfinite(ratio):
        return "n/a"
    return f"{_sig3(ratio)}×"


def format_ratio_digits(ratio: float) -> str:
    """:func:`format_ratio` without the × sign ('48.2'; 'n/a' when missing)."""
    return format_ratio(ratio).rstrip("×")


def format_number(x: object, spec: str = "g", missing: str = "") -> str:
    """``x`` formatted with the format ``spec``; ``missing`` for None, NaN or infinity.

    The one number formatter of the report's tables and sections (what a cell says when the
    value was not measured is the caller's choice: "" or "n/a")."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    return format(x, spec)


def _sig3(x: float) -> str:
    if x == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    return f"{x:.{digits}f}"


def flatten(value: object, prefix: str = "") -> dict[str, str]:
    """A nested dict/list as ``{"a.b": "value"}`` with string values (JSON for odd values)."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key in value:
            out.update(flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in value):
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
    elif prefix:
        if value is None or isinstance(value, (str, int, float, bool)):
            out[prefix] = "" if value is None else str(value)
        else:
            out[prefix] = json.dumps(value, default=str)
    return out


#: What the footnote shows, each found by the first matching flattened key (case-insensitive
#: regular expressions, tried in order), so differently named fingerprints still work.
_FOOTNOTE_FIELDS = (
    ("GPU", (r"(^|\.)gpu[_.]?(model|name)$", r"(^|\.)gpu$", r"(^|\.)gpus?(\[0\])?\.name$")),
    ("driver", (r"driver(_version)?$",)),
    ("CUDA", (r"(^|\.)cuda(_version)?$", r"cuda_runtime")),
    ("CPU", (r"(^|\.)cpu[_.]?(model|name)$", r"(^|\.)cpu$", r"processor")),
    ("cores", (r"logical_cores$", r"(cpu_)?cores?$", r"core_count", r"cpu_count", r"n_?cpus?$")),
    ("Python", (r"(^|\.)python(_version)?$", r"(^|\.)python\.version$")),
    ("numpy", (r"(^|\.)numpy$",)),
    ("numba", (r"(^|\.)numba$",)),
    ("jax", (r"(^|\.)jax$",)),
    ("diffrax", (r"(^|\.)diffrax$",)),
    ("torch", (r"(^|\.)torch$",)),
    ("torchdiffeq", (r"(^|\.)torchdiffeq$",)),
    ("cupy", (r"(^|\.)cupy",)),
    ("git", (r"(git[_.])?commit$", r"git[_.]?(sha|rev)",)),
    ("dirty", (r"dirty$",)),
    ("suite", (r"(^|\.)suite$",)),
)


def environment_fields(env: dict | None) -> list[tuple[str, str]]:
    """``[(label, value)]`` of the fingerprint entries a footnote shows, found defensively."""
    flat = flatten(env or {})
    keys = sorted(flat, key=lambda k: (k.count("."), len(k), k))
    found: list[tuple[str, str]] = []
    used: set[str] = set()
    for label, patterns in _FOOTNOTE_FIELDS:
        for pattern in patterns:
            key = next((k for k in keys if k not in used and re.search(pattern, k.lower())
                        and flat[k] != ""), None)
            if key is not None:
                used.add(key)
                value = flat[key]
                if label == "git":
                    value = value[:12]
                found.append((label, value))
                break
    return found


def footnote_text(env: dict | None, devices: list[str], extra: list[str] = ()) -> str:
    """The figure footnote: devices in the results, the fingerprint's key entries, notes."""
    parts = ["device: " + ("/".join(devices) if devices else "n/a")]
    parts += [f"{label}: {value}" for label, value in environment_fields(env)]
    text = "; ".join(parts)
    lines = textwrap.wrap(text, 110)
    for note in extra:
        lines += textwrap.wrap(note, 110)
    return "\n".join(lines)


#: What a "launch" is, per counter: the units differ, so figures name them (never "launches").
_DISPATCH_KINDS = (("ATen", "ATen operators"), ("NumPy array operations", "array operations"),
                   ("CuPy", "array operations"), ("jitted callables", "XLA executable calls"),
                   ("kernel entry point", "compiled-kernel calls"), ("kernel launch", "kernel launches"),
                   ("cuda", "kernel launches"))


def dispatch_kind(counter: str) -> str:
    """The unit of a ``launches`` value, read from its ``launch_counter`` text."""
    for needle, kind in _DISPATCH_KINDS:
        if needle.lower() in (counter or "").lower():
            return kind
    return "dispatches"


def combo_label(variant: str, method: str) -> str:
    return f"{variant or 'default'}, {method_label(method)}"


def series_kw(backend: str, variant: str, method: str, combos: list[str], mode: str, rtol: float,
              dtype: str) -> dict:
    """The one encoding of every figure: colour = backend, line style = mode or tolerance,
    marker shape = variant and method (one meaning per figure, see :func:`key_legend`),
    marker fill = dtype (hollow float64)."""
    colour = backend_colour(backend)
    return dict(color=colour, linestyle=mode_linestyle(mode, rtol),
                marker=VARIANT_MARKERS[sorted(combos).index(combo_label(variant, method)) % len(VARIANT_MARKERS)],
                markersize=4, linewidth=1.3, markerfacecolor=dtype_fill(dtype, colour))


def figure_combos(frame: pd.DataFrame) -> list[str]:
    """The (variant, method) combinations of a figure, whose markers :func:`series_kw` assigns."""
    return sorted({combo_label(v, m) for v, m in zip(frame["variant"], frame["method"])})
