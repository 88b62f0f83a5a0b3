"""The one small interface every solver backend implements, and the values it exchanges.

Lifecycle (the runner owns the clock; a backend never times itself)::

    backend = get_backend("fused")
    ok, why = backend.available("cpu")         # can this library run here at all?
    why_not = backend.check(spec)              # None, or why this combination is unsupported
    prep = backend.prepare(spec)               # untimed: inputs built and moved to the device
    out = prep.run(); prep.sync(out)           # first call: timed on its own as compile time
    out = prep.run(); prep.sync(out)           # the only timed region (sync included)
    result = prep.fetch(out)                   # untimed: copy back, per-trajectory statistics
    prep.close()
"""
from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, replace
from enum import IntEnum
from typing import Any, ClassVar

import numpy as np

from problems.base import ProblemBase, check_dtype, check_n
from problems.inputs import EnsembleInputs
from problems.kinds import kind_of
from problems.registry import get_problem
from solvers import numeric_policy

MODES = ("fixed", "adaptive")
DEVICES = ("cpu", "gpu")


class Status(IntEnum):
    """Per-trajectory outcome, as diffrax's RESULTS / torchode's status codes."""

    SUCCESS = 0
    MAX_STEPS = 1      # max_steps reached before the end time
    DT_UNDERFLOW = 2   # the step size fell below what the dtype can resolve
    NONFINITE = 3      # a state or error estimate became inf/nan
    FAILED = 4         # any other failure a library reports (e.g. a nonlinear solve diverged)
    NOT_CONVERGED = 5  # a nonlinear solve stopped at its iteration cap without meeting its tolerance


class UnsupportedError(Exception):
    """Raised by ``prepare`` for a combination the backend cannot run; the message is the reason."""


@dataclass(frozen=True)
class SolveSpec:
    """Everything that defines one ensemble solve. Unset tolerances and steps take the problem's.

    Attributes:
        problem: problem name (see ``problems.problem_names()``).
        method: integrator, e.g. "tsit5", "rk4", "rk4_38", "dopri5", "rosenbrock23", "rodas5p",
            "kvaerno5", "lsoda" (each backend says which it has).
        mode: "fixed" (exactly ``(t1 - t0) / dt`` steps, integer step counter) or "adaptive".
        dtype: "float32" or "float64".
        n: number of trajectories.
        device: "cpu" or "gpu".
        dt: fixed step size, or the initial step dt0 in adaptive mode.
        rtol, atol: adaptive tolerances.
        max_steps: per-trajectory cap on accepted + rejected steps.
        saveat: times at which to save states; None saves the final state only.
        variant: a backend's named option (e.g. diffrax "vmap-of-jit"); "" is its default.
        controller: named step-controller preset (see solvers.tableaus), "diffeqgpu" by default.
        threads: CPU threads the solve may use (Numba's pool, torch's intra-op pool, JAX host
            devices); None means every core. The harness resolves None to ``os.cpu_count()``
            and configures each worker process for it before any library is imported.
        seed: the seed of the noise (SDE problems; ignored by ODEs). Trajectory i draws its
            increments from the counter-based generator keyed by (i, seed) (problems.brownian),
            so one seed names the same ensemble of paths for every N, sharding and device.
        shard_of: (start, total) when this solve is one shard of a larger ensemble: its ``n``
            trajectories are trajectories start .. start+n-1 of the ``total``-trajectory
            ensemble (harness.run.shards splits a cell so); None: the whole n-trajectory ensemble.
        inputs: explicit per-trajectory initial states (N, n_states) and parameters
            (N, n_params) (problems.inputs.EnsembleInputs, of ``shard_of[1]`` trajectories for a
            shard) in place of the problem's sweep; None: the problem's own ensemble. Every
            backend reads its inputs through :meth:`ensemble`, so every backend honours them.
    """

    problem: str
    method: str
    mode: str
    dtype: str
    n: int
    device: str = "cpu"
    dt: float | None = None
    rtol: float | None = None
    atol: float | None = None
    max_steps: int = 100_000
    saveat: tuple[float, ...] | None = None
    variant: str = ""
    controller: str = "diffeqgpu"
    threads: int | None = None
    seed: int = 0
    shard_of: tuple[int, int] | None = None
    inputs: EnsembleInputs | None = None

    def __post_init__(self) -> None:
        get_problem(self.problem)
        check_dtype(self.dtype)
        check_n(self.n)
        if self.mode not in MODES:
            raise ValueError(f"invalid mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.device not in DEVICES:
            raise ValueError(f"invalid device {self.device!r}: choose one of {', '.join(DEVICES)}")
        for name in ("dt", "rtol", "atol"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"invalid {name} {v!r}: must be a positive finite number")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads <= 0):
            raise ValueError(f"invalid threads {self.threads!r}: must be a positive integer")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 32:
            raise ValueError(f"invalid seed {self.seed!r}: an integer in 0 .. 2**32 - 1")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps <= 0:
            raise ValueError(f"invalid max_steps {self.max_steps!r}: must be a positive integer")
        if self.saveat is not None:
            t0, t1 = self.prob.tspan
            s = tuple(float(x) for x in self.saveat)
            if not s or any(b < a for a, b in zip(s, s[1:])) or s[0] < t0 or s[-1] > t1:
                raise ValueError(f"invalid saveat: must be non-empty, sorted, inside {self.prob.tspan}")
            object.__setattr__(self, "saveat", s)
        if self.mode == "fixed":
            self.n_steps  # validates that dt divides the time span
        if self.shard_of is not None:
            start, total = (int(x) for x in self.shard_of)
            if not (0 <= start and start + self.n <= total):
                raise ValueError(f"invalid shard_of {self.shard_of!r}: trajectories {start}.."
                                 f"{start + self.n - 1} are not inside an ensemble of {total}")
            object.__setattr__(self, "shard_of", (start, total))
        if self.inputs is not None:
            self._check_inputs()

    def _check_inputs(self) -> None:
        if not isinstance(self.inputs, EnsembleInputs):
            raise ValueError(f"invalid inputs {type(self.inputs).__name__}: give a problems.inputs.EnsembleInputs")
        kind = kind_of(self.prob)
        if not kind.explicit_inputs:
            raise ValueError(f"{self.problem}: {kind.name} problems take no explicit per-trajectory inputs")
        total = self.n if self.shard_of is None else self.shard_of[1]
        shapes = ((total, self.prob.n_states), (total, self.prob.n_params))
        if (self.inputs.u0.shape, self.inputs.p.shape) != shapes:
            raise ValueError(f"{self.problem}: inputs must be u0 {shapes[0]} and p {shapes[1]}, "
                             f"got {self.inputs.u0.shape} and {self.inputs.p.shape}")

    # ---- resolved settings ---------------------------------------------------------------
    @property
    def prob(self) -> ProblemBase:
        return get_problem(self.problem)

    @property
    def step(self) -> float:
        """dt in fixed mode, dt0 in adaptive mode (the problem's dt, else its dt0)."""
        if self.dt is not None:
            return float(self.dt)
        if self.mode == "fixed" or self.prob.dt0 is None:
            if self.prob.dt is None:
                raise ValueError(f"problem {self.problem!r} has no default step size: give dt")
            return float(self.prob.dt)
        return float(self.prob.dt0)

    @property
    def n_steps(self) -> int:
        """Fixed mode: the exact number of steps; dt must divide the time span."""
        if self.mode != "fixed":
            raise ValueError("n_steps is defined for fixed mode only")
        if self.dt is None and self.prob.dt is None:
            raise ValueError(f"problem {self.problem!r} has no fixed step size: give dt")
        t0, t1 = self.prob.tspan
        k = (t1 - t0) / self.step
        n = int(round(k))
        if n <= 0 or abs(k - n) > 1e-6 * max(1.0, k):
            raise ValueError(f"dt={self.step} does not divide the time span {self.prob.tspan}")
        return n

    @property
    def tol(self) -> tuple[float, float]:
        """(rtol, atol) with the problem's defaults filled in."""
        return (float(self.rtol if self.rtol is not None else self.prob.rtol),
                float(self.atol if self.atol is not None else self.prob.atol))

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def ensemble(self) -> tuple[np.ndarray, np.ndarray]:
        """(u0 (N, n_states), p (N, n_params)) in this spec's dtype (a shard: its slice only):
        the explicit ``inputs`` where given, else the problem's own ensemble."""
        if self.inputs is not None:
            start = 0 if self.shard_of is None else self.shard_of[0]
            return self.inputs.take(self.dtype, start, start + self.n)
        if self.shard_of is None:
            return self.prob.ensemble(self.n, self.dtype)
        start, total = self.shard_of
        return self.prob.ensemble(total, self.dtype, start, start + self.n)

    def with_(self, **changes) -> "SolveSpec":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The spec with defaults resolved, for results rows and settings records."""
        d = asdict(self)
        if self.inputs is None:
            del d["inputs"]  # the problem's own ensemble: rows keep their settings as before
        else:
            d["inputs"] = self.inputs.describe()
        d["dt"] = self.step
        if self.mode == "adaptive":
            d["rtol"], d["atol"] = self.tol
        else:
            d["rtol"] = d["atol"] = None
        return d


@dataclass
class SolveResult:
    """What a solve returns, on the host, as NumPy arrays (None: the library does not expose it).

    u_final: (N, n_states) final states in the solve's dtype.
    saved: (N, len(saveat), n_states) or None.
    status: (N,) int codes of :class:`Status`.
    accepted / rejected / rhs_evals: (N,) per-trajectory counts. Where the library shares one step
        sequence across the batch, every trajectory gets the shared count (``notes`` says so).
    notes: free-form facts worth storing (e.g. {"step_scope": "shared"}).
    events: (N,) events per trajectory (event problems: problems.events_core), or None.
    event_t: (N, K) the first K event times per trajectory (NaN-padded), or None.
    """

    u_final: np.ndarray
    saved: np.ndarray | None = None
    status: np.ndarray | None = None
    accepted: np.ndarray | None = None
    rejected: np.ndarray | None = None
    rhs_evals: np.ndarray | None = None
    notes: dict = field(default_factory=dict)
    events: np.ndarray | None = None
    event_t: np.ndarray | None = None


class Prepared(ABC):
    """A solve made ready by ``Backend.prepare``: inputs built, on the device, callables built.

    ``run`` and ``sync`` form the timed region; everything else is untimed.
    """

    #: How this solve dispatches work on the host, for launch counting: "kernel" (one compiled
    #: kernel call: Numba), "xp" (array operations through ``self.xp``), "torch", "jax", "python".
    dispatch: ClassVar[str] = "python"

    @abstractmethod
    def run(self) -> Any:
        """Start the solve; may return before the device is done. Returns a handle for sync/fetch."""

    def sync(self, out: Any) -> None:
        """Block until ``out`` is complete on the device (no-op for synchronous CPU code)."""

    @abstractmethod
    def fetch(self, out: Any) -> SolveResult:
        """Copy results to the host and assemble a :class:`SolveResult` (untimed)."""

    def close(self) -> None:
        """Release device memory and caches held by this solve."""


@dataclass(frozen=True)
class KindSupport:
    """How a backend serves one workload kind (problems.kinds).

    methods: method -> modes, the methods of this kind.
    module: the module serving the kind, with ``check(backend, spec) -> str | None``,
        ``settings(backend, spec) -> dict`` and ``prepare(backend, spec) -> Prepared``, imported
        on first use; "" where the backend class serves it itself (``check_own``,
        ``settings_own``, ``prepare_own``).
    """

    methods: dict[str, tuple[str, ...]]
    module: str = ""


class Backend(ABC):
    """A solver library or our own solver, behind one interface.

    Subclasses set ``name``, ``devices`` and ``kinds`` (kind -> :class:`KindSupport`), and may
    list named ``variants``; ``methods`` (every method -> modes) is derived from ``kinds``.
    ``check``, ``settings`` and ``prepare`` dispatch by the problem's kind, so a subclass writes
    only ``check_own``, ``settings_own`` and ``prepare_own`` for the kind it serves itself.
    ``step_control`` says how step sizes are chosen across the ensemble: "none" (fixed),
    "per-trajectory" (independent, as the fused kernel), "lockstep" (per-trajectory dt but all
    lanes iterate until the slowest ends: jax.vmap), "shared" (one dt for the whole batch:
    batched torchdiffeq), "serial" (one solve at a time).
    """

    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: kind -> how this backend serves it; a kind not listed is "unsupported".
    kinds: ClassVar[dict[str, KindSupport]] = {}
    #: Every method of every kind (method -> modes): derived from ``kinds``.
    methods: ClassVar[dict[str, tuple[str, ...]]] = {}
    variants: ClassVar[tuple[str, ...]] = ("",)
    stiff_methods: ClassVar[frozenset[str]] = frozenset({"rosenbrock23", "rodas4", "rodas5p", "kvaerno5", "radau", "bdf", "lsoda"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kinds" in cls.__dict__:
            cls.methods = {m: tuple(modes) for served in cls.kinds.values() for m, modes in served.methods.items()}

    @abstractmethod
    def available(self, device: str = "cpu") -> tuple[bool, str]:
        """(True, version info) if this backend can run on ``device`` here, else (False, reason)."""

    def check(self, spec: SolveSpec) -> str | None:
        """None if ``spec`` can run; otherwise the reason it cannot (recorded as 'unsupported'):
        the common checks, the device's availability, then the kind's own checks."""
        kind = kind_of(spec.prob).name
        served = self.kinds.get(kind)
        if served is None:
            return f"{self.name} does not solve {kind} problems (solves: {', '.join(self.kinds)})"
        if spec.device not in self.devices:
            return f"{self.name} has no {spec.device} path"
        if spec.method not in self.methods:
            return f"{self.name} has no method {spec.method!r} (has: {', '.join(self.methods)})"
        if spec.method not in served.methods:
            return f"{self.name} has no {kind} method {spec.method!r} (has: {', '.join(served.methods)})"
        if spec.mode not in served.methods[spec.method]:
            return f"{self.name} {spec.method} has no {spec.mode} mode"
        if spec.variant not in self.variants:
            return f"{self.name} has no variant {spec.variant!r} (has: {', '.join(map(repr, self.variants))})"
        if spec.prob.stiff and spec.method not in self.stiff_methods:
            return f"{spec.problem} is stiff and {spec.method} is an explicit method"
        ok, why = self.available(spec.device)
        if not ok:
            return why
        module = self._module(spec)
        return self.check_own(spec) if module is None else module.check(self, spec)

    def check_own(self, spec: SolveSpec) -> str | None:
        """The backend's own checks for a kind it serves itself, after the common ones."""
        return None

    def _module(self, spec: SolveSpec) -> Any:
        """The module serving ``spec``'s kind (imported on first use: each pulls in its own
        compiler or library), or None where this class serves it itself."""
        module = self.kinds[kind_of(spec.prob).name].module
        return importlib.import_module(module) if module else None

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "per-trajectory"

    #: Device -> who generates this backend's arithmetic there (a key of
    #: ``solvers.numeric_policy.FMA``): its rows record ``fma`` and ``vector_width``.
    compilers: ClassVar[dict[str, str]] = {}

    def compiler(self, spec: SolveSpec) -> str | None:
        """The code generator of ``spec``'s arithmetic (None: no ``fma``/``vector_width`` recorded)."""
        return self.compilers.get(spec.device)

    def settings(self, spec: SolveSpec) -> dict[str, Any]:
        """Every setting this backend uses for ``spec`` (stored with each result, for fairness),
        with the numeric policy's ``fma`` and ``vector_width`` where a compiler is named."""
        module = self._module(spec)
        out = self.settings_own(spec) if module is None else module.settings(self, spec)
        compiler = self.compiler(spec)
        if compiler:
            for key, value in numeric_policy.settings(compiler).items():
                out.setdefault(key, value)
        return out

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        """:meth:`settings` for a kind this class serves itself."""
        return {"step_control": self.step_control(spec)}

    def prepare(self, spec: SolveSpec) -> Prepared:
        """Build inputs and callables for ``spec`` (untimed); UnsupportedError with the reason if
        ``check`` refuses it (the device unavailable included)."""
        reason = self.check(spec)
        if reason:
            raise UnsupportedError(reason)
        module = self._module(spec)
        return self.prepare_own(spec) if module is None else module.prepare(self, spec)

    @abstractmethod
    def prepare_own(self, spec: SolveSpec) -> Prepared:
        """:meth:`prepare` for a kind this class serves itself, after the checks passed."""
