"""Explicit per-trajectory inputs: an ensemble's initial states and parameters given as arrays.

A problem's own ensemble is its sweep (``Problem.ensemble``: one parameter on a linspace, one
shared initial state). ``EnsembleInputs`` replaces it with any (N, n_states) initial states and
(N, n_params) parameters, as DiffEqGPU's ``prob_func`` does: Monte-Carlo initial conditions,
parameter grids, fitted parameter sets. A ``solvers.base.SolveSpec`` carrying one hands it to
every backend through ``SolveSpec.ensemble()``, the one input builder, and the float64
reference (problems.reference) integrates exactly these inputs, under a cache key holding their
content hash (``digest``), so a reference made for the sweep is never reused for them.

The helpers build the common cases: ``parameter_grid`` (one parameter on a grid, the others at
their defaults) and ``random_initial_conditions`` (seeded, uniform in a box or normal around the
problem's u0).
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from problems.base import check_dtype


def as_host_array(x: Any, what: str) -> np.ndarray:
    """A float64 NumPy copy of ``x``: NumPy, lists, CuPy (``.get()``), torch (``.cpu().numpy()``)
    and JAX arrays (``np.asarray``) are accepted."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch
        x = x.detach().cpu().numpy()
    elif hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        x = x.get()
    try:
        a = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: not an array of numbers ({exc})") from None
    return a


class EnsembleInputs:
    """Initial states ``u0`` (N, n_states) and parameters ``p`` (N, n_params), float64, read-only.

    ``label`` says where they came from (recorded in results settings with ``digest``, a hash of
    the values). Equal and hashed by content, so a ``SolveSpec`` holding one stays hashable.
    """

    __slots__ = ("u0", "p", "label", "digest")

    def __init__(self, u0: Any, p: Any, label: str = "explicit") -> None:
        u0 = as_host_array(u0, "u0")
        p = as_host_array(p, "p")
        if u0.ndim != 2 or p.ndim != 2:
            raise ValueError(f"per-trajectory inputs must be 2-D: u0 (N, n_states), p (N, n_params); "
                             f"got u0 {u0.shape}, p {p.shape}")
        if u0.shape[0] != p.shape[0] or u0.shape[0] == 0:
            raise ValueError(f"u0 and p must have the same number N >= 1 of rows; got {u0.shape[0]} and {p.shape[0]}")
        if not (np.all(np.isfinite(u0)) and np.all(np.isfinite(p))):
            raise ValueError("u0 and p must be finite")
        u0, p = np.ascontiguousarray(u0), np.ascontiguousarray(p)
        u0.flags.writeable = False
        p.flags.writeable = False
        h = hashlib.sha256(repr((u0.shape, p.shape)).encode())
        h.update(u0.tobytes())
        h.update(p.tobytes())
        self.u0, self.p, self.label, self.digest = u0, p, str(label), h.hexdigest()[:16]

    @property
    def n(self) -> int:
        return int(self.u0.shape[0])

    def take(self, dtype: str, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(u0, p) of trajectories start .. stop-1, rounded to ``dtype``, contiguous copies."""
        dt = np.dtype(check_dtype(dtype))
        s = slice(start, stop)
        return np.ascontiguousarray(self.u0[s].astype(dt)), np.ascontiguousarray(self.p[s].astype(dt))

    def describe(self) -> dict[str, Any]:
        """What a results row records about these inputs."""
        return {"label": self.label, "digest": self.digest, "n": self.n}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnsembleInputs) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __deepcopy__(self, memo: dict) -> "EnsembleInputs":
        return self  # immutable: dataclasses.asdict need not copy the arrays

    def __repr__(self) -> str:
        return f"EnsembleInputs({self.label!r}, N={self.n}, digest={self.digest})"


def parameter_grid(problem: Any, name: str, values: Sequence[float] | np.ndarray,
                   u0: Sequence[float] | None = None) -> EnsembleInputs:
    """Parameter ``name`` takes ``values`` (one trajectory each), every other parameter its
    default, and every trajectory starts from ``u0`` (default: the problem's)."""
    if name not in problem.param_names:
        raise ValueError(f"{problem.name} has no parameter {name!r} (has: {', '.join(problem.param_names)})")
    vals = as_host_array(values, "values").reshape(-1)
    p = np.tile(np.asarray(problem.params, dtype=np.float64), (len(vals), 1))
    p[:, problem.param_names.index(name)] = vals
    start = np.asarray(problem.u0 if u0 is None else u0, dtype=np.float64)
    if start.shape != (problem.n_states,):
        raise ValueError(f"u0 must have {problem.n_states} entries, got {start.shape}")
    return EnsembleInputs(np.tile(start, (len(vals), 1)), p, label=f"grid of {name}")


def random_initial_conditions(problem: Any, n: int, seed: int = 0, *, low: Sequence[float] | None = None,
                              high: Sequence[float] | None = None, scale: float | None = None,
                              params: Any = None) -> EnsembleInputs:
    """``n`` seeded random initial states: uniform in the box [low, high] when both are given,
    else normal around the problem's u0 with standard deviation ``scale`` (default 0.1 times
    max(1, |u0|)). Parameters: ``params`` ((n_params,) for all, or (n, n_params)), default
    the problem's."""
    rng = np.random.default_rng(seed)
    d = problem.n_states
    centre = np.asarray(problem.u0, dtype=np.float64)
    if low is not None and high is not None:
        u0 = rng.uniform(np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64), size=(n, d))
        how = "uniform"
    else:
        sd = np.full(d, scale) if scale is not None else 0.1 * np.maximum(1.0, np.abs(centre))
        u0 = centre + sd * rng.standard_normal((n, d))
        how = "normal"
    p = np.asarray(problem.params if params is None else as_host_array(params, "params"), dtype=np.float64)
    p = np.broadcast_to(p, (n, problem.n_params)) if p.ndim == 1 else p
    return EnsembleInputs(u0, p, label=f"random u0 ({how}, seed {seed})")


#: The keys of a generator table (a suite entry's ``inputs``), per generator.
GENERATORS = {"random": {"generator", "seed", "scale", "low", "high", "param", "lo", "hi"},
              "grid": {"generator", "param", "lo", "hi"}}


def generate(problem: Any, n: int, table: dict) -> EnsembleInputs:
    """Inputs named by a table, as a suite entry's ``inputs`` gives them (harness.run.suites):

    * ``{generator = "random", seed = 1, scale = 0.5}`` (or ``low``/``high`` lists): seeded random
      initial states (``random_initial_conditions``); with ``param``, ``lo``, ``hi`` that
      parameter is also drawn uniformly in [lo, hi] from the same seed;
    * ``{generator = "grid", param = "mu", lo = 0.1, hi = 5.0}``: ``parameter_grid`` over
      ``linspace(lo, hi, n)``.

    ValueError (one line) for an unknown generator or key, or a bad value."""
    if not isinstance(table, dict):
        raise ValueError(f"must be a table {{generator = ...}}, got {table!r}")
    kind = table.get("generator")
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; valid choices: {', '.join(GENERATORS)}")
    extra = sorted(set(table) - GENERATORS[kind])
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} for generator {kind!r}; valid: {', '.join(sorted(GENERATORS[kind]))}")
    has_param = "param" in table
    if has_param and not all(k in table for k in ("lo", "hi")):
        raise ValueError("param needs lo and hi")
    if kind == "grid":
        if not has_param:
            raise ValueError("generator 'grid' needs param, lo and hi")
        return parameter_grid(problem, table["param"], np.linspace(float(table["lo"]), float(table["hi"]), n))
    seed = table.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    params = np.tile(np.asarray(problem.params, dtype=np.float64), (n, 1))
    if has_param:
        if table["param"] not in problem.param_names:
            raise ValueError(f"{problem.name} has no parameter {table['param']!r} (has: {', '.join(problem.param_names)})")
        rng = np.random.default_rng([seed, 1])  # a stream of its own: the states keep theirs
        params[:, problem.param_names.index(table["param"])] = rng.uniform(float(table["lo"]), float(table["hi"]), n)
    made = random_initial_conditions(problem, n, seed, low=table.get("low"), high=table.get("high"),
                                     scale=table.get("scale"), params=params)
    label = made.label + (f", {table['param']} uniform in [{table['lo']}, {table['hi']}]" if has_param else "")
    return EnsembleInputs(made.u0, made.p, label=label)
