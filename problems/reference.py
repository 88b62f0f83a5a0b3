"""Float64 reference solutions from SciPy, on a deterministic subsample of an ensemble.

References are computed once per (problem definition, N, dtype of the inputs, saveat, method,
tolerances) and cached on disk under a content hash, in ``$ODEBENCH_CACHE`` (default
``.cache/references`` at the repository root).

Shipped references: the references a suite needs can be committed under ``problems/refs/``
(``python -m harness refs --suite NAME``; same file names, same content hash), so that a
machine which must not spend its time in SciPy (a lent GPU box) never computes one. They are
looked up before the cache. With ``ODEBENCH_REFERENCES=shipped`` in the environment a missing
reference raises ``ReferenceMissing`` at once instead of being computed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from problems import derive
from problems.base import ProblemBase, check_dtype, check_n

#: The most trajectories a reference integrates (both ends of the sweep are always included).
MAX_REFERENCE_SIZE = 512

#: Reference settings: tight enough to judge float32 and float64 solvers at rtol 1e-8.
NONSTIFF = {"method": "DOP853", "rtol": 1e-12, "atol": 1e-14}
# LSODA (ODEPACK, BDF once stiff) is ~30x faster than SciPy's Radau here at the same accuracy;
# tests check it against Radau on a few trajectories.
STIFF = {"method": "LSODA", "rtol": 1e-13, "atol": 1e-18}


#: Committed references (see module docstring).
SHIPPED_DIR = Path(__file__).resolve().parent / "refs"
#: Environment variable: "shipped" = never compute a reference, only read one.
POLICY_ENV = "ODEBENCH_REFERENCES"


class ReferenceMissing(LookupError):
    """A reference is neither shipped nor cached, and computing one is switched off."""


def _default_cache_dir() -> Path:
    env = os.environ.get("ODEBENCH_CACHE")
    if env:
        return Path(env) / "references"
    return Path(__file__).resolve().parent.parent / ".cache" / "references"


def subsample_indices(n: int, max_size: int = MAX_REFERENCE_SIZE) -> np.ndarray:
    """Deterministic, evenly spread trajectory indices; always holds 0 and n - 1."""
    n = check_n(n)
    if n <= max_size:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max_size)).astype(np.int64))


@dataclass(frozen=True)
class Reference:
    """Float64 reference states for trajectories ``indices`` of an N-trajectory ensemble."""

    problem: str
    n: int
    dtype: str
    indices: np.ndarray          # (k,)
    u_final: np.ndarray          # (k, n_states)
    saveat: tuple[float, ...] | None
    saved: np.ndarray | None     # (k, len(saveat), n_states)
    settings: dict


def _settings(problem: ProblemBase, override: dict | None) -> dict:
    base = dict(STIFF if problem.stiff else NONSTIFF)
    base.update(override or {})
    return base


def _cache_key(problem: ProblemBase, n: int, dtype: str, indices: np.ndarray,
               saveat: tuple[float, ...] | None, settings: dict, inputs: Any = None) -> str:
    fields = {
        "problem": problem.fingerprint(), "n": n, "dtype": dtype,
        "indices": hashlib.sha256(indices.tobytes()).hexdigest(),
        "saveat": saveat, "settings": settings,
    }
    if inputs is not None:  # explicit per-trajectory inputs: only then, so sweep keys keep their hashes
        fields["inputs"] = inputs.digest
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def solve_one(problem: ProblemBase, u0: np.ndarray, p: np.ndarray, saveat=None, settings=None):
    """Integrate one trajectory in float64 with SciPy; returns (u_final, saved or None)."""
    settings = _settings(problem, settings)
    pt = tuple(float(v) for v in p)
    if problem.rhs_array is not None:  # large systems: the vectorised form (same formula, tested)
        fa = problem.rhs_array_for(np)

        def fun(t, y):
            return fa(y, pt, t)
    else:
        f = problem.rhs_for(math)

        def fun(t, y):
            return f(tuple(y), pt, t)

    from scipy.integrate import solve_ivp  # only here: a box with shipped references needs no SciPy

    kwargs = {}
    if settings["method"] in ("Radau", "BDF", "LSODA"):
        jac, _ = derive.derivatives(problem).functions(math, float)
        kwargs["jac"] = lambda t, y: np.array(jac(tuple(y), pt, t), dtype=np.float64)
    # t1 always closes t_eval, so the last column is the final state even when saveat ends early
    t_eval = None
    if saveat is not None:
        t_eval = np.asarray(saveat, dtype=np.float64)
        if t_eval[-1] < problem.tspan[1]:
            t_eval = np.append(t_eval, problem.tspan[1])
    sol = solve_ivp(fun, problem.tspan, np.asarray(u0, dtype=np.float64),
                    method=settings["method"], rtol=settings["rtol"], atol=settings["atol"],
                    t_eval=t_eval, **kwargs)
    if not sol.success:
        raise RuntimeError(f"reference solve failed for {problem.name} (p={pt}): {sol.message}")
    saved = None if saveat is None else sol.y.T[: len(saveat)].copy()
    return sol.y[:, -1].copy(), saved


def reference_file_name(problem: ProblemBase, n: int, dtype: str | None = None,
                        saveat: tuple[float, ...] | None = None, *, max_size: int | None = None,
                        settings: dict | None = None) -> str:
    """The file name (content hash included) under which this reference is cached or shipped."""
    n = check_n(n)
    max_size = max_size or problem.reference_size
    dtype = check_dtype(dtype or problem.default_dtype)
    saveat = None if saveat is None else tuple(float(s) for s in saveat)
    idx = subsample_indices(n, max_size)
    return f"{problem.name}-{_cache_key(problem, n, dtype, idx, saveat, _settings(problem, settings))}.npz"


def is_shipped(problem: ProblemBase, n: int, dtype: str | None = None,
               saveat: tuple[float, ...] | None = None) -> bool:
    """Whether the reference is committed under ``SHIPPED_DIR``."""
    return (SHIPPED_DIR / reference_file_name(problem, n, dtype, saveat)).is_file()


def ode_reference(problem: ProblemBase, spec: Any) -> Reference:
    """The accuracy reference of an ODE solve of ``spec`` (problems.kinds: the "ode" kind's)."""
    return reference(problem, spec.n, spec.dtype, spec.saveat, inputs=getattr(spec, "inputs", None))


def reference(problem: ProblemBase, n: int, dtype: str | None = None,
              saveat: tuple[float, ...] | None = None, *, max_size: int | None = None,
              settings: dict | None = None, cache_dir: Path | None = None, inputs: Any = None) -> Reference:
    """The float64 reference for the N-trajectory ensemble of ``problem``.

    ``dtype`` is the precision of the solver being judged: the ensemble's inputs are rounded to
    it first, so the reference integrates exactly what that solver integrates. ``inputs``
    (problems.inputs.EnsembleInputs of N trajectories) replaces the problem's own ensemble; the
    cache key then holds their content hash.
    """
    n = check_n(n)
    max_size = max_size or problem.reference_size  # MAX_REFERENCE_SIZE unless the problem is large
    dtype = check_dtype(dtype or problem.default_dtype)
    saveat = None if saveat is None else tuple(float(s) for s in saveat)
    settings = _settings(problem, settings)
    idx = subsample_indices(n, max_size)
    if inputs is not None and inputs.n != n:
        raise ValueError(f"inputs hold {inputs.n} trajectories, not N={n}")
    key = _cache_key(problem, n, dtype, idx, saveat, settings, inputs)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    path = cache / f"{problem.name}-{key}.npz"
    for found in (SHIPPED_DIR / path.name, path):
        if found.exists():
            with np.load(found) as z:
                saved = z["saved"] if "saved" in z.files else None
                return Reference(problem.name, n, dtype, z["indices"], z["u_final"], saveat, saved, settings)
    if os.environ.get(POLICY_ENV, "") == "shipped":
        raise ReferenceMissing(f"no shipped reference {path.name} for {problem.name} N={n} {dtype} "
                               f"({POLICY_ENV}=shipped: not computed here; "
                               f"`python -m harness refs` makes it on any CPU)")

    u0, p = problem.ensemble(n, dtype) if inputs is None else inputs.take(dtype)
    finals, saves = [], []
    for i in idx:
        uf, sv = solve_one(problem, u0[i].astype(np.float64), p[i].astype(np.float64), saveat, settings)
        finals.append(uf)
        saves.append(sv)
    u_final = np.stack(finals)
    saved = None if saveat is None else np.stack(saves)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        arrays = {"indices": idx, "u_final": u_final}
        if saved is not None:
            arrays["saved"] = saved
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout still gets its reference, just not cached
    return Reference(problem.name, n, dtype, idx, u_final, saveat, saved, settings)


def max_relative_error(u: np.ndarray, ref: Reference) -> float:
    """max over the reference's trajectories of ||u_i - ref_i||_inf / ||ref_i||_inf.

    ``u`` holds the solver's final states for the whole ensemble, shaped (N, n_states).
    Non-finite solver output gives ``inf``.
    """
    got = np.asarray(u, dtype=np.float64)[ref.indices]
    if not np.all(np.isfinite(got)):
        return math.inf
    scale = np.maximum(np.max(np.abs(ref.u_final), axis=1), np.finfo(np.float64).tiny)
    return float(np.max(np.max(np.abs(got - ref.u_final), axis=1) / scale))


def max_scaled_error(u: np.ndarray, ref: Reference, rtol: float, atol: float) -> float:
    """max over the reference's trajectories and every component of
    ``|u - ref| / (atol + rtol * |ref|)``: the error in units of the tolerance, per component.

    This is how the solvers scale their own error estimate (``scaled_rms_norm``), so a small
    component (Robertson's y2 ~ 1e-10..1e-7) is judged on its own scale, not against the
    trajectory's largest component as ``max_relative_error`` judges it. A value of 1 is an error
    of one tolerance unit; global errors of a well-controlled adaptive solve are a few units.
    ``rtol``/``atol`` are the tolerances the solve used (fixed-step solves: the problem's
    defaults). Non-finite solver output gives ``inf``.
    """
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"invalid tolerances rtol={rtol!r}, atol={atol!r}: need rtol, atol >= 0, not both 0")
    got = np.asarray(u, dtype=np.float64)[ref.indices]
    if not np.all(np.isfinite(got)):
        return math.inf
    scale = atol + rtol * np.abs(ref.u_final)
    return float(np.max(np.abs(got - ref.u_final) / scale))
