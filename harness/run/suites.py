"""Benchmark suites: TOML files in ``harness/suites/``, validated strictly, expanded to cells.

A suite file::

    description = "one line shown by `python -m harness list`"
    device = "cpu"            # cpu | gpu: where the cells run (an entry may override)
    repeats = 5               # timed repeats per cell (every sample is kept)
    warmups = 1               # untimed runs after the first (compile) call
    cell_timeout_s = 600      # wall-clock limit for one cell, everything included
    threads = 2               # CPU threads per cell, or a list to sweep; absent: every core
    min_repeats = 3           # with repeat_budget_s: the repeats stop once they have taken
    repeat_budget_s = 10      #   that many seconds, but never before min_repeats
    shards = 4                # split each cell's ensemble into 4 shards on Dask workers
                              #   (harness.run.shards); 0 or absent: solved whole; a list sweeps
    companions = ["20261207T232121Z-cpu-vm"]   # runs (folders in results/) its report compares
                              #   with (harness.report.inputs.suite_companions); not read here
    kernel_costs = true       # the fingerprint records the fused CPU kernels' step costs
                              #   against this core's FMA floor (harness.measure.fused_costs)

    [[entries]]
    problem = "lorenz"                        # a name from problems.problem_names()
    backends = ["fused", "array"]             # names from solvers.registry.BACKENDS
    methods = ["tsit5"]                       # each must be declared by one of the backends
    modes = ["fixed", "adaptive"]
    n_range = { min = 8, max = 65536, factor = 4 }   # 8, 32, ..., 65536; or n = [8, 512]
    n_max = { array = 4096 }                  # optional cap: an int, or per backend
    dtype = "float32"                         # optional, default: the problem's; or a list
    dt = 1e-3                                 # optional: fixed step, or dt0 when adaptive; or a list
    rtol = [1e-6, 1e-8]                       # optional; rtol and atol lists are paired
    atol = [1e-6, 1e-8]                       #   element by element (a scalar applies to all)
    variant = ""                              # optional, or a list
    inputs = { generator = "random", seed = 1, scale = 0.5 }   # optional: per-trajectory u0 and p
                                              #   (problems.inputs.generate; recorded in settings)
    # optional: max_steps, saveat (list of times), controller, device, repeats, warmups,
    # cell_timeout_s, threads, min_repeats, repeat_budget_s, shards (per-entry overrides)

Expansion is deterministic: entries in file order; inside an entry backends, variants,
threads, methods, modes, dtypes, dt, (rtol, atol) pairs in the order written, and N ascending.
``threads`` is resolved when the suite is loaded (absent: ``os.cpu_count()``), so every cell
carries the number it runs with. Fixed-mode
cells take no tolerances, so a tolerance list does not multiply them. A cell listed twice with
identical settings runs once; twice with different settings is an error. Whether a backend
supports a combination is its own ``check(spec)``'s call at run time ("unsupported" rows).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.run.default_suite import DEFAULT_PREFIX, is_default_suite, suite_data
from harness.measure.execute import Cell
from problems.base import VALID_DTYPES
from problems.inputs import generate
from problems.registry import get_problem, is_problem_name, problem_choices, problem_names  # noqa: F401
from harness.measure.threads import resolve as resolve_threads
from solvers.base import DEVICES, MODES, SolveSpec
from solvers.registry import backend_names, methods_of, variants_of
from solvers.tableaus import CONTROLLERS

SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"

TIMING_KEYS = {"repeats", "warmups", "cell_timeout_s", "threads", "min_repeats", "repeat_budget_s",
               "shards"}
TOP_KEYS = {"description", "device", "entries", "companions", "launch_counts", "kernel_costs"} | TIMING_KEYS
ENTRY_KEYS = {"problem", "backends", "methods", "modes", "dtype", "n", "n_range", "n_max", "dt",
              "rtol", "atol", "variant", "max_steps", "saveat", "controller", "device", "inputs"} | TIMING_KEYS
N_RANGE_KEYS = {"min", "max", "factor"}
DEFAULTS = {"repeats": 5, "warmups": 1, "cell_timeout_s": 600.0, "threads": None,
            "min_repeats": None, "repeat_budget_s": None, "shards": None}


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its name, file, description, content hash and expanded cells."""

    name: str
    path: Path
    description: str
    device: str
    sha256: str
    cells: tuple[Cell, ...]
    #: cells per series whose launches are counted (top-level ``launch_counts``: an int >= 1,
    #: default 1, or "all"); None means every cell
    launch_counts: int | None = 1
    #: top-level ``kernel_costs = true``: the run's fingerprint records the fused CPU kernels'
    #: step costs against this core's FMA floor (``harness.measure.fused_costs``, ~10 s)
    kernel_costs: bool = False


def suite_names() -> list[str]:
    """Names of the suites shipped in ``harness/suites`` (file stems), sorted."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def resolve_suite_path(name_or_path: str) -> Path:
    """A suite name (``smoke``) or a path to a ``.toml`` file -> the file's path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise UsageError(f"suite file {text!r} does not exist")
        return path
    path = SUITES_DIR / f"{text}.toml"
    if not path.is_file():
        raise UsageError(f"unknown suite {text!r}; valid choices: {', '.join(suite_names())}")
    return path


def load_suite(name_or_path: str) -> Suite:
    """Read, validate and expand a suite; any problem raises UsageError naming file and key.
    ``problem:NAME[,NAME...]`` is the default suite of those problems (harness.run.default_suite)."""
    if is_default_suite(name_or_path):
        name = str(name_or_path)
        for problem in name[len(DEFAULT_PREFIX):].split(","):
            if not is_problem_name(problem):
                raise UsageError(f"unknown problem {problem!r}; valid choices: {', '.join(problem_choices())}")
        data = suite_data(name)
        label = "problem-" + name[len(DEFAULT_PREFIX):].replace(",", "-")
        return _build(Path(f"{label}.toml"), data, hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest())
    path = resolve_suite_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path.name}: malformed TOML: {exc}") from None
    return _build(path, data, hashlib.sha256(raw).hexdigest())


# ---- validation helpers: each raises UsageError("<file>: <where>: <what>") ------------------

class _Where:
    """Formats error locations like ``smoke.toml: entries[2].n``."""

    def __init__(self, path: Path) -> None:
        self.file = path.name

    def fail(self, where: str, what: str) -> UsageError:
        return UsageError(f"{self.file}: {where}: {what}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _unknown_keys(w: _Where, where: str, got: dict, allowed: set[str]) -> None:
    extra = sorted(set(got) - allowed)
    if extra:
        raise w.fail(where, f"unknown key {extra[0]!r}; valid choices: {', '.join(sorted(allowed))}")


def _str_list(w: _Where, where: str, v: Any, *, allow_scalar: bool) -> list[str]:
    items = [v] if (allow_scalar and isinstance(v, str)) else v
    if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
        shape = "a string or a non-empty list of strings" if allow_scalar else "a non-empty list of strings"
        raise w.fail(where, f"must be {shape}, got {v!r}")
    return items


def _choose(w: _Where, where: str, items: list[str], valid: list[str] | tuple[str, ...]) -> None:
    for x in items:
        if x not in valid:
            raise w.fail(where, f"unknown value {x!r}; valid choices: {', '.join(valid)}")


def _positive_int(w: _Where, where: str, v: Any, *, zero_ok: bool = False) -> int:
    lo = 0 if zero_ok else 1
    if not _is_int(v) or v < lo:
        raise w.fail(where, f"must be an integer >= {lo}, got {v!r}")
    return int(v)


def _positive_number(w: _Where, where: str, v: Any) -> float:
    if not _is_number(v) or v <= 0:
        raise w.fail(where, f"must be a positive number, got {v!r}")
    return float(v)


def _number_list(w: _Where, where: str, v: Any) -> list[float]:
    items = v if isinstance(v, list) else [v]
    if not items:
        raise w.fail(where, "must be a positive number or a non-empty list of them")
    return [_positive_number(w, where, x) for x in items]


def _ns(w: _Where, where: str, entry: dict) -> list[int]:
    """The entry's N values, ascending, from ``n`` or ``n_range``."""
    if ("n" in entry) == ("n_range" in entry):
        raise w.fail(where, "give exactly one of 'n' (a list) or 'n_range' ({min, max, factor})")
    if "n" in entry:
        raw = entry["n"] if isinstance(entry["n"], list) else [entry["n"]]
        if not raw:
            raise w.fail(where + ".n", "must be a positive integer or a non-empty list of them")
        return sorted({_positive_int(w, where + ".n", x) for x in raw})
    rng = entry["n_range"]
    if not isinstance(rng, dict):
        raise w.fail(where + ".n_range", f"must be a table {{min, max, factor}}, got {rng!r}")
    _unknown_keys(w, where + ".n_range", rng, N_RANGE_KEYS)
    if "min" not in rng or "max" not in rng:
        raise w.fail(where + ".n_range", "needs 'min' and 'max'")
    lo = _positive_int(w, where + ".n_range.min", rng["min"])
    hi = _positive_int(w, where + ".n_range.max", rng["max"])
    factor = _positive_int(w, where + ".n_range.factor", rng.get("factor", 4))
    if factor < 2 or hi < lo:
        raise w.fail(where + ".n_range", "needs factor >= 2 and max >= min")
    ns, n = [], lo
    while n <= hi:
        ns.append(n)
        n *= factor
    return ns


def _n_caps(w: _Where, where: str, v: Any, backends: list[str]) -> dict[str, int]:
    """``n_max``: an int for every backend of the entry, or a table backend -> int."""
    if v is None:
        return {}
    if isinstance(v, dict):
        _unknown_keys(w, where, v, set(backends))
        return {b: _positive_int(w, f"{where}.{b}", x) for b, x in v.items()}
    cap = _positive_int(w, where, v)
    return {b: cap for b in backends}


def _threads(w: _Where, where: str, v: Any) -> list[int]:
    """``threads``: a positive int or a non-empty list of them; absent: every core."""
    if v is None:
        return [resolve_threads(None)]
    items = v if isinstance(v, list) else [v]
    if not items:
        raise w.fail(where, "must be a positive integer or a non-empty list of them")
    return list(dict.fromkeys(_positive_int(w, where, x) for x in items))


def _shards(w: _Where, where: str, v: Any) -> list[int | None]:
    """``shards``: K (split each cell into K shards on Dask workers), 0 (solved whole, the default)
    or a list of them to sweep (e.g. [0, 1, 2, 4]: unsharded, then 1, 2 and 4 workers)."""
    if v is None:
        return [None]
    items = v if isinstance(v, list) else [v]
    if not items:
        raise w.fail(where, "must be an integer >= 0 or a non-empty list of them")
    return list(dict.fromkeys(_positive_int(w, where, x, zero_ok=True) or None for x in items))


def _optional(w: _Where, where: str, v: Any, check) -> Any:
    return None if v is None else check(w, where, v)


def _tolerance_pairs(w: _Where, where: str, entry: dict) -> list[tuple[float | None, float | None]]:
    rt = _number_list(w, where + ".rtol", entry["rtol"]) if "rtol" in entry else [None]
    at = _number_list(w, where + ".atol", entry["atol"]) if "atol" in entry else [None]
    if len(rt) > 1 and len(at) > 1 and len(rt) != len(at):
        raise w.fail(where, f"rtol and atol lists are paired and must have equal length ({len(rt)} != {len(at)})")
    k = max(len(rt), len(at))
    return [(rt[i if len(rt) > 1 else 0], at[i if len(at) > 1 else 0]) for i in range(k)]


def _build(path: Path, data: dict, sha256: str) -> Suite:
    w = _Where(path)
    _unknown_keys(w, "top level", data, TOP_KEYS)
    for key in ("description", "device", "entries"):
        if key not in data:
            raise w.fail("top level", f"missing required key {key!r}")
    if not isinstance(data["description"], str) or not data["description"].strip():
        raise w.fail("description", "must be a non-empty string")
    if data["device"] not in DEVICES:
        raise w.fail("device", f"unknown value {data['device']!r}; valid choices: {', '.join(DEVICES)}")
    defaults = {
        "repeats": _positive_int(w, "repeats", data.get("repeats", DEFAULTS["repeats"])),
        "warmups": _positive_int(w, "warmups", data.get("warmups", DEFAULTS["warmups"]), zero_ok=True),
        "cell_timeout_s": _positive_number(w, "cell_timeout_s", data.get("cell_timeout_s", DEFAULTS["cell_timeout_s"])),
        "threads": _threads(w, "threads", data.get("threads")),
        "min_repeats": _optional(w, "min_repeats", data.get("min_repeats"), _positive_int),
        "repeat_budget_s": _optional(w, "repeat_budget_s", data.get("repeat_budget_s"), _positive_number),
        "shards": _shards(w, "shards", data.get("shards")),
    }
    entries = data["entries"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise w.fail("entries", "must be a non-empty array of tables ([[entries]])")

    cells: dict[tuple, tuple[Cell, int]] = {}
    for i, entry in enumerate(entries):
        for cell in _expand_entry(w, f"entries[{i}]", entry, data["device"], defaults):
            seen = cells.get(cell.key)
            if seen is None:
                cells[cell.key] = (cell, i)
            elif _resolved(seen[0]) != _resolved(cell):
                raise w.fail(f"entries[{i}]", f"cell {cell.label} is also defined by entries[{seen[1]}] with different settings")
    return Suite(name=path.stem, path=path.resolve(), description=data["description"].strip(),
                 device=data["device"], sha256=sha256, cells=tuple(c for c, _ in cells.values()),
                 launch_counts=_launch_counts(w, data.get("launch_counts", 1)),
                 kernel_costs=_flag(w, "kernel_costs", data.get("kernel_costs", False)))


def _flag(w: _Where, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise w.fail(key, f"must be true or false, got {v!r}")
    return v


def _launch_counts(w: _Where, v: Any) -> int | None:
    """``launch_counts``: "all" (None: every cell counts) or how many N per series count."""
    if v == "all":
        return None
    if not _is_int(v) or v < 1:
        raise w.fail("launch_counts", f"must be \"all\" or a positive integer, got {v!r}")
    return int(v)


def _resolved(cell: Cell) -> tuple:
    """What a cell runs, with defaults filled in (rtol unset and rtol = the default are equal)."""
    return (cell.backend, sorted(cell.spec.as_dict().items()), cell.repeats, cell.warmups, cell.timeout_s)


def _expand_entry(w: _Where, where: str, entry: dict, suite_device: str, defaults: dict) -> list[Cell]:
    _unknown_keys(w, where, entry, ENTRY_KEYS)
    for key in ("problem", "backends", "methods", "modes"):
        if key not in entry:
            raise w.fail(where, f"missing required key {key!r}")
    if not isinstance(entry["problem"], str):
        raise w.fail(where + ".problem", f"must be a string, got {entry['problem']!r}")
    if not is_problem_name(entry["problem"]):  # the zoo, or a family such as lorenz96-<d>
        _choose(w, where + ".problem", [entry["problem"]], problem_choices())
    backends = _str_list(w, where + ".backends", entry["backends"], allow_scalar=False)
    _choose(w, where + ".backends", backends, backend_names())
    methods = _str_list(w, where + ".methods", entry["methods"], allow_scalar=False)
    for m in methods:
        if not any(m in methods_of(b) for b in backends):
            valid = sorted({x for b in backends for x in methods_of(b)})
            raise w.fail(where + ".methods", f"no backend of this entry has method {m!r}; valid choices: {', '.join(valid)}")
    modes = _str_list(w, where + ".modes", entry["modes"], allow_scalar=False)
    _choose(w, where + ".modes", modes, MODES)
    dtypes = _str_list(w, where + ".dtype", entry["dtype"], allow_scalar=True) if "dtype" in entry else [None]
    if dtypes != [None]:
        _choose(w, where + ".dtype", dtypes, VALID_DTYPES)
    variants = _str_list(w, where + ".variant", entry.get("variant", ""), allow_scalar=True)
    for v in variants:
        if not any(v in variants_of(b) for b in backends):
            valid = sorted({x for b in backends for x in variants_of(b)})
            raise w.fail(where + ".variant", f"no backend of this entry has variant {v!r}; valid choices: {', '.join(map(repr, valid))}")
    device = entry.get("device", suite_device)
    if device not in DEVICES:
        raise w.fail(where + ".device", f"unknown value {device!r}; valid choices: {', '.join(DEVICES)}")
    ns = _ns(w, where, entry)
    caps = _n_caps(w, where + ".n_max", entry.get("n_max"), backends)
    dts = _number_list(w, where + ".dt", entry["dt"]) if "dt" in entry else [None]
    tols = _tolerance_pairs(w, where, entry)
    extra: dict[str, Any] = {}
    if "max_steps" in entry:
        extra["max_steps"] = _positive_int(w, where + ".max_steps", entry["max_steps"])
    if "saveat" in entry:
        s = entry["saveat"]
        if not isinstance(s, list) or not s or not all(_is_number(x) for x in s):
            raise w.fail(where + ".saveat", f"must be a non-empty list of numbers, got {s!r}")
        extra["saveat"] = tuple(float(x) for x in s)
    if "controller" in entry:
        if not isinstance(entry["controller"], str):
            raise w.fail(where + ".controller", f"must be a string, got {entry['controller']!r}")
        if entry["controller"] not in CONTROLLERS:
            raise w.fail(where + ".controller", f"unknown controller {entry['controller']!r}; valid choices: "
                                                f"{', '.join(CONTROLLERS)}")
        if "adaptive" not in modes:  # a fixed step has no controller: the key would be ignored
            raise w.fail(where + ".controller", f"a step controller needs mode adaptive; this entry's "
                                                f"modes are {modes}")
        extra["controller"] = entry["controller"]
    timing = {
        "repeats": _positive_int(w, where + ".repeats", entry.get("repeats", defaults["repeats"])),
        "warmups": _positive_int(w, where + ".warmups", entry.get("warmups", defaults["warmups"]), zero_ok=True),
        "timeout_s": _positive_number(w, where + ".cell_timeout_s", entry.get("cell_timeout_s", defaults["cell_timeout_s"])),
        "min_repeats": (_optional(w, where + ".min_repeats", entry["min_repeats"], _positive_int)
                        if "min_repeats" in entry else defaults["min_repeats"]),
        "repeat_budget_s": (_optional(w, where + ".repeat_budget_s", entry["repeat_budget_s"], _positive_number)
                            if "repeat_budget_s" in entry else defaults["repeat_budget_s"]),
    }
    threads_list = _threads(w, where + ".threads", entry["threads"]) if "threads" in entry else defaults["threads"]
    shards_list = _shards(w, where + ".shards", entry["shards"]) if "shards" in entry else defaults["shards"]

    out: list[Cell] = []
    for backend, threads, shards, variant, method, mode, dtype, dt in itertools.product(
            backends, threads_list, shards_list, variants, methods, modes, dtypes, dts):
        for rtol, atol in (tols if mode == "adaptive" else [(None, None)]):
            for n in ns:
                if n > caps.get(backend, n):
                    continue
                spec = _spec(w, where, entry["problem"], method, mode, dtype, n,
                             device, dt, rtol, atol, variant, dict(extra, threads=threads))
                if "inputs" in entry:
                    spec = _with_inputs(w, where + ".inputs", spec, entry["inputs"])
                out.append(Cell(backend=backend, spec=spec, shards=shards, **timing))
    return out


def _with_inputs(w: _Where, where: str, spec: SolveSpec, table: Any) -> SolveSpec:
    """``spec`` with the per-trajectory inputs a generator table names (problems.inputs.generate)."""
    try:
        return spec.with_(inputs=generate(spec.prob, spec.n, table))
    except ValueError as exc:
        raise w.fail(where, str(exc)) from None


def _spec(w: _Where, where: str, problem: str, method: str, mode: str, dtype: str | None, n: int,
          device: str, dt: float | None, rtol: float | None, atol: float | None, variant: str,
          extra: dict) -> SolveSpec:
    try:
        return SolveSpec(problem=problem, method=method, mode=mode,
                         dtype=dtype or get_problem(problem).default_dtype, n=n, device=device,
                         dt=dt, rtol=rtol, atol=atol, variant=variant, **extra)
    except ValueError as exc:
        raise w.fail(where, f"{mode} {method} N={n}: {exc}") from None
