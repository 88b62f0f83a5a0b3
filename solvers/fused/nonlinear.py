"""Fused batched nonlinear solves: one kernel per batch, one system per thread (CUDA) or lane (CPU).

The design of SimpleNonlinearSolve.jl inside a KernelAbstractions kernel (NonlinearSolve.jl paper,
sec. 3.3), generated from the problem's written-once residual: each thread (GPU) or lane (CPU)
runs the whole iteration of one system with its state, residual and Jacobian in registers:

* residual and Jacobian: the SymPy-printed straight-line sources of
  ``problems.derive.derivatives(problem)``, every constant typed by ``_T``;
* the linear solve ``J dx = -F``: Gaussian elimination with partial pivoting on the augmented
  (d, d + 1) matrix, loops of compile-time length d (row swaps by compare-and-swap, so every
  index is fixed and the loops can be unrolled). General dense: no sparsity is assumed (the
  lower-bidiagonal Rosenbrock Jacobian is solved as a full matrix);
* the iteration (``solvers.nonlinear_methods``): Newton, or the dogleg trust region.

Targets: ``solve_serial`` (CPU: ``prange`` over blocks of systems, one system at a time; no
lane vectorisation yet: the ODE kernels' lane layout is not ported to this kind) and
``solve_kernel`` (CUDA: one thread per system, scratch in ``cuda.local.array``: small fixed-size
loops the compiler unrolls into registers). The source is written to the fused backend's cache
directory under a name hashing the key, the problem and this file, and imported
from there (Numba's ``cache=True`` keeps the CPU machine code between runs), as for the ODE kernels.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from problems.nonlinear_core import NonlinearProblem
from problems import derive
from problems.registry import get_problem
from solvers.base import SolveResult, Status
from solvers.cache import writable_cache
from solvers.fused.build import import_file, write_source
from solvers.nonlinear_methods import NONLINEAR_METHODS, TRUST_REGION, method_settings


_lock = threading.Lock()
_modules: dict["NonlinearKernelKey", types.ModuleType] = {}


@dataclass(frozen=True)
class NonlinearKernelKey:
    problem: str
    method: str
    dtype: str
    target: str  # "cpu" or "cuda"

    def __post_init__(self) -> None:
        if self.method not in NONLINEAR_METHODS:
            raise ValueError(f"invalid nonlinear method {self.method!r}: choose one of {', '.join(NONLINEAR_METHODS)}")
        if self.target not in ("cpu", "cuda"):
            raise ValueError(f"invalid target {self.target!r}: choose one of cpu, cuda")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"invalid dtype {self.dtype!r}: choose one of float32, float64")

    def module_name(self) -> str:
        return (f"fused_nonlinear_{self.problem}_{self.method.replace('-', '_')}_{self.dtype}_{self.target}_"
                f"{_digest(self)}")


@functools.lru_cache(maxsize=None)
def _digest(key: NonlinearKernelKey) -> str:
    root = Path(__file__).resolve().parents[2]
    blob = hashlib.sha256()
    for name in ("solvers/fused/nonlinear.py", "solvers/nonlinear_methods.py", "problems/nonlinear_core.py",
                 "problems/derive.py", "solvers/base.py"):
        blob.update((root / name).read_bytes())
    blob.update(repr(key).encode())
    blob.update(get_problem(key.problem).fingerprint().encode())
    return blob.hexdigest()[:16]


# ================================================================================================
# Source generation
# ================================================================================================

ALGORITHM = r"""
@_jit
def _linsolve(A):
    # A (D, D + 1) augmented [J | b], in place: Gaussian elimination with partial pivoting
    # (compare-and-swap of whole rows: fixed indices, so the compiler can unroll the loops);
    # the solution ends in A[:, D]. Returns True when a pivot is exactly zero.
    # Every product is rounded before it is subtracted (_mul: on a GPU a product NVVM does not
    # fuse with the subtraction; see generate_source for the CPU).
    singular = False
    for k in range(_D):
        for r in range(k + 1, _D):
            if abs(A[r, k]) > abs(A[k, k]):
                for c in range(k, _D + 1):
                    t = A[k, c]
                    A[k, c] = A[r, c]
                    A[r, c] = t
        piv = A[k, k]
        if piv == _ZERO:
            singular = True
        for r in range(k + 1, _D):
            f = A[r, k] / piv
            for c in range(k + 1, _D + 1):
                A[r, c] = A[r, c] - _mul(f, A[k, c])
    for r in range(_D - 1, -1, -1):
        acc = A[r, _D]
        for c in range(r + 1, _D):
            acc = acc - _mul(A[r, c], A[c, _D])
        A[r, _D] = acc / A[r, r]
    return singular


@_jit
def _finite(v):
    ok = True
    for k in range(_D):
        ok = ok and (v[k] - v[k]) == _ZERO  # 0 for finite values, nan for inf/nan
    return ok


@_jit
def _converged(step, xnew, f, rtol, atol):
    ok = True
    for k in range(_D):
        ok = ok and abs(step[k]) < atol + rtol * abs(xnew[k]) and abs(f[k]) < atol
    return ok


@_jit
def _newton(x, pp, rtol, atol, max_iter, A, F, S, Y, counts):
    # Newton-Raphson on one system; x (D,) in place; returns the status code
    while counts[0] < max_iter:
        _eval_jac(x, pp, A)
        _eval_residual(x, pp, F)
        counts[0] += 1
        counts[2] += 1
        if not _finite(F):
            return _NONFINITE
        for k in range(_D):
            A[k, _D] = -F[k]
        singular = _linsolve(A)
        for k in range(_D):
            S[k] = A[k, _D]
            Y[k] = x[k] + S[k]
        if singular:
            return _FAILED
        finite = _finite(Y) and _finite(F)
        conv = _converged(S, Y, F, rtol, atol)
        for k in range(_D):
            x[k] = Y[k]
        if not finite:
            return _NONFINITE
        if conv:
            return _SUCCESS
    return _NOT_CONVERGED


@_jit
def _trust_region(x, pp, rtol, atol, max_iter, radius, A, JJ, F, S, Y, H, G, PN, counts):
    # Powell dogleg trust region on |F|^2 / 2 (solvers.nonlinear_methods); x (D,) in place
    _eval_residual(x, pp, F)
    counts[2] += 1
    if not (_finite(x) and _finite(F)):
        return _NONFINITE
    while counts[0] + counts[1] < max_iter:
        _eval_jac(x, pp, A)
        gg = _ZERO
        for c in range(_D):  # gradient g = J^T F
            g = _ZERO
            for r in range(_D):
                g += A[r, c] * F[r]
            G[c] = g
            gg += g * g
        jgjg = _ZERO
        for r in range(_D):
            jg = _ZERO
            for c in range(_D):
                jg += A[r, c] * G[c]
            jgjg += jg * jg
        for r in range(_D):  # JJ keeps J for the predicted reduction (the solve overwrites A)
            for c in range(_D):
                JJ[r, c] = A[r, c]
        for k in range(_D):
            A[k, _D] = -F[k]
        singular = _linsolve(A)
        if singular:
            return _FAILED
        nn = _ZERO
        for k in range(_D):
            PN[k] = A[k, _D]
            nn += PN[k] * PN[k]
        nn = m.sqrt(nn)
        gn = m.sqrt(gg)
        tc = gg / jgjg
        cn = tc * gn
        if nn <= radius:
            for k in range(_D):
                S[k] = PN[k]
        elif cn >= radius:
            for k in range(_D):
                S[k] = -(radius / gn) * G[k]
        else:  # dogleg: S = pc + tau (pn - pc) with |S| = radius
            qa = _ZERO
            qb = _ZERO
            for k in range(_D):
                q = PN[k] + tc * G[k]
                qa += q * q
                qb += -tc * G[k] * q
            qb = _TWO * qb
            qc = cn * cn - radius * radius
            disc = qb * qb - _FOUR * qa * qc
            if disc < _ZERO:
                disc = _ZERO
            tau = (-qb + m.sqrt(disc)) / (_TWO * qa)
            for k in range(_D):
                S[k] = -tc * G[k] + tau * (PN[k] + tc * G[k])
        pnorm = _ZERO
        for k in range(_D):
            Y[k] = x[k] + S[k]
            pnorm += S[k] * S[k]
        pnorm = m.sqrt(pnorm)
        _eval_residual(Y, pp, H)
        counts[2] += 1
        f0 = _ZERO
        fl = _ZERO
        fh = _ZERO
        for r in range(_D):
            lp = F[r]
            for c in range(_D):
                lp += JJ[r, c] * S[c]
            f0 += F[r] * F[r]
            fl += lp * lp
            fh += H[r] * H[r]
        pred = _HALF * (f0 - fl)
        ared = _HALF * (f0 - fh)
        rho = ared / pred
        conv = _converged(S, Y, F, rtol, atol)
        finite = _finite(Y) and _finite(H)
        accept = finite and (conv or (pred > _ZERO and rho > _ETA))
        if not finite:
            radius = _SHRINK * radius
        elif not (rho >= _RHO_LOW):
            radius = _SHRINK * pnorm
        elif rho > _RHO_HIGH and pnorm >= _REACH * radius:
            radius = _EXPAND * radius if _EXPAND * radius < _MAX_RADIUS else _MAX_RADIUS
        if accept:
            counts[0] += 1
            for k in range(_D):
                x[k] = Y[k]
                F[k] = H[k]
            if conv:
                return _SUCCESS
        else:
            counts[1] += 1
    return _NOT_CONVERGED
"""


def _problem_source(prob) -> list[str]:
    """Residual and Jacobian (SymPy-printed) and array wrappers filling F (D,) and A[:, :D]."""
    d = prob.n_states
    derivs = derive.derivatives(prob)
    xs = ", ".join(f"x[{k}]" for k in range(d)) + ("," if d == 1 else "")
    lines = ["@_jit"] + derivs.residual_source.rstrip("\n").split("\n")
    lines += ["", "@_jit"] + derivs.jac_source.rstrip("\n").split("\n")
    lines += ["", "@_jit", "def _eval_residual(x, pp, F):", f"    f = residual(({xs}), pp)"]
    lines += [f"    F[{k}] = f[{k}]" for k in range(d)]
    lines += ["", "@_jit", "def _eval_jac(x, pp, A):", f"    J = jac(({xs}), pp)"]
    lines += [f"    A[{r}, {c}] = J[{r}][{c}]" for r in range(d) for c in range(d)]
    return lines


#: Systems per block of the CPU kernel: one set of scratch arrays is allocated per block.
CPU_BLOCK = 64
_SCRATCH = ("x", "A", "JJ", "F", "S", "Y", "H", "G", "PN", "counts")


def _driver_source(key: NonlinearKernelKey, npar: int) -> list[str]:
    """``_solve_one``: one system from its start to its status, in caller-provided scratch
    arrays; and the target's entry points. Entry-point arguments: u0 (D, N) starts, p (npar, N),
    out (D, N), stats (3, N) int32 (accepted, rejected, residual evaluations), status (N,) int32,
    rtol, atol, max_iter, radius0."""
    if key.target == "cuda":
        alloc = lambda shape, t="_T": f"cuda.local.array({shape}, {t})"  # noqa: E731
    else:
        alloc = lambda shape, t="_T": f"np.empty({shape}, {t})"  # noqa: E731
    shapes = {"x": "_D", "A": "(_D, _D1)", "JJ": "(_D, _D)", "F": "_D", "S": "_D", "Y": "_D", "H": "_D",
              "G": "_D", "PN": "_D"}
    allocs = [f"{name} = {alloc(shape)}" for name, shape in shapes.items()] + [f"counts = {alloc('3', 'np.int64')}"]
    scratch = ", ".join(_SCRATCH)
    pp = "(" + ", ".join(f"p[{j}, i]" for j in range(npar)) + ("," if npar == 1 else "") + ")"
    args = "u0, p, out, stats, status, rtol, atol, max_iter, radius0"
    lines = [
        "@_jit",
        f"def _solve_one(i, {args}, {scratch}):",
        "    counts[0] = 0",
        "    counts[1] = 0",
        "    counts[2] = 0",
        "    for k in range(_D):",
        "        x[k] = u0[k, i]",
        f"    pp = {pp}",
    ]
    if key.method == "trust-region":
        lines += ["    code = _trust_region(x, pp, rtol, atol, max_iter, radius0, A, JJ, F, S, Y, H, G, PN, counts)"]
    else:
        lines += ["    code = _newton(x, pp, rtol, atol, max_iter, A, F, S, Y, counts)"]
    lines += ["    for k in range(_D):", "        out[k, i] = x[k]",
              "    stats[0, i] = counts[0]", "    stats[1, i] = counts[1]", "    stats[2, i] = counts[2]",
              "    status[i] = code", ""]
    if key.target == "cuda":
        lines += ["@cuda.jit",
                  f"def solve_kernel({args}):",
                  "    i = cuda.grid(1)  # one thread per system, the whole iteration inside it",
                  "    if i < u0.shape[1]:"]
        lines += [f"        {a}" for a in allocs]
        lines += [f"        _solve_one(i, {args}, {scratch})"]
    else:
        lines += ["@_kernel",
                  f"def solve_serial({args}):",
                  "    n = u0.shape[1]",
                  f"    for b in prange((n + {CPU_BLOCK} - 1) // {CPU_BLOCK}):  # scratch once per block, not per system"]
        lines += [f"        {a}" for a in allocs]
        lines += [f"        for i in range(b * {CPU_BLOCK}, min(b * {CPU_BLOCK} + {CPU_BLOCK}, n)):",
                  f"            _solve_one(i, {args}, {scratch})"]
    return lines


def generate_source(key: NonlinearKernelKey) -> str:
    """The module source of ``key`` (readable: tests and reviewers look at it)."""
    prob = get_problem(key.problem)
    if not isinstance(prob, NonlinearProblem):
        raise ValueError(f"{key.problem} is not a nonlinear problem")
    np_t = "np.float32" if key.dtype == "float32" else "np.float64"
    tr = TRUST_REGION
    head = [
        f'"""Generated by solvers.fused.nonlinear for {key!r}; do not edit."""',
        "import math",
        "import numba",
        "import numpy as np",
        "m = math",
        f"_T = {np_t}",
        "_c = _T  # typed constants of the printed residual and Jacobian",
        f"_D = {prob.n_states}",
        "_D1 = _D + 1  # columns of the augmented matrix (a constant: CUDA local arrays need one)",
        "_ZERO, _HALF, _TWO, _FOUR = _T(0), _T(0.5), _T(2), _T(4)",
        f"_ETA, _RHO_LOW, _RHO_HIGH = _T({tr.eta!r}), _T({tr.rho_low!r}), _T({tr.rho_high!r})",
        f"_SHRINK, _EXPAND, _MAX_RADIUS = _T({tr.shrink!r}), _T({tr.expand!r}), _T({tr.max_radius!r})",
        "_REACH = _T(0.999)  # a step that reached the radius (it may then grow)",
        f"_SUCCESS, _NONFINITE, _FAILED, _NOT_CONVERGED = {int(Status.SUCCESS)}, {int(Status.NONFINITE)}, "
        f"{int(Status.FAILED)}, {int(Status.NOT_CONVERGED)}",
    ]
    if key.target == "cpu":
        # No FMA contraction anywhere (fastmath off): with contraction the float32 Newton failed
        # 1354 of the nonlinear suite's 131072 starts, without it 598, as many as a NumPy
        # Newton (measured, issue 28; compiling only the linear solve or only the residual
        # without contraction did not recover the 598, so the whole algorithm is left uncontracted).
        head += ["from numba import prange",
                 "_jit = numba.njit(error_model='numpy', cache=True)",
                 "_kernel = numba.njit(parallel=True, error_model='numpy', cache=True)",
                 "", "", "@_jit", "def _mul(a, b):", "    return a * b", ""]
    else:
        # NVVM contracts a*b + c into an FMA by default; its rounded-product intrinsic is never
        # contracted. Used in the linear solve; the residual, Jacobian, norms and the trust
        # region's dot products may still be contracted on a GPU.
        mul = "fmul_rn" if key.dtype == "float32" else "dmul_rn"
        head += ["from numba import cuda", "from numba.core.extending import register_jitable as _jit",
                 "from numba.cuda import libdevice",
                 "if numba.config.ENABLE_CUDASIM:  # the simulator's libdevice is stubs; Python has no FMA",
                 "    _mul = _jit(lambda a, b: a * b)",
                 "else:",
                 f"    _mul = libdevice.{mul}  # a rounded product"]
    body = ["", "", "# ---- residual and Jacobian: SymPy-printed from the problem's written-once residual ----"]
    body += _problem_source(prob)
    body += ["", "", "# ---- the algorithms (solvers.nonlinear_methods) ----", ALGORITHM.strip("\n"), "", ""]
    body += _driver_source(key, prob.n_params)
    return "\n".join(head + body) + "\n"


def module_path(key: NonlinearKernelKey) -> Path:
    """The generated module file of ``key`` in the fused cache directory (written if missing)."""
    # beside the ODE kernels (build.py)
    return write_source(writable_cache("fused") / f"{key.module_name()}.py", lambda: generate_source(key))


def load_module(key: NonlinearKernelKey) -> types.ModuleType:
    with _lock:
        mod = _modules.get(key)
        if mod is None:
            mod = _modules[key] = import_file(module_path(key))
    return mod


def kernel_args(x0: Any, p: Any, out: Any, stats: Any, status: Any, rtol: float, atol: float,
                max_iter: int, radius0: float, dtype: str) -> tuple:
    T = np.dtype(dtype).type
    return (x0, p, out, stats, status, T(rtol), T(atol), np.int64(max_iter), T(radius0))


def run_cpu(problem: str, method: str, x0: np.ndarray, p: np.ndarray, *, rtol: float, atol: float,
            max_iter: int = 50, radius0: float = 1.0):
    """Solve on the CPU (tests and tools): (roots (N, d), stats (3, N), status (N,))."""
    dtype = x0.dtype.name
    mod = load_module(NonlinearKernelKey(problem, method, dtype, "cpu"))
    xt, pt = np.ascontiguousarray(x0.T), np.ascontiguousarray(p.T)
    out = np.empty_like(xt)
    stats = np.zeros((3, xt.shape[1]), dtype=np.int32)
    status = np.zeros(xt.shape[1], dtype=np.int32)
    mod.solve_serial(*kernel_args(xt, pt, out, stats, status, rtol, atol, max_iter, radius0, dtype))
    return out.T.copy(), stats, status


class FusedNonlinearPrepared:
    """The nonlinear counterpart of FusedPrepared (lifecycle of solvers.base.Prepared)."""

    dispatch = "kernel"

    def __init__(self, spec: Any, threads_per_block: int) -> None:
        self.spec = spec
        x0, p = spec.prob.ensemble(spec.n, spec.dtype, spec.seed)
        rtol, atol = spec.tol
        self.target = "cuda" if spec.device == "gpu" else "cpu"
        self.key = NonlinearKernelKey(spec.problem, spec.method, spec.dtype, self.target)
        mod = load_module(self.key)
        xt, pt = np.ascontiguousarray(x0.T), np.ascontiguousarray(p.T)
        n = xt.shape[1]
        if self.target == "cpu":
            self._out = {"x": np.empty_like(xt), "stats": np.zeros((3, n), np.int32), "status": np.zeros(n, np.int32)}
            self._kernel = mod.solve_serial
            args_in = (xt, pt)
        else:
            from numba import cuda  # optional (numba-cuda); importing it sets up the CUDA target

            self._out = {"x": cuda.device_array(xt.shape, dtype=xt.dtype),
                         "stats": cuda.device_array((3, n), dtype=np.int32),
                         "status": cuda.device_array(n, dtype=np.int32)}
            args_in = (cuda.to_device(xt), cuda.to_device(pt))
            blocks = (n + threads_per_block - 1) // threads_per_block
            self._kernel = mod.solve_kernel[blocks, threads_per_block]
            cuda.synchronize()
        self._args = kernel_args(*args_in, self._out["x"], self._out["stats"], self._out["status"],
                                 rtol, atol, spec.max_steps, spec.step, spec.dtype)

    def run(self) -> Any:
        self._kernel(*self._args)
        return self._out

    def sync(self, out: Any) -> None:
        if self.target == "cuda":
            from numba import cuda  # optional (numba-cuda): GPU solves only

            cuda.synchronize()

    def fetch(self, out: Any):
        host = {k: (v if isinstance(v, np.ndarray) else v.copy_to_host()) for k, v in out.items()}
        stats = host["stats"].astype(np.int64)
        return SolveResult(u_final=np.ascontiguousarray(host["x"].T), status=host["status"].astype(np.int64),
                           accepted=stats[0], rejected=stats[1], rhs_evals=stats[2],
                           notes={"kernel": self.key.module_name(), "iterations": "per system"})

    def close(self) -> None:
        self._args = ()
        self._out = {}


# ---- the kind module interface (solvers.base.KindSupport.module, in Backend.kinds) -------------

def check(backend: Any, spec: Any) -> str | None:
    if spec.variant:
        return "the fused nonlinear kernel has one variant ('')"
    if spec.mode != "adaptive":
        return "nonlinear solves iterate to tolerance: mode must be 'adaptive'"
    return "nonlinear solves return the roots only (no saveat)" if spec.saveat is not None else None


def prepare(backend: Any, spec: Any) -> FusedNonlinearPrepared:
    return FusedNonlinearPrepared(spec, backend.threads_per_block)


def settings(backend: Any, spec: Any) -> dict[str, Any]:
    rtol, atol = spec.tol
    prob = spec.prob
    out = {
        "step_control": "per-system", "method": spec.method, "dtype": spec.dtype, "rtol": rtol, "atol": atol,
        "max_iterations": spec.max_steps, "starts": f"uniform in {list(prob.start_box)}^{prob.n_states}, seed {spec.seed}",
        "jacobian": "SymPy-derived from the residual (problems.derive.derivatives(problem))",
        "linear_solver": f"unrolled Gaussian elimination with partial pivoting, dense {prob.n_states}x{prob.n_states}",
        "kernel": ("one thread per system (CUDA)" if spec.device == "gpu"
                   else f"prange over blocks of {CPU_BLOCK} systems, one system at a time (no lane vectorisation)"),
        **method_settings(spec.method, spec.step),
    }
    if spec.device == "gpu":
        out["threads_per_block"] = backend.threads_per_block
    else:
        out["threads"] = numba.get_num_threads()
    return out
