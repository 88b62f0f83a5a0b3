"""The problem definition every backend is built from.

A problem's right-hand side is written **once**, as plain Python with tuple unpacking and
arithmetic::

    def rhs(u, p, t):
        x, y, z = u
        sigma, rho, beta = p
        return (sigma * (y - x), x * (rho - z) - y, x * y - beta * z)

``u`` and ``p`` are sequences of scalars (one trajectory: Numba kernels, JAX under vmap, SymPy)
or of equally shaped arrays (a whole ensemble at once: NumPy, CuPy, torch), and the function
returns a tuple with one entry per state. Math functions come from the module-level name ``m``
(``from problems.core import m``), which :meth:`Problem.rhs_for` rebinds to ``math``, ``numpy``,
``jax.numpy``, ``torch``, ``cupy`` or ``sympy``: the same code object runs everywhere.

Rules that keep one source valid for every backend:

* no Python float literals in the right-hand side: a literal is float64 and silently promotes a
  float32 Numba kernel to float64 arithmetic. Put constants in the parameters;
* no ``if`` on state values (JAX traces it, SymPy cannot decide it);
* no in-place updates, no ``**`` with a float exponent.
"""
from __future__ import annotations

import inspect
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import numpy as np

from problems.base import ProblemBase, check_dtype, check_n

# The placeholder math namespace seen by right-hand sides at definition time. `rhs_for`
# replaces it per backend; `math` keeps the plain definition callable on Python floats.
m = math

@dataclass(frozen=True)
class Sweep:
    """The deterministic ensemble: parameter ``param`` takes ``linspace(lo, hi, N)``.

    Every other parameter keeps its default and every trajectory starts from ``u0``; this is the
    paper's protocol (e.g. Lorenz ``rho = linspace(0, 21, N)``).
    """

    param: str
    lo: float
    hi: float

    def values(self, n: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """``linspace(lo, hi, n)[start:stop]``, computed for the slice only (a shard of a large
        ensemble need not build the whole sweep) and bit-identical to the slice of the whole:
        element i is ``i * step + lo`` and the last one ``hi``, as NumPy's linspace computes it."""
        n = check_n(n)
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f"invalid slice {start}:{stop} of a {n}-trajectory sweep")
        if start == 0 and stop == n:
            return np.linspace(self.lo, self.hi, n, dtype=np.float64)
        step = (self.hi - self.lo) / (n - 1)
        y = np.arange(start, stop, dtype=np.float64) * step + self.lo
        if stop == n and n > 1:
            y[-1] = self.hi
        return y


@dataclass(frozen=True)
class Invariant:
    """A conserved quantity ``weights . u`` (linear invariants cover the zoo)."""

    name: str
    weights: tuple[float, ...]

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """Evaluate on states shaped (..., n_states)."""
        return np.asarray(u, dtype=np.float64) @ np.asarray(self.weights, dtype=np.float64)


@dataclass(frozen=True)
class Problem(ProblemBase):
    """One ODE of the zoo: everything a backend, a reference or a test needs to know.

    Attributes:
        name: registry key ("lorenz").
        rhs: the right-hand side, written once (see module docstring).
        state_names / param_names: names of u and p entries, in order.
        u0: initial state shared by all trajectories.
        params: default parameter values.
        tspan: (t0, t1).
        sweep: which parameter the ensemble varies, and over what range.
        stiff: True when explicit methods are the wrong tool.
        default_dtype: the paper's precision for this problem.
        dt: the fixed step size of the protocol (None where the protocol has no fixed mode).
        dt0: the initial step of adaptive solves (None: use ``dt``).
        rtol / atol: the adaptive tolerances of the protocol.
        invariants: conserved quantities, used by tests and reference checks.
        citation: where the problem and its protocol come from.
    """

    kind: ClassVar[str] = "ode"
    stored_reference: ClassVar[bool] = True

    name: str
    rhs: Callable[..., tuple]
    state_names: tuple[str, ...]
    param_names: tuple[str, ...]
    u0: tuple[float, ...]
    params: tuple[float, ...]
    tspan: tuple[float, float]
    sweep: Sweep
    stiff: bool
    default_dtype: str
    dt: float | None
    rtol: float
    atol: float
    dt0: float | None = None
    invariants: tuple[Invariant, ...] = ()
    citation: str = ""
    description: str = ""
    #: Optional vectorised form of the same right-hand side, ``rhs_array(u, p, t)`` with the state
    #: on axis 0 of ``u`` (math from ``m``, as ``rhs``): for systems too large to spell out as
    #: tuples of components (problems.lorenz96). Array-style backends use it where given.
    rhs_array: Callable[..., Any] | None = None
    #: Trajectories a float64 reference integrates at most (problems.reference).
    reference_size: int = 512
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        check_dtype(self.default_dtype)
        if len(self.u0) != len(self.state_names):
            raise ValueError(f"{self.name}: u0 has {len(self.u0)} entries, states {len(self.state_names)}")
        if len(self.params) != len(self.param_names):
            raise ValueError(f"{self.name}: params and param_names differ in length")
        if self.dt is None and self.dt0 is None:
            raise ValueError(f"{self.name}: give dt (fixed step) or dt0 (initial adaptive step)")
        if self.sweep.param not in self.param_names:
            raise ValueError(f"{self.name}: sweep parameter {self.sweep.param!r} is not a parameter")

    @property
    def sweep_index(self) -> int:
        return self.param_names.index(self.sweep.param)

    # ---- the ensemble ------------------------------------------------------------------
    def ensemble(self, n: int, dtype: str | None = None, start: int = 0,
                 stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Initial states (N, n_states) and parameters (N, n_params) of the N-trajectory sweep;
        with ``start``/``stop``, only trajectories start .. stop-1 of it (a shard).

        Values are rounded to ``dtype`` (default: the problem's), so a float64 reference built
        from ``ensemble(n, "float32")`` integrates exactly the inputs a float32 solver sees.
        """
        n = check_n(n)
        dt = np.dtype(check_dtype(dtype or self.default_dtype))
        values = self.sweep.values(n, start, stop)
        k = len(values)
        u0 = np.tile(np.asarray(self.u0, dtype=np.float64), (k, 1)).astype(dt)
        p = np.tile(np.asarray(self.params, dtype=np.float64), (k, 1))
        p[:, self.sweep_index] = values
        return np.ascontiguousarray(u0), np.ascontiguousarray(p.astype(dt))

    # ---- translation -------------------------------------------------------------------
    def rhs_for(self, namespace: Any) -> Callable[..., tuple]:
        """The same right-hand side with its math namespace ``m`` bound to ``namespace``.

        ``namespace`` is a module such as ``math``, ``numpy``, ``jax.numpy``, ``torch``,
        ``cupy`` or ``sympy``. The code object is shared, only the globals differ, so Numba
        can compile the result like any module-level function.
        """
        return self._bind(self.rhs, "rhs", namespace)

    def rhs_array_for(self, namespace: Any) -> Callable[..., Any]:
        """``rhs_array`` with ``m`` bound to ``namespace`` (ValueError if the problem has none)."""
        if self.rhs_array is None:
            raise ValueError(f"{self.name} has no vectorised right-hand side (rhs_array)")
        return self._bind(self.rhs_array, "rhs_array", namespace, as_module=True)

    def _bind(self, f: Callable, which: str, namespace: Any, as_module: bool = False) -> Callable:
        key = (which, getattr(namespace, "__name__", id(namespace)))
        if key not in self._cache:
            glb = dict(f.__globals__)
            glb["m"] = namespace
            if as_module:
                # The globals of a module of their own in sys.modules: torch.compile (dynamo)
                # evaluates its guards on `m.roll` in the function's module, not in __globals__.
                name = f"{f.__module__}._bound_{which}_{key[1]}".replace(".", "_").replace("-", "_")
                mod = sys.modules.get(name) or types.ModuleType(name)
                mod.__dict__.update(glb)
                mod.__dict__["__name__"] = name
                sys.modules[name] = mod
                glb = mod.__dict__
            g = types.FunctionType(f.__code__, glb, f.__name__, f.__defaults__, f.__closure__)
            g.__qualname__ = f.__qualname__
            g.__doc__ = f.__doc__
            if as_module:
                g.__module__ = glb["__name__"]
            self._cache[key] = g
        return self._cache[key]

    def rhs_numpy(self, u: np.ndarray, p: np.ndarray, t: float = 0.0) -> np.ndarray:
        """Batched NumPy evaluation: u (N, n_states), p (N, n_params) -> du (N, n_states)."""
        f = self.rhs_for(np)
        du = f(tuple(np.moveaxis(u, -1, 0)), tuple(np.moveaxis(p, -1, 0)), t)
        return np.stack(np.broadcast_arrays(*du), axis=-1)

    def fingerprint_blob(self) -> str:
        blob = repr((self.name, inspect.getsource(self.rhs), self.state_names, self.param_names, self.u0,
                     self.params, self.tspan, self.sweep, self.default_dtype, self.dt, self.dt0))
        if self.rhs_array is not None:  # only then: older problems keep their hashes
            blob += inspect.getsource(self.rhs_array)
        return blob
