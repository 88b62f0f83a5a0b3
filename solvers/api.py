"""Solve your own ensemble from Python, on any backend: ``solve_ensemble``.

::

    import numpy as np
    from solvers import solve_ensemble

    def vdp(u, p, t):                      # written once, as problems/core.py says
        x, y = u
        mu, one = p
        return (y, mu * (one - x * x) * y - x)

    u0 = np.random.default_rng(0).normal(size=(1000, 2))         # one row per trajectory
    p = np.column_stack([np.linspace(0.5, 3, 1000), np.ones(1000)])
    sol = solve_ensemble(vdp, u0, p, (0.0, 10.0), rtol=1e-6, atol=1e-6)          # fused kernel
    sol.u_final                             # (1000, 2) float32, whichever backend ran

``problem_or_rhs`` is a registered problem (its name or its ``problems.core.Problem``) or a
plain function ``rhs(u, p, t)``, which becomes a Problem registered under ``name`` (default:
the function's name), after the registration checks (problems.rhs_check). A ``tspan`` other
than the problem's makes a derived problem (its name gets a suffix). Inputs may be NumPy,
CuPy, JAX or torch arrays (copied to the host), or a ``problems.inputs.EnsembleInputs`` from
``parameter_grid`` / ``random_initial_conditions`` as ``u0`` (``p`` None).

The solve goes through the same ``SolveSpec`` -> ``Backend.prepare`` -> ``run`` -> ``fetch``
lifecycle as the harness (solvers.base), so what runs is what the benchmark times; for the
harness's clock and accuracy on one cell use ``harness.measure.ensemble.benchmark_ensemble``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from problems.base import ProblemBase
from problems.core import Problem, Sweep
from problems.inputs import EnsembleInputs, as_host_array
from problems.inputs import parameter_grid as _grid_of
from problems.inputs import random_initial_conditions as _random_of
from problems.registry import get_problem, register
from solvers.base import SolveResult, SolveSpec, Status
from solvers.registry import MANIFEST, load_backend, methods_of

#: Device names the API accepts, and the SolveSpec device each means.
DEVICE_ALIASES = {"cpu": "cpu", "gpu": "gpu", "cuda": "gpu"}


@dataclass(frozen=True)
class EnsembleSolution:
    """An ensemble solve's results on the host, the same layout and dtype for every backend.

    t: (n_t,) the save times (``saveat``), or (t1,) when only the final state was asked for.
    u: (N, n_t, n_states) the states at ``t``, in the solve's dtype.
    u_final: (N, n_states) the states at t1.
    status: (N,) int codes of solvers.base.Status (0: success).
    steps: (N,) accepted steps; -1 where the library does not report them.
    rhs_evals: (N,) right-hand-side evaluations; -1 where not reported.
    backend: the backend that ran; problem: the registered problem's name.
    settings: every setting used (the resolved SolveSpec and the backend's own).
    """

    t: np.ndarray
    u: np.ndarray
    u_final: np.ndarray
    status: np.ndarray
    steps: np.ndarray
    rhs_evals: np.ndarray
    backend: str
    problem: str
    settings: dict

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: which trajectories reached t1."""
        return self.status == int(Status.SUCCESS)


def _tspan_name(name: str, tspan: tuple[float, float]) -> str:
    return f"{name}_t{hashlib.sha256(repr(tspan).encode()).hexdigest()[:8]}"


def as_problem(problem_or_rhs: Any, n_states: int | None = None, n_params: int | None = None, *,
               name: str | None = None, tspan: Sequence[float] | None = None, stiff: bool = False,
               state_names: Sequence[str] | None = None, param_names: Sequence[str] | None = None) -> ProblemBase:
    """The registered problem for a name, a Problem or a plain ``rhs(u, p, t)`` function, over
    ``tspan`` (default: the problem's; another span registers a derived problem)."""
    if isinstance(problem_or_rhs, str):
        prob = get_problem(problem_or_rhs)
    elif isinstance(problem_or_rhs, ProblemBase):
        prob = register(problem_or_rhs)
    elif callable(problem_or_rhs):
        if n_states is None or n_params is None:
            raise ValueError("a plain right-hand side needs u0 and p to tell its numbers of states and parameters")
        if n_params < 1:
            raise ValueError("give at least one parameter (constants are parameters: no float literals)")
        # the registered base spans [0, 1] whatever tspan is (other spans: derived problems below),
        # so one function keeps one definition under its name
        span = (0.0, 1.0)
        prob = register(Problem(
            name=name or problem_or_rhs.__name__, rhs=problem_or_rhs,
            state_names=tuple(state_names or (f"u{i}" for i in range(n_states))),
            param_names=tuple(param_names or (f"p{i}" for i in range(n_params))),
            u0=(0.0,) * n_states, params=(1.0,) * n_params, tspan=span,
            sweep=Sweep(param_names[0] if param_names else "p0", 1.0, 1.0), stiff=stiff,
            default_dtype="float32", dt=None, dt0=1e-6 * (span[1] - span[0]), rtol=1e-6, atol=1e-6,
            description=f"registered from Python ({inspect.getsourcefile(problem_or_rhs) or '?'})"))
    else:
        raise ValueError(f"expected a problem name, a Problem or a function rhs(u, p, t), got {type(problem_or_rhs).__name__}")
    if tspan is None or tuple(float(x) for x in tspan) == tuple(prob.tspan):
        return prob
    span = (float(tspan[0]), float(tspan[1]))
    if not span[1] > span[0]:
        raise ValueError(f"invalid tspan {tspan!r}: need t1 > t0")
    scale = (span[1] - span[0]) / (prob.tspan[1] - prob.tspan[0])
    return register(dataclasses.replace(
        prob, name=_tspan_name(prob.name, span), tspan=span, _cache={},
        dt0=None if prob.dt0 is None else prob.dt0 * scale))


def _inputs(u0: Any, p: Any, prob: ProblemBase | None) -> EnsembleInputs:
    if isinstance(u0, EnsembleInputs):
        if p is not None:
            raise ValueError("give p inside the EnsembleInputs, not beside it")
        return u0
    if u0 is None and p is None:
        raise ValueError("give u0 (N x n_states) and/or p (N x n_params)")
    a = None if u0 is None else as_host_array(u0, "u0")
    b = None if p is None else as_host_array(p, "p")
    n = max((x.shape[0] for x in (a, b) if x is not None and x.ndim == 2), default=1)
    if a is None or a.ndim < 2:
        a = np.tile(np.asarray(prob.u0 if a is None else a, dtype=np.float64), (n, 1))
    if b is None or b.ndim < 2:
        b = np.tile(np.asarray(prob.params if b is None else b, dtype=np.float64), (n, 1))
    return EnsembleInputs(a, b)


def _mode(backend: str, method: str, dt: float | None, rtol: float | None, atol: float | None) -> str:
    modes = methods_of(backend).get(method, ()) if backend in MANIFEST else ()
    if rtol is not None or atol is not None:
        return "adaptive"
    if dt is not None or modes == ("fixed",):
        return "fixed"
    return "adaptive"


def make_spec(problem_or_rhs: Any, u0: Any, p: Any, tspan: Sequence[float] | None = None, *,
              method: str = "tsit5", backend: str = "fused", dtype: str = "float32", dt: float | None = None,
              rtol: float | None = None, atol: float | None = None, saveat: Sequence[float] | None = None,
              device: str = "cpu", threads: int | None = None, mode: str | None = None, name: str | None = None,
              stiff: bool = False, variant: str = "", max_steps: int = 100_000) -> SolveSpec:
    """The SolveSpec ``solve_ensemble`` runs (the harness's ``benchmark_ensemble`` times it).

    mode: None picks "adaptive" when rtol/atol are given or no dt is, "fixed" when dt is given
    alone (or the method has only a fixed mode); dt is the initial step of an adaptive solve."""
    if device not in DEVICE_ALIASES:
        raise ValueError(f"invalid device {device!r}: choose one of {', '.join(DEVICE_ALIASES)}")
    if isinstance(u0, EnsembleInputs):
        n_states, n_params = u0.u0.shape[1], u0.p.shape[1]
    else:
        n_states = None if u0 is None else as_host_array(u0, "u0").shape[-1]
        n_params = None if p is None else as_host_array(p, "p").shape[-1]
    prob = as_problem(problem_or_rhs, n_states, n_params, name=name, tspan=tspan, stiff=stiff)
    inputs = _inputs(u0, p, prob)
    return SolveSpec(problem=prob.name, method=method, mode=mode or _mode(backend, method, dt, rtol, atol),
                     dtype=dtype, n=inputs.n, device=DEVICE_ALIASES[device], dt=dt, rtol=rtol, atol=atol,
                     max_steps=max_steps, saveat=None if saveat is None else tuple(float(s) for s in saveat),
                     variant=variant, threads=threads, inputs=inputs)


def _counts(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, -1, dtype=np.int64) if values is None else np.asarray(values, dtype=np.int64).reshape(n)


def solution_of(spec: SolveSpec, backend: str, result: SolveResult, settings: dict) -> EnsembleSolution:
    """A backend's SolveResult in the one layout every backend shares."""
    dt = spec.np_dtype
    u_final = np.ascontiguousarray(np.asarray(result.u_final).astype(dt, copy=False))
    if spec.saveat is None:
        t = np.asarray([spec.prob.tspan[1]], dtype=dt)
        u = u_final[:, None, :].copy()
    else:
        t = np.asarray(spec.saveat, dtype=dt)
        u = np.ascontiguousarray(np.asarray(result.saved).astype(dt, copy=False))
    if result.status is not None:
        status = np.asarray(result.status, dtype=np.int64).reshape(spec.n)
    else:
        finite = np.all(np.isfinite(u_final), axis=1)
        status = np.where(finite, int(Status.SUCCESS), int(Status.NONFINITE)).astype(np.int64)
    return EnsembleSolution(t=t, u=u, u_final=u_final, status=status, steps=_counts(result.accepted, spec.n),
                            rhs_evals=_counts(result.rhs_evals, spec.n), backend=backend,
                            problem=spec.problem, settings=settings)


def run_spec(spec: SolveSpec, backend: str = "fused") -> EnsembleSolution:
    """Solve ``spec`` on ``backend`` once; ValueError naming the backend where it cannot."""
    b, why = load_backend(backend)
    if b is None:
        raise ValueError(f"backend {backend!r} is not available here: {why}")
    why_not = b.check(spec)
    if why_not:
        raise ValueError(f"backend {backend!r} cannot run this solve: {why_not}")
    settings = {**spec.as_dict(), **b.settings(spec)}
    prep = b.prepare(spec)
    try:
        out = prep.run()
        prep.sync(out)
        result = prep.fetch(out)
    finally:
        prep.close()
    return solution_of(spec, backend, result, settings)


def solve_ensemble(problem_or_rhs: Any, u0: Any = None, p: Any = None, tspan: Sequence[float] | None = None, *,
                   method: str = "tsit5", backend: str = "fused", dtype: str = "float32", dt: float | None = None,
                   rtol: float | None = None, atol: float | None = None, saveat: Sequence[float] | None = None,
                   device: str = "cpu", threads: int | None = None, **options: Any) -> EnsembleSolution:
    """Solve an ensemble with per-trajectory initial states ``u0`` (N, n_states) and parameters
    ``p`` (N, n_params) on ``backend`` (see the module docstring).

    A 1-D ``u0`` or ``p`` (or None, for a registered problem) is shared by every trajectory.
    ``threads`` goes to the backend as ``SolveSpec.threads`` (the C++ arm's OpenMP threads, JAX's
    host devices); library-wide pools (Numba's, torch's) are pinned by the harness
    (``benchmark_ensemble``), not here.
    ``options``: ``mode``, ``name``, ``stiff``, ``variant``, ``max_steps`` (see ``make_spec``).
    The solution's layout and dtype are the same whichever backend ran (``EnsembleSolution``).
    """
    spec = make_spec(problem_or_rhs, u0, p, tspan, method=method, backend=backend, dtype=dtype, dt=dt,
                     rtol=rtol, atol=atol, saveat=saveat, device=device, threads=threads, **options)
    return run_spec(spec, backend)


def parameter_grid(problem: Any, name: str, values: Any, u0: Sequence[float] | None = None) -> EnsembleInputs:
    """One parameter on a grid (one trajectory per value), the others at the problem's defaults;
    ``problem``: a name or a Problem. Pass the result as ``u0`` to ``solve_ensemble``."""
    return _grid_of(get_problem(problem) if isinstance(problem, str) else problem, name, values, u0)


def random_initial_conditions(problem: Any, n: int, seed: int = 0, **kwargs: Any) -> EnsembleInputs:
    """``n`` seeded random initial states (problems.inputs.random_initial_conditions: ``low``/
    ``high`` for a uniform box, else normal around u0 with ``scale``; ``params`` to set p)."""
    return _random_of(get_problem(problem) if isinstance(problem, str) else problem, n, seed, **kwargs)


__all__ = ["EnsembleSolution", "as_problem", "make_spec", "parameter_grid", "random_initial_conditions",
           "run_spec", "solution_of", "solve_ensemble"]
