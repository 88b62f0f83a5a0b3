"""The one source of truth for every Butcher / Rosenbrock tableau and step-controller constant.

Every backend of this project that hand-writes a stepper (the fused kernels, the hand-written
JAX / torch steppers, the array backend) takes its numbers from here; nothing else in the
project spells a tableau coefficient.  Everything is plain Python ``float`` / ``tuple`` (no numpy
at import time), held in frozen dataclasses, so a kernel generator can splice the values into
generated source as literals (``repr(float)`` round-trips exactly).

Where the numbers come from (the numbers were copied, not the code; snapshots read:
OrdinaryDiffEq.jl b211787f, DiffEqGPU.jl 1e5fe6e8, diffrax 1d4f9db7, torchdiffeq 03c6e63b):

* Tsit5: OrdinaryDiffEq.jl ``lib/OrdinaryDiffEqTsit5/src/tsit_tableaus.jl``
  (``Tsit5ConstantCacheActual`` for ``CompiledFloats`` and ``Tsit5Interp``), which is exactly
  what DiffEqGPU.jl's ``GPUTsit5`` uses (via SimpleDiffEq.jl ``_build_atsit5_caches``), cross-checked
  digit by digit against the 80-digit values in the same file and in diffrax
  ``diffrax/_solver/tsit5.py``.  Reference: Ch. Tsitouras, "Runge-Kutta pairs of order 5(4)
  satisfying only the first column simplifying assumption", Comput. Math. Appl. 62 (2011) 770-775.
* RK4 (classic) and RK4_38 (the 3/8 rule): torchdiffeq ``torchdiffeq/_impl/rk_common.py``
  (``rk4_step_func`` / ``rk4_alt_step_func``); torchdiffeq's ``method="rk4"`` is the 3/8 rule
  (``torchdiffeq/_impl/fixed_grid.py``: ``RK4._step_func`` calls ``rk4_alt_step_func``).
* DOPRI5: torchdiffeq ``torchdiffeq/_impl/dopri5.py`` ``_DORMAND_PRINCE_SHAMPINE_TABLEAU``.
  Reference: J. R. Dormand, P. J. Prince, J. Comput. Appl. Math. 6 (1980) 19-26.
* RODAS4: OrdinaryDiffEq.jl ``lib/OrdinaryDiffEqRosenbrockTableaus/src/rosenbrock_tableaus.jl``
  (``RODAS4A``, ``RODAS4C``, ``RODAS4c``, ``RODAS4d``, ``RODAS4H``) = DiffEqGPU.jl
  ``src/ensemblegpukernel/tableaus/rodas_tableaus.jl`` ``Rodas4Tableau``.  Reference: E. Hairer,
  G. Wanner, Solving ODEs II, 2nd ed., Springer 1996, Sec. IV.7 (Fortran RODAS, METH=1).
* RODAS5P: OrdinaryDiffEq.jl ``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_tableaus.jl``
  (``RODAS5PA``, ``RODAS5PC``, ``RODAS5Pc``, ``RODAS5Pd``, ``RODAS5PH``) = DiffEqGPU.jl
  ``Rodas5PTableau``.  Reference: G. Steinebach, "Construction of Rosenbrock-Wanner method
  Rodas5P and numerical benchmarks within the Julia Differential Equations package",
  BIT Numer. Math. 63 (2023) 27.
* Rosenbrock23: OrdinaryDiffEq.jl ``lib/OrdinaryDiffEqRosenbrock/src/rosenbrock_perform_step.jl``
  (``perform_step!`` for ``Rosenbrock23ConstantCache``) and DiffEqGPU.jl
  ``src/ensemblegpukernel/perform_step/gpu_rosenbrock23_perform_step.jl``.  Reference:
  L. F. Shampine, M. W. Reichelt, "The MATLAB ODE Suite", SIAM J. Sci. Comput. 18 (1997) 1-22.
* PI controller: DiffEqGPU.jl ``src/ensemblegpukernel/integrators/integrator_utils.jl``
  (``build_adaptive_controller_cache``) and the adaptive ``step!`` loops in
  ``src/ensemblegpukernel/perform_step/gpu_*_perform_step.jl``.

Conventions shared by everything below (read these before writing a stepper):

* Explicit RK, ``ExplicitRK``: ``k_i = f(t + c_i h, u + h sum_{j<i} a_ij k_j)``,
  ``u_new = u + h sum_i b_i k_i`` and, for embedded pairs,
  ``err = h sum_i btilde_i k_i`` with ``btilde = b - b_hat`` (solution minus embedded
  weights).  The sign of ``btilde`` is irrelevant to any norm; OrdinaryDiffEq/DiffEqGPU store the
  Tsit5 ``btilde`` with the opposite sign (``b_hat - b``), see ``TSIT5``.
* Rosenbrock (``Rosenbrock``): the stage increments ``k_i`` are *not* multiplied by ``h``
  afterwards (they already are increments of ``u``); see the class docstring.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = [
    "ExplicitRK", "Tsit5Dense", "Rosenbrock", "Rosenbrock23Constants", "PIController",
    "TSIT5", "TSIT5_DENSE", "RK4", "RK4_38", "DOPRI5", "RODAS4", "RODAS5P", "ROSENBROCK23",
    "DIFFEQGPU_PI", "EXPLICIT", "ROSENBROCK", "METHODS", "CONTROLLERS",
    "tsit5_dense_weights", "rosenbrock_dense_weights", "pi_step_factor", "scaled_rms_norm",
    "diffeqgpu_pi", "get_tableau", "get_controller", "weighted_sum", "rk_update", "Src", "srcs", "SNAP_ULPS",
    "SquaredPI", "SrcOps", "error_scales", "scaled_ssq", "pi_control_squared", "MATH_OPS",
]


def _tuple_rows(rows) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(x) for x in row) for row in rows)


def _check_lower(name: str, what: str, rows: tuple[tuple[float, ...], ...], s: int) -> None:
    if len(rows) != s:
        raise ValueError(f"{name}: {what} has {len(rows)} rows, expected {s}")
    for i, row in enumerate(rows):
        if len(row) != i:
            raise ValueError(f"{name}: {what} row {i} has {len(row)} entries, expected {i}")


# =================================================================================================
# The order of the sums (one definition for every implementation of this project)
# =================================================================================================

def weighted_sum(coeffs, vectors, const=None):
    """``c_1 v_1 + c_2 v_2 + ...`` summed left to right; None when every term is skipped.

    A numeric coefficient equal to 0 skips its term and one equal to 1 adds its vector as it
    is (both exact for finite values, so a tableau's zeros cost nothing); ``const(j, c)``, when
    given, is the operand that stands for numeric coefficient ``c`` of term ``j`` (a typed
    scalar, the name of a generated constant). A coefficient that is not a number (a runtime
    weight, a source expression) is used as it is. Operands need only ``+`` and ``*``, so the
    same function sums NumPy, JAX and torch arrays, Python scalars, and the source-text
    expressions (``solvers.fused.emit.Src``) the kernel generators print as Python or C++.
    """
    total = None
    for j, (c, v) in enumerate(zip(coeffs, vectors)):
        numeric = isinstance(c, numbers.Real)  # NumPy scalars register as Real; arrays do not
        if numeric and c == 0.0:
            continue
        if numeric and c == 1.0:
            term = v
        else:
            term = (const(j, c) if numeric and const is not None else c) * v
        total = term if total is None else total + term
    return total


def rk_update(base, h, coeffs, vectors, const=None):
    """DiffEqGPU's Runge-Kutta sum ``base + h * (c_1 v_1 + c_2 v_2 + ...)``.

    The stage arguments ``u + h*(sum_j a_ij k_j)``, the solution ``u + h*(sum_i b_i k_i)``, the
    error estimate ``h*(sum_i btilde_i k_i)`` (``base`` None) and Tsit5's interpolant
    ``u + h*(sum_i b_i(theta) k_i)`` are all this expression, as DiffEqGPU's
    ``gpu_tsit5_perform_step.jl`` and diffrax write them: the stage sum is formed first and
    scaled by ``h`` once. Why it matters: adding each ``h a_ij k_j`` to ``u`` in turn rounds at
    the magnitude of ``u`` once per term, which in float32 made Lorenz-96 2.5-6x less accurate
    (issue 28). Every implementation (fused kernels, the array replica, the hand-written
    JAX/torch solvers, the C++ arm) calls this function, so they agree bitwise in float64.
    ``base`` is returned unchanged when every coefficient is zero.
    """
    total = weighted_sum(coeffs, vectors, const)
    if total is None:
        return base
    step = h * total
    return step if base is None else base + step


class Src(str):
    """Source text of an expression that composes with ``+`` and ``*`` into source text.

    Every operation is parenthesised, so the printed expression evaluates in the order the
    operations were applied, in Python and in C++ alike. Why: the kernel generators (fused,
    C++) print the sums of :func:`rk_update` by calling it on ``Src`` operands, so generated
    code follows the one definition of that sum instead of a copy of it.
    """

    def __add__(self, other):
        return Src(f"({self} + {other})")

    def __radd__(self, other):
        return Src(f"({other} + {self})")

    def __mul__(self, other):
        return Src(f"({self} * {other})")

    def __rmul__(self, other):
        return Src(f"({other} * {self})")

    def __sub__(self, other):
        return Src(f"({self} - {other})")

    def __rsub__(self, other):
        return Src(f"({other} - {self})")

    def __truediv__(self, other):
        return Src(f"({self} / {other})")

    def __rtruediv__(self, other):
        return Src(f"({other} / {self})")


def srcs(items) -> list[Src]:
    """The names ``items`` as ``Src`` operands."""
    return [Src(x) for x in items]


# =================================================================================================
# Explicit Runge-Kutta
# =================================================================================================

@dataclass(frozen=True)
class ExplicitRK:
    """An explicit Runge-Kutta method (optionally an embedded pair).

    One step of size ``h`` from ``(t, u)``::

        k_1 = f(t, u)                                   (row 0 of ``a`` is empty, c_1 = 0)
        k_i = f(t + c_i h, u + h * sum_{j<i} a[i][j] * k_j)      i = 2..s
        u_new = u + h * sum_i b[i] * k_i
        err   = h * sum_i btilde[i] * k_i               (only when btilde is not None)

    ``btilde = b - b_hat`` where ``b_hat`` are the weights of the embedded solution of order
    ``embedded_order`` (so ``u_new - u_hat = err``).

    FSAL methods (``fsal=True``: TSIT5, DOPRI5) are stored with all ``s`` stages, the last
    stage being evaluated at the new solution: ``c[-1] == 1``, ``a[-1] == b[:-1]`` and
    ``b[-1] == 0``, so ``u_new`` is exactly the argument of the last stage and
    ``k_s = f(t + h, u_new)``.  ``k_s`` is needed only for the error estimate (``btilde[-1] != 0``)
    and is reused as ``k_1`` of the next (accepted) step; a fixed-step integrator may skip the
    last stage until the next step.  Stage count per accepted step is therefore ``s - 1`` new
    ``f`` evaluations.

    Attributes:
        name: lower-case method name (the registry key).
        order: classical order of ``b``.
        c: the ``s`` nodes ``c_i``.
        a: strictly lower-triangular rows, ``a[i]`` has exactly ``i`` entries.
        b: the ``s`` solution weights.
        btilde: error weights ``b - b_hat`` (``s`` entries), or None for a method with no
            embedded estimate.
        embedded_order: order of ``b_hat = b - btilde``, or None.
        fsal: first-same-as-last (see above).
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    btilde: tuple[float, ...] | None
    embedded_order: int | None
    fsal: bool

    def __post_init__(self) -> None:
        s = len(self.c)
        _check_lower(self.name, "a", self.a, s)
        if len(self.b) != s:
            raise ValueError(f"{self.name}: b has {len(self.b)} entries, expected {s}")
        if (self.btilde is None) != (self.embedded_order is None):
            raise ValueError(f"{self.name}: btilde and embedded_order must both be set or both None")
        if self.btilde is not None and len(self.btilde) != s:
            raise ValueError(f"{self.name}: btilde has {len(self.btilde)} entries, expected {s}")
        if self.fsal and (self.c[-1] != 1.0 or self.a[-1] != self.b[:-1] or self.b[-1] != 0.0):
            raise ValueError(f"{self.name}: an FSAL tableau needs c[-1] == 1, a[-1] == b[:-1], b[-1] == 0")

    @property
    def stages(self) -> int:
        """Number of stages ``s`` (FSAL methods count the stage at ``u_new``)."""
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        """True when the tableau carries an embedded error estimate."""
        return self.btilde is not None

    @property
    def b_hat(self) -> tuple[float, ...] | None:
        """The embedded weights ``b - btilde`` (None without an estimate)."""
        if self.btilde is None:
            return None
        return tuple(bi - ei for bi, ei in zip(self.b, self.btilde))


# ---- Tsit5 ----------------------------------------------------------------------------------
# Float64 literals exactly as OrdinaryDiffEq's Tsit5ConstantCacheActual(CompiledFloats) and
# SimpleDiffEq's _build_atsit5_caches (= DiffEqGPU GPUTsit5).  Each equals the correctly rounded
# 80-digit value of the same file (and of diffrax), except btilde1: see TSIT5's docstring.
_TS_C = (0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0)
_TS_A = (
    (),
    (0.161,),
    (-0.008480655492356989, 0.335480655492357),
    (2.8971530571054935, -6.359448489975075, 4.3622954328695815),
    (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
    (5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
     -0.028269050394068383),
    (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081,
     2.324710524099774),
)
# OrdinaryDiffEq btilde_i (= b_hat_i - b_i), negated here to follow this module's b - b_hat.
_TS_BTILDE_ODE = (-0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995,
                  -0.1447110071732629, 0.5823571654525552, -0.45808210592918697,
                  0.015151515151515152)

# TSIT5: Tsitouras 5(4), 7 stages, FSAL (Tsitouras 2011), as OrdinaryDiffEq.jl / DiffEqGPU.jl.
#
# Same float64 values as OrdinaryDiffEq's ``Tsit5ConstantCacheActual`` (CompiledFloats branch),
# SimpleDiffEq's ``_build_atsit5_caches`` (used by DiffEqGPU ``GPUTsit5``) and diffrax ``Tsit5``.
# ``btilde`` here is ``b - b_hat`` = minus OrdinaryDiffEq's ``btilde1..btilde7`` (bitwise: an exact
# negation), so ``|err|`` is identical.  ``btilde[0]`` keeps DiffEqGPU's literal
# ``0.00178001105222577714``, which is 26 ulp away from the correctly rounded high-precision value
# ``0.0017800110522257714...`` (a digit slip in the Julia literal; 6e-18 absolute, irrelevant to any
# error norm but kept for bit-parity with DiffEqGPU).  ``b_hat[6] = 1/66`` multiplies
# ``k_7 = f(t + h, u_new)``.
TSIT5 = ExplicitRK(
    name="tsit5",
    order=5,
    c=_TS_C,
    a=_TS_A,
    b=_TS_A[6] + (0.0,),
    btilde=tuple(-x for x in _TS_BTILDE_ODE),
    embedded_order=4,
    fsal=True,
)


@dataclass(frozen=True)
class Tsit5Dense:
    """Tsit5's continuous extension: ``b_i(theta) = sum_{m=1..4} r[i][m-1] * theta**m``.

    ``u(t0 + theta*h) = u0 + h * sum_{i=1..7} b_i(theta) * k_i`` for ``theta`` in [0, 1], with
    ``k_7 = f(t0 + h, u1)`` the FSAL stage.  ``b_i(0) = 0`` and ``b_i(1) = b_i`` (to rounding).
    Coefficients of the expanded polynomials exactly as OrdinaryDiffEq's ``Tsit5Interp``
    (CompiledFloats branch: ``r11..r74``; ``r21 = r31 = ... = r71 = 0``), the same polynomials as
    diffrax's factored ``_Tsit5Interpolation``.  OrdinaryDiffEq evaluates them as
    ``b1 = theta*evalpoly(theta, r11, r12, r13, r14)`` and
    ``b_i = theta^2*evalpoly(theta, r_i2, r_i3, r_i4)`` (i >= 2).
    """

    r: tuple[tuple[float, ...], ...]


TSIT5_DENSE = Tsit5Dense(r=(
    (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
    (0.0, 0.13169999999999998, -0.2234, 0.1017),
    (0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253),
    (0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902),
    (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
    (0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661),
    (0.0, 1.5, -4.0, 2.5),
))


def tsit5_dense_weights(theta: float) -> tuple[float, ...]:
    """The 7 weights ``b_i(theta)`` of Tsit5's interpolant (see ``Tsit5Dense``)."""
    th = float(theta)
    out = []
    for r1, r2, r3, r4 in TSIT5_DENSE.r:
        out.append(th * (r1 + th * (r2 + th * (r3 + th * r4))))
    return tuple(out)


# ---- RK4 (classic) and the 3/8 rule -----------------------------------------------------------
# RK4: Classic Runge-Kutta 4 (Kutta 1901): b = (1/6, 1/3, 1/3, 1/6).
#
# torchdiffeq has it as ``rk_common.rk4_step_func`` but does *not* use it for ``method="rk4"``
# (that is ``RK4_38``).  Fixed step only.
RK4 = ExplicitRK(
    name="rk4",
    order=4,
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    btilde=None,
    embedded_order=None,
    fsal=False,
)

# RK4_38: Kutta's 3/8 rule: b = (1/8, 3/8, 3/8, 1/8).  This is torchdiffeq's ``method="rk4"``.
#
# torchdiffeq ``_impl/fixed_grid.py``: ``RK4._step_func`` calls ``rk_common.rk4_alt_step_func``::
#
#     k2 = f(t + h/3,  y + h*k1/3)
#     k3 = f(t + 2h/3, y + h*(k2 - k1/3))
#     k4 = f(t + h,    y + h*(k1 - k2 + k3))
#     y1 = y + h*(k1 + 3*(k2 + k3) + k4)/8
#
# torchdiffeq computes ``1/3`` and ``2/3`` once in float64 (``_one_third``, ``_two_thirds``) as this
# tableau does.  Fixed step only.
RK4_38 = ExplicitRK(
    name="rk4_38",
    order=4,
    c=(0.0, 1 / 3, 2 / 3, 1.0),
    a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
    b=(0.125, 0.375, 0.375, 0.125),
    btilde=None,
    embedded_order=None,
    fsal=False,
)

# ---- Dormand-Prince 5(4) ----------------------------------------------------------------------
# Same Python float expressions as torchdiffeq's _DORMAND_PRINCE_SHAMPINE_TABLEAU, so the float64
# values are bit-identical to torchdiffeq's (``c_error`` there is b - b_hat, as here).
# DOPRI5: Dormand-Prince 5(4), 7 stages, FSAL, as torchdiffeq's ``method="dopri5"``.
#
# torchdiffeq ``_impl/dopri5.py`` ``_DORMAND_PRINCE_SHAMPINE_TABLEAU``: ``alpha`` = c[1:],
# ``beta`` = a[1:], ``c_sol`` = b, ``c_error`` = btilde = b - b_hat.  Note torchdiffeq's embedded
# weights are Shampine's alternative 4th-order set b_hat = (1951/21600, 0, 22642/50085, 451/720,
# -12231/42400, 649/6300, 1/60), not the 5179/57600, 0, 7571/16695, 393/640, -92097/339200,
# 187/2100, 1/40 of Dormand & Prince (1980); both are order 4 (tested), but the error estimates
# differ, so a backend that must match torchdiffeq's step sequence has to use these.
DOPRI5 = ExplicitRK(
    name="dopri5",
    order=5,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    btilde=(
        35 / 384 - 1951 / 21600,
        0.0,
        500 / 1113 - 22642 / 50085,
        125 / 192 - 451 / 720,
        -2187 / 6784 - -12231 / 42400,
        11 / 84 - 649 / 6300,
        -1.0 / 60.0,
    ),
    embedded_order=4,
    fsal=True,
)


# =================================================================================================
# Rosenbrock (Rodas family)
# =================================================================================================

@dataclass(frozen=True)
class Rosenbrock:
    """A Rosenbrock method in Hairer-Wanner's transformed form, as OrdinaryDiffEq/DiffEqGPU use it.

    One step of size ``h`` from ``(t, u)`` for ``u' = f(u, t)``.  Let ``J = df/du(u, t)`` and
    ``T = df/dt(u, t)`` (both at the *start* of the step, exact: these are Rosenbrock methods,
    not W-methods, so the order needs the exact Jacobian) and the iteration matrix::

        W = (1/(h*gamma)) * I - J            (one LU per step, shared by all stages)

    Then for ``i = 1..s`` (row ``i-1`` of ``a``/``C`` has ``i-1`` entries; ``c[0] = 0``)::

        U_i = u + sum_{j<i} a[i][j] * k_j                    (U_1 = u)
        F_i = f(U_i, t + c[i] * h)
        W k_i = F_i + h * d[i] * T + sum_{j<i} (C[i][j] / h) * k_j

        u_new = u + sum_i b[i] * k_i
        err   = sum_i btilde[i] * k_i                         (no factor h: k_i are increments)

    With ``W' = I - h*gamma*J`` the same stage equation reads
    ``W' k_i = h*gamma * (F_i + h d_i T + sum_j C_ij k_j / h)``.  OrdinaryDiffEq stores
    ``W_ode = J - I/(h*gamma)`` and solves ``k_i = W_ode \\ -(rhs)``, which is identical.

    For RODAS4 and RODAS5P (stiffly accurate) ``b = (a[s-1][0], ..., a[s-1][s-2], 1)`` and
    ``btilde = (0, ..., 0, 1)``: the new solution is the last stage argument plus the last
    increment, ``u_new = U_s + k_s``, the embedded solution is ``U_s`` and ``err = k_s``
    (OrdinaryDiffEq ``Rodas4Tableau``/``Rodas5PTableau``; DiffEqGPU's kernels write
    ``u = U_s + k_s`` and ``EEst = norm(k_s / (abstol + max(|uprev|, |u|) * reltol))``).
    OrdinaryDiffEq skips the ``f`` call of a stage whose ``c`` and row of ``a`` repeat the previous
    stage's; no stage of RODAS4/RODAS5P qualifies, so a step costs ``s`` calls of ``f``, one
    Jacobian, one ``T`` and one LU.  DiffEqGPU evaluates ``J`` and ``T`` at ``(uprev, t)`` once,
    before its accept/reject loop (a rejected step rebuilds only ``W`` for the new ``h``).

    Dense output (``H`` has ``n_dense`` rows of ``s`` entries): with ``K_m = sum_i H[m][i] k_i``,
    ``theta`` in [0, 1] and ``theta1 = 1 - theta``::

        n_dense == 2:  u(t + theta h) = theta1*u + theta*(u_new + theta1*(K_1 + theta*K_2))
        n_dense == 3:  u(t + theta h) = theta1*u + theta*(u_new + theta1*(K_1 + theta*(K_2 + theta*K_3)))

    (OrdinaryDiffEq ``rosenbrock_interpolants.jl``, DiffEqGPU ``integrators/stiff/interpolants.jl``);
    ``rosenbrock_dense_weights`` gives the same thing as weights on the ``k_i``.

    Attributes:
        name: registry key.
        order / embedded_order: classical orders of ``b`` and of ``b - btilde``.
        stages: ``s``.
        gamma: the diagonal ``gamma``.
        a, C: strictly lower-triangular rows (row ``i`` has ``i`` entries, row 0 empty).
        c: stage time nodes (``s``).
        d: time-derivative coefficients ``gamma_i = sum_j gamma_ij`` (``s``; zero for the
            stages at ``c = 1`` of the stiffly accurate methods).
        b, btilde: solution and error weights on the ``k_i`` (``s`` each).
        H: dense-output rows (see above).
        dense_order: order of the dense output.
    """

    name: str
    order: int
    embedded_order: int
    stages: int
    gamma: float
    a: tuple[tuple[float, ...], ...]
    C: tuple[tuple[float, ...], ...]
    c: tuple[float, ...]
    d: tuple[float, ...]
    b: tuple[float, ...]
    btilde: tuple[float, ...]
    H: tuple[tuple[float, ...], ...]
    dense_order: int

    def __post_init__(self) -> None:
        s = self.stages
        _check_lower(self.name, "a", self.a, s)
        _check_lower(self.name, "C", self.C, s)
        for what in ("c", "d", "b", "btilde"):
            if len(getattr(self, what)) != s:
                raise ValueError(f"{self.name}: {what} must have {s} entries")
        if not self.H or any(len(row) != s for row in self.H):
            raise ValueError(f"{self.name}: every row of H must have {s} entries")

    @property
    def b_hat(self) -> tuple[float, ...]:
        """Embedded weights ``b - btilde``."""
        return tuple(bi - ei for bi, ei in zip(self.b, self.btilde))


def _stiffly_accurate(name, order, embedded_order, gamma, A, C, c, d, H, dense_order) -> Rosenbrock:
    """Build a Rodas-type tableau from OrdinaryDiffEq-style full lower-triangular rows.

    ``A``/``C`` are given as lists of the ``s`` rows' strictly-lower parts; ``b`` = last row of
    ``A`` plus a trailing 1, ``btilde`` = e_s (OrdinaryDiffEq ``Rodas4Tableau``).
    """
    s = len(c)
    a = _tuple_rows(A)
    b = a[s - 1] + (1.0,)
    return Rosenbrock(
        name=name, order=order, embedded_order=embedded_order, stages=s, gamma=float(gamma),
        a=a, C=_tuple_rows(C), c=tuple(float(x) for x in c), d=tuple(float(x) for x in d),
        b=b, btilde=(0.0,) * (s - 1) + (1.0,), H=_tuple_rows(H), dense_order=dense_order,
    )


# RODAS4: RODAS4 (Hairer-Wanner), order 4(3), 6 stages, L-stable, stiffly accurate.
#
# OrdinaryDiffEq ``Rodas4Tableau`` / DiffEqGPU ``Rodas4Tableau`` (all a, C, c, H identical; d4 see
# source comment).  ``u_new = U_6 + k_6``, ``err = k_6``.  Dense output: 2 rows of H, order 3.
RODAS4 = _stiffly_accurate(
    "rodas4", 4, 3, 0.25,
    A=[
        [],
        [1.544],
        [0.9466785280815826, 0.2557011698983284],
        [3.314825187068521, 2.896124015972201, 0.9986419139977817],
        [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895],
        [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0],
    ],
    C=[
        [],
        [-5.6688],
        [-2.430093356833875, -0.2063599157091915],
        [-0.1073529058151375, -9.594562251023355, -20.47028614809616],
        [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616],
        [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
         -6.058818238834054],
    ],
    c=[0.0, 0.386, 0.21, 0.63, 1.0, 1.0],
    # d4: Hairer's RODAS (METH=1) and DiffEqGPU's Rodas4Tableau have -0.3620000000000023D-01;
    # OrdinaryDiffEq's RODAS4d rounds it to -0.0362.  The long form is the row sum of Gamma
    # recovered from C to ~1e-16 (tested), so it is kept; the difference is 2.3e-16.
    d=[0.25, -0.1043, 0.1035, -0.03620000000000023, 0.0, 0.0],
    H=[
        [10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
         1.025137723295662, 0.0],
        [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
         -6.594389125716872, 0.0],
    ],
    dense_order=3,
)

# RODAS5P: Rodas5P (Steinebach 2023), order 5(4), 8 stages, L-stable, stiffly accurate.
#
# OrdinaryDiffEq ``Rodas5PTableau`` / DiffEqGPU ``Rodas5PTableau`` (identical numbers).
# ``u_new = U_8 + k_8``, ``err = k_8``.  Dense output: 3 rows of H, order 4.
RODAS5P = _stiffly_accurate(
    "rodas5p", 5, 4, 0.21193756319429014,
    A=[
        [],
        [3.0],
        [2.849394379747939, 0.45842242204463923],
        [-6.954028509809101, 2.489845061869568, -10.358996098473584],
        [2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641],
        [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
         0.030198172008377946],
        [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
         0.030198172008377946, 1.0],
        [-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
         0.030198172008377946, 1.0, 1.0],
    ],
    C=[
        [],
        [-14.155112264123755],
        [-17.97296035885952, -2.859693295451294],
        [147.12150275711716, -1.41221402718213, 71.68940251302358],
        [165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306],
        [24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125,
         -0.6610691825249471],
        [30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783,
         -19.097331116725623, -28.087943162872662],
        [37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047,
         -40.06618937091002, -54.66780262877968, -9.48861652309627],
    ],
    c=[0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716, 0.4288403609558664,
       1.0, 1.0, 1.0],
    d=[0.21193756319429014, -0.42387512638858027, -0.3384627126235924, 1.8046452872882734,
       2.325825639765069, 0.0, 0.0, 0.0],
    H=[
        [25.948786856663858, -2.5579724845846235, 10.433815404888879, -2.3679251022685204,
         0.524948541321073, 1.1241088310450404, 0.4272876194431874, -0.17202221070155493],
        [-9.91568850695171, -0.9689944594115154, 3.0438037242978453, -24.495224566215796,
         20.176138334709044, 15.98066361424651, -6.789040303419874, -6.710236069923372],
        [11.419903575922262, 2.8879645146136994, 72.92137995996029, 80.12511834622643,
         -52.072871366152654, -59.78993625266729, -0.15582684282751913, 4.883087185713722],
    ],
    dense_order=4,
)


def rosenbrock_dense_weights(tab: Rosenbrock, theta: float) -> tuple[float, ...]:
    """Weights ``w_i(theta)`` with ``u(t + theta h) = u + sum_i w_i(theta) k_i``.

    Algebraically identical to the Horner form in ``Rosenbrock``'s docstring (uses
    ``u_new - u = sum_i b_i k_i``): ``w_i = theta*b_i + theta*(1-theta)*(H_1i + theta*H_2i
    [+ theta^2*H_3i])``.
    """
    th = float(theta)
    th1 = 1.0 - th
    out = []
    for i in range(tab.stages):
        acc = 0.0
        for row in reversed(tab.H):
            acc = row[i] + th * acc
        out.append(th * tab.b[i] + th * th1 * acc)
    return tuple(out)


@dataclass(frozen=True)
class Rosenbrock23Constants:
    """Shampine-Reichelt's modified Rosenbrock triple (MATLAB ode23s; OrdinaryDiffEq/DiffEqGPU
    ``Rosenbrock23``): ``d = 1/(2 + sqrt(2))``, ``e32 = 6 + sqrt(2)``.

    One step of size ``h`` from ``(t, u)``, ``J = df/du(u, t)``, ``T = df/dt(u, t)``::

        W  = I - h*d*J
        f0 = f(u, t)
        k1 = W^-1 (f0 + h*d*T)
        f1 = f(u + (h/2)*k1, t + h/2)
        k2 = W^-1 (f1 - k1) + k1
        u_new = u + h*k2                                     (order 2; this is the solution)
        f2 = f(u_new, t + h)                                 (FSAL: next step's f0)
        k3 = W^-1 (f2 - e32*(k2 - f1) - 2*(k1 - f0) + k3_T_coeff*h*T)
        err = (h/6) * (k1 - 2*k2 + k3)

    ``k3_T_coeff`` (field, default 1.0): OrdinaryDiffEq's ``perform_step!`` (both the in-place
    ``Rosenbrock23Cache`` and out-of-place ``Rosenbrock23ConstantCache`` branches) and DiffEqGPU's
    ``gpu_rosenbrock23_perform_step.jl`` put ``+ dt*dT`` into the ``k3`` right-hand side, i.e.
    ``h*T`` without the factor ``d``; Shampine-Reichelt / MATLAB ode23s (and ODE.jl's port) use
    ``h*d*T`` there, the same term as in ``k1``.  The default reproduces DiffEqGPU (whose step
    sequence this project compares against); ``k3_T_coeff = d`` gives the paper's form.  Only the
    error estimate depends on it, and only for non-autonomous problems (``T != 0``), but there it
    matters: with the paper's form ``err`` is O(h^3) per step (it is the difference to the
    3rd-order ``u + h/6*(k1 + 4 k2 + k3)``), with DiffEqGPU's form ``err`` carries an extra
    ``(1 - d)/6 * h^2 * T + O(h^3)`` and is only O(h^2) (both verified in the tests), which makes
    DiffEqGPU's Rosenbrock23 over-estimate the error, i.e. take smaller steps, on problems with
    explicit time dependence.  ``order`` is the order of ``u_new``, ``error_order`` the per-step
    order of ``err`` in the autonomous case.  DiffEqGPU's controller uses
    ``alg_order(GPURosenbrock23) = 2``.
    Derivative at the new point: OrdinaryDiffEq computes ``f2`` only when adaptive.
    """

    d: float = 1.0 / (2.0 + math.sqrt(2.0))
    e32: float = 6.0 + math.sqrt(2.0)
    k3_T_coeff: float = 1.0
    order: int = 2
    error_order: int = 3
    name: str = "rosenbrock23"


ROSENBROCK23 = Rosenbrock23Constants()


# =================================================================================================
# Step-size controller
# =================================================================================================

@dataclass(frozen=True)
class PIController:
    """DiffEqGPU.jl's per-trajectory PI step controller (``EnsembleGPUKernel`` adaptive loops).

    Constants (``build_adaptive_controller_cache(alg, T)``; all converted to the state dtype):
    ``beta1 = 7/(10*p)``, ``beta2 = 2/(5*p)`` with ``p = alg_order(alg)`` (the defaults here are
    Tsit5's ``p = 5``: 7/50, 2/25; use ``diffeqgpu_pi(p)`` for other methods: Rosenbrock23 p=2,
    Rodas4 p=4, Rodas5P p=5), ``qmax = 10``, ``qmin = 1/5``, ``gamma = 9/10`` (safety),
    ``qoldinit = 1e-4``, ``qold`` starts at ``qoldinit``.  No ``qsteady_min/max`` (DiffEqGPU's
    kernels have none) and no dtmax; a step with ``dt < 1e-14`` raises "dt<dtmin".

    The loop (identical in ``gpu_tsit5_perform_step.jl``, ``gpu_rodas4/5P``,
    ``gpu_rosenbrock23``, ...), repeated until a step is accepted::

        tmp  = err ./ (abstol .+ max.(abs.(uprev), abs.(u)) .* reltol)   # u = candidate u_new
        EEst = sqrt(sum(tmp.^2) / length(tmp))                          # ODE_DEFAULT_NORM: RMS
        if EEst == 0:  q = 1/qmax
        else:          q11 = EEst^beta1;  q = q11 / qold^beta2
        if EEst > 1:                                   # reject; qold unchanged
            dt = dt / min(1/qmin, q11/gamma)           # factor max(qmin, gamma/EEst^beta1),
                                                       # always < gamma; qold plays no part
        else:                                          # accept (also NaN: `while EEst > 1` ends)
            q    = max(1/qmax, min(1/qmin, q/gamma))
            qold = max(EEst, qoldinit)
            dtnew = dt / q
            dtnew = min(|dtnew|, |tf - t - dt|)        # never step past tf
            t += dt

    Notes: with ``EEst == 0``, ``q = (1/qmax)/gamma`` after the clamp, i.e. the step grows by
    ``qmax*gamma = 9`` (not 10).  Julia's ``min``/``max`` propagate NaN, so a NaN ``EEst``
    is *accepted* with a NaN ``dtnew`` and ``qold``; a backend may prefer to flag it (see
    ``solvers.base.Status.NONFINITE``), but ``pi_step_factor`` reproduces DiffEqGPU.
    """

    beta1: float = 7 / 50
    beta2: float = 2 / 25
    qmin: float = 1 / 5
    qmax: float = 10.0
    gamma: float = 9 / 10
    qold_init: float = 1e-4
    dtmin: float = 1e-14

    @classmethod
    def for_order(cls, order: int) -> "PIController":
        """DiffEqGPU's constants for a method of order ``order`` (only beta1/beta2 change)."""
        return cls(beta1=7 / (10 * order), beta2=2 / (5 * order))


DIFFEQGPU_PI = PIController()


#: Landing on a save or stop time: a step that would end within ``SNAP_ULPS`` ulps (of the time's
#: magnitude) short of it lands on it instead, and the step after a clipped landing step starts
#: from the step the controller had proposed, not from the clipped one (``next_step``). Why: a
#: step one rounding short left a rest of ~1e-18 for a step of its own, whose controller then
#: proposed a step below dtmin (DT_UNDERFLOW, issue 28). DiffEqGPU snaps within 100 eps (save
#: times) or 1e-14 (the end), absolute; a relative window serves every time scale alike.
SNAP_ULPS = 8


def diffeqgpu_pi(order: int) -> PIController:
    """DiffEqGPU's controller for a method of ``alg_order`` ``order``."""
    return PIController.for_order(order)


def _jmin(x: float, y: float) -> float:
    # Julia's min: NaN-propagating.
    if x != x or y != y:
        return math.nan
    return x if x < y else y


def _jmax(x: float, y: float) -> float:
    if x != x or y != y:
        return math.nan
    return x if x > y else y


def pi_step_factor(eest: float, qold: float, ctrl: PIController = DIFFEQGPU_PI
                   ) -> tuple[float, float, bool]:
    """One controller decision, exactly as DiffEqGPU's kernels: ``(dt_new/dt, qold_new, accept)``.

    ``eest`` is the scaled RMS error norm (see ``scaled_rms_norm``), ``qold`` the controller
    memory (``ctrl.qold_init`` before the first step).  On reject ``qold_new == qold``.  The
    ``min(dtnew, tf - t - dt)`` clamp and the ``dtmin`` check are the caller's.
    """
    eest = float(eest)
    if eest == 0.0:
        q = 1.0 / ctrl.qmax
        q11 = math.nan  # unused: EEst == 0 is always accepted
    else:
        q11 = eest ** ctrl.beta1 if eest == eest else math.nan
        q = q11 / qold ** ctrl.beta2
    if eest > 1.0:
        return 1.0 / _jmin(1.0 / ctrl.qmin, q11 / ctrl.gamma), qold, False
    q = _jmax(1.0 / ctrl.qmax, _jmin(1.0 / ctrl.qmin, q / ctrl.gamma))
    qold_new = _jmax(eest, ctrl.qold_init)
    return 1.0 / q, qold_new, True


def scaled_rms_norm(err, u_prev, u_new, abstol: float, reltol: float) -> float:
    """DiffEqGPU's ``EEst``: RMS over components of ``err_i / (abstol + max(|u_prev_i|, |u_new_i|)*reltol)``.

    Plain sequences of floats (scalar ``abstol``/``reltol``); the executable spec of the norm.
    """
    terms = [e / (abstol + max(abs(a), abs(b)) * reltol) for e, a, b in zip(err, u_prev, u_new)]
    n = max(len(terms), 1)
    return math.sqrt(sum(x * x for x in terms) / n)


# =================================================================================================
# The error norm and the controller as our implementations compute them (issue 29)
# =================================================================================================
# ``scaled_rms_norm`` and ``pi_step_factor`` above are DiffEqGPU's formulas, term by term. Every
# implementation of this project (fused CPU/CUDA kernels, the array replica, the hand-written
# JAX/torch solvers, the C++ arm) computes the same law with fewer slow operations, written once
# here: no square root (the squared norm, compared with n), no division by the number of states,
# and one log and one exp per attempt, both powers taken from the log of the squared norm. The rounding differs from
# DiffEqGPU's (issue 29 allows it; a test keeps the accepted step counts within +-1 of the
# kernel before the change), the algorithm does not: same tableau, PI constants, accept rule.

def error_scales(y, yn, atol, rtol, ops):
    """DiffEqGPU's per-component scales ``atol + max(|y_i|, |yn_i|) * rtol``."""
    return [atol + ops.maximum(ops.abs(a), ops.abs(b)) * rtol for a, b in zip(y, yn)]


def scaled_ssq(err, sc, one=None):
    """``sum_i (err_i / sc_i)^2``, summed in component order: ``n`` times DiffEqGPU's
    ``EEst^2`` (no square root, no division by ``n``).

    One division per component, as DiffEqGPU: pairing them (``inv = 1/(sc_i sc_j)``, one
    division per two components) was tried and dropped, because the product of two scales
    leaves the float32 range at tolerances such as 1e-30 (it underflowed to 0 and turned an
    ordinary rejection into a NaN). ``one`` is unused (kept for callers that pass the typed 1).
    Operands need ``+ * /`` only."""
    total = None
    for e, s in zip(err, sc):
        r = e / s
        total = r * r if total is None else total + r * r
    return total


@dataclass(frozen=True)
class SquaredPI:
    """DiffEqGPU's PI law (``pi_step_factor``) for ``n`` states, on ``ssq = n * EEst^2``.

    With ``L = log(ssq)``: ``log EEst = (L - log n) / 2``. The controller memory is carried as
    ``lm = log(max(ssq, n * qold_init^2))`` (``= log(n qold^2)``), so that
    ``log(gamma / q)`` of an accepted step is ``k_accept - half_beta1*L + half_beta2*lm`` and
    ``log(gamma / q11)`` of a rejected one ``k_reject - half_beta1*L``; one exp gives either.
    ``ssq`` is clamped into ``[ssq_lo, ssq_hi]`` before the log (the factor's clamps decide
    alone outside it: ``controller_domain`` squared). Accept: ``ssq <= n`` (``EEst <= 1``).
    """

    n: int
    half_beta1: float
    half_beta2: float
    k_accept: float
    k_reject: float
    lm_init: float
    fac_zero: float
    ssq_lo: float
    ssq_hi: float
    qmin: float
    qmax: float

    @classmethod
    def of(cls, ctrl: PIController, n: int) -> "SquaredPI":
        ln = math.log(n)
        lo = 0.5 * (ctrl.gamma / ctrl.qmax * ctrl.qold_init ** ctrl.beta2) ** (1.0 / ctrl.beta1)
        hi = 2.0 * (ctrl.gamma / ctrl.qmin) ** (1.0 / ctrl.beta1)
        if not lo < ctrl.qold_init < 1.0 < hi:
            raise ValueError(f"controller constants out of the supported range: {ctrl}")
        # pi_step_factor at EEst == 0: q = 1/qmax before the clamp.
        f0 = 1.0 / max(1.0 / ctrl.qmax, min(1.0 / ctrl.qmin, (1.0 / ctrl.qmax) / ctrl.gamma))
        return cls(n=n, half_beta1=ctrl.beta1 / 2, half_beta2=ctrl.beta2 / 2,
                   k_accept=math.log(ctrl.gamma) + (ctrl.beta1 - ctrl.beta2) / 2 * ln,
                   k_reject=math.log(ctrl.gamma) + ctrl.beta1 / 2 * ln,
                   lm_init=ln + 2 * math.log(ctrl.qold_init), fac_zero=f0,
                   ssq_lo=n * lo * lo, ssq_hi=n * hi * hi, qmin=ctrl.qmin, qmax=ctrl.qmax)

    def constants(self) -> dict[str, float]:
        """The names ``pi_control_squared`` reads, with their values (NSTATES: ``n``)."""
        return {"NSTATES": float(self.n), "ZERO": 0.0, "HALF_BETA1": self.half_beta1,
                "HALF_BETA2": self.half_beta2, "K_ACCEPT": self.k_accept, "K_REJECT": self.k_reject,
                "LM_INIT": self.lm_init, "FAC_ZERO": self.fac_zero, "SSQ_LO": self.ssq_lo,
                "SSQ_HI": self.ssq_hi, "QMIN": self.qmin, "QMAX": self.qmax}


def pi_control_squared(ssq, lm, h, c, ops):
    """One controller decision: ``(dt if accepted, dt if rejected, lm if accepted)``.

    ``c`` maps the names of ``SquaredPI.constants`` to operands (typed scalars, or the names of
    generated constants); ``ops`` supplies ``minimum maximum where le eq log exp`` (NumPy, JAX,
    torch, math, or source text: ``solvers.fused.emit``, ``solvers.cpp.source``). Accepted when
    ``le(ssq, c["NSTATES"])``; the caller applies the accept rule itself with the same test.
    """
    L = ops.log(ops.minimum(ops.maximum(ssq, c["SSQ_LO"]), c["SSQ_HI"]))
    z = ops.where(ops.le(ssq, c["NSTATES"]), c["K_ACCEPT"] + c["HALF_BETA2"] * lm, c["K_REJECT"])
    g = ops.exp(z - c["HALF_BETA1"] * L)
    fa = ops.where(ops.eq(ssq, c["ZERO"]), c["FAC_ZERO"], ops.minimum(c["QMAX"], ops.maximum(c["QMIN"], g)))
    fr = ops.maximum(c["QMIN"], g)
    return h * fa, h * fr, ops.maximum(L, c["LM_INIT"])


class SrcOps:
    """``ops`` printing source text (``Src``) for a kernel generator: ``minimum`` etc. are the
    names of the target's functions (``where=None``: C's ``c ? a : b``). With ``lines`` given,
    ``log`` and ``exp`` bind their results to fresh names (``_lg0 = _log(x)``) appended there,
    so that each is computed once however often its result is used."""

    def __init__(self, minimum: str, maximum: str, abs: str, log: str, exp: str,
                 where: str | None = None, lines: list[str] | None = None, assign: str = "{} = {}") -> None:
        self._f = {"minimum": minimum, "maximum": maximum, "abs": abs, "log": log, "exp": exp}
        self._where, self.lines, self._assign = where, lines, assign

    def _call(self, f: str, *args) -> Src:
        return Src(f"{self._f[f]}({', '.join(str(a) for a in args)})")

    def _bound(self, f: str, x) -> Src:
        e = self._call(f, x)
        if self.lines is None:
            return e
        name = f"_{f[:2]}{len(self.lines)}"
        self.lines.append(self._assign.format(name, e))
        return Src(name)

    def minimum(self, a, b):
        return self._call("minimum", a, b)

    def maximum(self, a, b):
        return self._call("maximum", a, b)

    def abs(self, a):
        return self._call("abs", a)

    def log(self, x):
        return self._bound("log", x)

    def exp(self, x):
        return self._bound("exp", x)

    def where(self, c, a, b):
        return Src(f"({c} ? {a} : {b})") if self._where is None else Src(f"{self._where}({c}, {a}, {b})")

    def le(self, a, b):
        return Src(f"({a} <= {b})")

    def eq(self, a, b):
        return Src(f"({a} == {b})")


class _MathOps:
    """``ops`` for Python floats (the scalar executable specification)."""

    minimum = staticmethod(_jmin)
    maximum = staticmethod(_jmax)
    abs = staticmethod(abs)
    log = staticmethod(math.log)
    exp = staticmethod(math.exp)

    @staticmethod
    def where(c, a, b):
        return a if c else b

    @staticmethod
    def le(a, b):
        return a <= b

    @staticmethod
    def eq(a, b):
        return a == b


MATH_OPS = _MathOps()


# =================================================================================================
# Registries
# =================================================================================================

EXPLICIT: dict[str, ExplicitRK] = {"tsit5": TSIT5, "rk4": RK4, "rk4_38": RK4_38, "dopri5": DOPRI5}
ROSENBROCK: dict[str, Rosenbrock] = {"rodas4": RODAS4, "rodas5p": RODAS5P}
#: every method this module defines, by the name ``SolveSpec.method`` uses.
METHODS: dict[str, ExplicitRK | Rosenbrock | Rosenbrock23Constants] = {
    **EXPLICIT, **ROSENBROCK, "rosenbrock23": ROSENBROCK23,
}
#: named controller presets (``SolveSpec.controller``); see ``get_controller``.
CONTROLLERS: dict[str, PIController] = {"diffeqgpu": DIFFEQGPU_PI}


def get_tableau(name: str) -> ExplicitRK | Rosenbrock | Rosenbrock23Constants:
    """The tableau called ``name`` (see ``METHODS``); unknown names raise ValueError listing them."""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(METHODS)}") from None


def get_controller(name: str, order: int | None = None) -> PIController:
    """Controller preset ``name``; for "diffeqgpu" with ``order`` given, DiffEqGPU's order-scaled
    betas (``diffeqgpu_pi(order)``).  Unknown names raise ValueError listing the presets."""
    if name not in CONTROLLERS:
        raise ValueError(f"unknown controller {name!r}: choose one of {', '.join(CONTROLLERS)}")
    if name == "diffeqgpu" and order is not None:
        return diffeqgpu_pi(order)
    return CONTROLLERS[name]
