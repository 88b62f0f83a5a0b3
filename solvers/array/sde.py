"""The array-style replica of the fused Euler-Maruyama solver (SDE problems).

Every operation of a step is an operation over arrays of the whole ensemble (NumPy on a CPU,
CuPy on a GPU): the Wiener increments are materialised as an (n_noise, N) array each step, then
drift, diffusion and the update are evaluated array-wise by the problem's own functions (the
``m`` namespace bound to ``xp``). This is the architecture of DiffEqGPU's ``EnsembleGPUArray``
with ``EM()``: launch-bound at small N, memory-bound at large N.

Variants:

* ``""``: the increments come from the library's bulk generator (``xp.random.Generator`` with
  NumPy's Philox bit generator, or CuPy's ``default_rng``), one call per step, seeded by
  ``spec.seed``: what a NumPy/CuPy user would write.
* ``"philox"``: the increments of problems.brownian (Philox-4x32-10 keyed by trajectory and
  seed, Box-Muller), computed as whole-array integer operations: the very numbers the fused
  kernel draws in registers, so fused and replica agree to rounding, and the cost of generating
  counter-based numbers array-style is visible.

Launch counting (``dispatch = "xp"``) counts operations dispatched through ``self.xp``; the
library generator's method call in variant ``""`` is not such an operation (it is a method of a
Generator object), so the true number of dispatches there is the counted one plus one per step
(``settings()["launch_count_note"]``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from problems.brownian import GENERATOR, increments
from solvers.array.backend import namespace, to_host
from solvers.base import SolveResult

VARIANTS = ("", "philox")


class ArraySDEPrepared:
    dispatch = "xp"

    def __init__(self, spec: Any, xp: Any) -> None:
        self.spec = spec
        self.xp = xp
        self.device = spec.device
        self.problem = spec.prob
        self.dtype = spec.np_dtype
        u0, p = spec.ensemble()
        self.u0 = xp.asarray(np.ascontiguousarray(u0.T))   # (n_states, N): structure of arrays
        self.params = xp.asarray(np.ascontiguousarray(p.T))
        self.traj = xp.arange(spec.n, dtype=xp.uint64) if spec.variant == "philox" else None

    def _rng(self, xp: Any):
        if getattr(xp, "__name__", "").startswith("cupy"):
            return xp.random.default_rng(self.spec.seed)
        return np.random.Generator(np.random.Philox(self.spec.seed))

    def run(self) -> Any:
        xp, spec, prob = self.xp, self.spec, self.problem
        drift, diffusion = prob.drift_for(xp), prob.diffusion_for(xp)
        T = self.dtype.type
        dt, sq = T(spec.step), T(math.sqrt(spec.step))
        t0 = prob.tspan[0]
        u = tuple(xp.asarray(self.u0)[i] for i in range(prob.n_states))
        p = tuple(xp.asarray(self.params)[j] for j in range(prob.n_params))
        nw, n = prob.n_noise, spec.n
        rng = self._rng(xp) if spec.variant == "" else None
        with np.errstate(all="ignore"):
            for k in range(spec.n_steps):
                if rng is not None:
                    dw = rng.standard_normal((nw, n), dtype=self.dtype) * sq
                else:
                    dw = xp.moveaxis(increments(spec.seed, self.traj, k, nw, spec.step, 1, self.dtype, xp), -1, 0)
                t = T(t0 + k * spec.step)
                f = drift(u, p, t)
                g = diffusion(u, p, t)
                if prob.noise == "diagonal":
                    u = tuple(u[i] + f[i] * dt + g[i] * dw[i] for i in range(prob.n_states))
                else:
                    new = []
                    for i in range(prob.n_states):
                        acc = u[i] + f[i] * dt
                        for j in range(nw):
                            acc = acc + g[i][j] * dw[j]
                        new.append(acc)
                    u = tuple(new)
        return xp.stack(u)

    def sync(self, out: Any) -> None:
        if self.device == "gpu":
            import cupy  # optional: present only where a GPU solve runs

            cupy.cuda.get_current_stream().synchronize()

    def fetch(self, out: Any):
        u = np.ascontiguousarray(to_host(out).T)
        n = u.shape[0]
        steps = np.full(n, self.spec.n_steps, dtype=np.int64)
        notes = {"increments": GENERATOR, "seed": self.spec.seed} if self.spec.variant == "philox" else {
            "increments": "library bulk generator, one call per step"}
        return SolveResult(u_final=u, status=np.where(np.isfinite(u).all(axis=1), 0, 3), accepted=steps,
                           rejected=np.zeros(n, dtype=np.int64), rhs_evals=steps, notes=notes)

    def close(self) -> None:
        self.u0 = self.params = self.traj = None


def check(backend: Any, spec: Any) -> str | None:
    """The array backend's SDE-specific check (after its generic one)."""
    if spec.variant not in VARIANTS:
        return f"SDE variants are {', '.join(map(repr, VARIANTS))}"
    return "the SDE replica saves the final state only" if spec.saveat is not None else None


def prepare(backend: Any, spec: Any) -> ArraySDEPrepared:
    return ArraySDEPrepared(spec, namespace(spec.device))


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    prob = spec.prob
    out = {
        "step_control": "none", "method": "euler-maruyama", "namespace": "numpy" if spec.device == "cpu" else "cupy",
        "layout": "structure of arrays: states (n_states, N), increments (n_noise, N) per step",
        "fused": False, "dt": spec.step, "n_steps": spec.n_steps, "seed": spec.seed,
        "noise": f"{prob.noise}, {prob.n_noise} Wiener processes",
    }
    if spec.variant == "philox":
        out["increments"] = GENERATOR + ", as whole-array uint64 operations"
    else:
        out["increments"] = ("numpy.random.Generator(Philox(seed)).standard_normal per step" if spec.device == "cpu"
                             else "cupy.random.default_rng(seed).standard_normal per step")
        out["launch_count_note"] = "the generator call is not counted: true dispatches = launches + n_steps"
    return out
