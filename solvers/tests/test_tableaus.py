"""Tests for solvers.tableaus: structure, order conditions, and convergence of steppers written
here from the module's documented stage equations (so the docstrings and the numbers are checked
against each other, not just against themselves)."""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
import pytest

from solvers import tableaus as tb
from solvers.tableaus import (
    DIFFEQGPU_PI, DOPRI5, EXPLICIT, RK4, RK4_38, ROSENBROCK, ROSENBROCK23, RODAS4, RODAS5P,
    TSIT5, PIController, get_controller, get_tableau, pi_step_factor, rosenbrock_dense_weights,
    scaled_rms_norm, tsit5_dense_weights,
)

EXPLICIT_TABS = list(EXPLICIT.values())
EMBEDDED_TABS = [t for t in EXPLICIT_TABS if t.btilde is not None]
ROS_TABS = list(ROSENBROCK.values())


# ---------------------------------------------------------------------------------------------
# helpers: rooted trees and elementary weights
# ---------------------------------------------------------------------------------------------

def _canon(children) -> tuple:
    return tuple(sorted(children))


@lru_cache(maxsize=None)
def trees(n: int) -> tuple:
    """All rooted trees with n nodes; a tree is the sorted tuple of its children."""
    if n == 1:
        return ((),)
    out = set()
    for t in trees(n - 1):
        out.update(_graft(t))
    return tuple(sorted(out))


def _graft(t) -> set:
    """Every tree obtained by adding one leaf to t."""
    res = {_canon(t + ((),))}
    for i, ch in enumerate(t):
        for g in _graft(ch):
            res.add(_canon(t[:i] + (g,) + t[i + 1:]))
    return res


def order_of(t) -> int:
    return 1 + sum(order_of(ch) for ch in t)


def density(t) -> int:
    g = order_of(t)
    for ch in t:
        g *= density(ch)
    return g


def rk_weight(A: np.ndarray, t) -> np.ndarray:
    """Stage vector Phi(t) for an explicit RK method (leaf = ones)."""
    v = np.ones(A.shape[0])
    for ch in t:
        v = v * (A @ rk_weight(A, ch))
    return v


def ros_weight(alpha: np.ndarray, B: np.ndarray, t) -> np.ndarray:
    """Stage vector for a Rosenbrock method k_i = h f(y + sum alpha_ij k_j) + h J sum gamma_ij k_j:
    a node with exactly one child uses B = alpha + Gamma (diagonal included), otherwise alpha."""
    if len(t) == 1:
        return B @ ros_weight(alpha, B, t[0])
    v = np.ones(alpha.shape[0])
    for ch in t:
        v = v * (alpha @ ros_weight(alpha, B, ch))
    return v


def test_tree_counts():
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]


def lower(rows, s) -> np.ndarray:
    M = np.zeros((s, s))
    for i, row in enumerate(rows):
        M[i, :len(row)] = row
    return M


def residuals_rk(A, b, max_order) -> dict[int, float]:
    """max |b.Phi(t) - 1/gamma(t)| over trees of each order."""
    b = np.asarray(b)
    return {n: max(abs(b @ rk_weight(A, t) - 1.0 / density(t)) for t in trees(n))
            for n in range(1, max_order + 1)}


def ros_original(tab) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Back-transform (a, C, b) of the documented form to the original (alpha, Gamma, b_orig):
    Gamma = (I/gamma - C)^-1, alpha = a Gamma, b_orig = Gamma^T b (Hairer-Wanner IV.7)."""
    s = tab.stages
    a, C = lower(tab.a, s), lower(tab.C, s)
    Gam = np.linalg.inv(np.eye(s) / tab.gamma - C)
    return a @ Gam, Gam, Gam.T @ np.asarray(tab.b), Gam.T @ np.asarray(tab.b_hat)


def residuals_ros(alpha, Gam, b, max_order) -> dict[int, float]:
    B = alpha + Gam
    return {n: max(abs(b @ ros_weight(alpha, B, t) - 1.0 / density(t)) for t in trees(n))
            for n in range(1, max_order + 1)}


# ---------------------------------------------------------------------------------------------
# structure
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tab", EXPLICIT_TABS, ids=lambda t: t.name)
def test_explicit_structure(tab):
    s = tab.stages
    assert len(tab.c) == len(tab.b) == s and len(tab.a) == s
    assert tab.c[0] == 0.0 and tab.a[0] == ()
    for i, row in enumerate(tab.a):
        assert len(row) == i
        assert abs(tab.c[i] - math.fsum(row)) < 1e-14, (tab.name, i)
    assert abs(math.fsum(tab.b) - 1.0) < 1e-14
    for x in tab.c + tab.b + sum(tab.a, ()):
        assert type(x) is float
    if tab.btilde is not None:
        assert len(tab.btilde) == s
        assert abs(math.fsum(tab.btilde)) < 1e-12
        assert tab.embedded_order is not None and tab.embedded_order < tab.order
    if tab.fsal:
        assert tab.c[-1] == 1.0 and tab.a[-1] == tab.b[:-1] and tab.b[-1] == 0.0


def test_frozen_and_malformed():
    with pytest.raises(Exception):
        TSIT5.order = 4  # type: ignore[misc]
    with pytest.raises(ValueError):
        tb.ExplicitRK("bad", 1, (0.0, 1.0), ((), (1.0, 2.0)), (0.5, 0.5), None, None, False)
    with pytest.raises(ValueError):
        tb.ExplicitRK("bad", 1, (0.0,), ((),), (1.0,), (0.0,), None, False)


def test_tsit5_matches_sources():
    # b_hat = b - btilde must equal OrdinaryDiffEq's (commented) 80-digit b1..b7, the embedded
    # weights (diffrax writes them as b_sol - b_error).
    bhat_ode = ["0.9468075576583945807478876255758922856117527357724631226139574065785592789071067303271e-1",
                "0.9183565540343253096776363936645313759813746240984095238905939532922955247253608687270e-2",
                "0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813",
                "1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761",
                "-2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702",
                "1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089"]
    for got, want in zip(TSIT5.b_hat, [float(x) for x in bhat_ode] + [1 / 66]):
        assert got == pytest.approx(want, rel=1e-14, abs=1e-17)
    assert TSIT5.btilde[6] == -1 / 66  # multiplies k7 = f(t + h, u_new)
    assert TSIT5.c[4] == float(
        "0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604")


def test_dopri5_matches_torchdiffeq_rationals():
    # torchdiffeq's c_error = b - b_hat with Shampine's 4th-order b_hat (not Dormand-Prince's
    # 5179/57600 set).
    b = [Fraction(35, 384), 0, Fraction(500, 1113), Fraction(125, 192), Fraction(-2187, 6784),
         Fraction(11, 84), 0]
    bhat = [Fraction(1951, 21600), 0, Fraction(22642, 50085), Fraction(451, 720),
            Fraction(-12231, 42400), Fraction(649, 6300), Fraction(1, 60)]
    for got, want in zip(DOPRI5.b, b):
        assert got == float(want)
    for got, want in zip(DOPRI5.btilde, [x - y for x, y in zip(b, bhat)]):
        assert got == pytest.approx(float(want), abs=1e-16)


def test_rk4_variants():
    assert RK4.b == (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    assert RK4_38.b == (1 / 8, 3 / 8, 3 / 8, 1 / 8)
    assert RK4_38.a == ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0))


def test_tsit5_dense_endpoints_and_diffrax_form():
    assert all(w == 0.0 for w in tsit5_dense_weights(0.0))
    for w, b in zip(tsit5_dense_weights(1.0), TSIT5.b):
        assert abs(w - b) < 1e-12
    # diffrax's _Tsit5Interpolation writes the same polynomials in factored form.
    for t in (0.1, 0.37, 0.5, 0.81):
        ref = [
            -1.0530884977290216 * t * (t - 1.3299890189751412) * (t ** 2 - 1.4364028541716351 * t + 0.7139816917074209),
            0.1017 * t ** 2 * (t ** 2 - 2.1966568338249754 * t + 1.2949852507374631),
            2.490627285651252793 * t ** 2 * (t ** 2 - 2.38535645472061657 * t + 1.57803468208092486),
            -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t ** 2,
            47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t ** 2,
            -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t ** 2,
            2.5 * (t - 1) * (t - 0.6) * t ** 2,
        ]
        assert tsit5_dense_weights(t) == pytest.approx(ref, rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("tab", ROS_TABS, ids=lambda t: t.name)
def test_rosenbrock_structure(tab):
    s = tab.stages
    for rows in (tab.a, tab.C):
        assert len(rows) == s and all(len(r) == i for i, r in enumerate(rows))
    assert len(tab.c) == len(tab.d) == len(tab.b) == len(tab.btilde) == s
    assert tab.b == tab.a[-1] + (1.0,) and tab.btilde == (0.0,) * (s - 1) + (1.0,)
    assert tab.d[0] == tab.gamma
    # c_i = row sums of alpha = a Gamma and d_i = row sums of Gamma (incl. the diagonal gamma):
    # ties the transformed a/C back to the method's c and d.
    alpha, Gam, _, _ = ros_original(tab)
    np.testing.assert_allclose(alpha.sum(1), tab.c, atol=1e-13)
    np.testing.assert_allclose(Gam.sum(1), tab.d, atol=1e-13)
    for w, b in zip(rosenbrock_dense_weights(tab, 1.0), tab.b):
        assert abs(w - b) < 1e-12
    assert all(w == 0.0 for w in rosenbrock_dense_weights(tab, 0.0))


def test_rosenbrock23_constants():
    assert ROSENBROCK23.d == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-15)
    assert ROSENBROCK23.e32 == pytest.approx(6 + math.sqrt(2), rel=1e-15)


# ---------------------------------------------------------------------------------------------
# order conditions
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("tab", EXPLICIT_TABS, ids=lambda t: t.name)
def test_explicit_order_conditions(tab):
    A = lower(tab.a, tab.stages)
    res = residuals_rk(A, tab.b, tab.order + 1)
    for n in range(1, tab.order + 1):
        assert res[n] < 1e-13, (tab.name, n, res[n])
    assert res[tab.order + 1] > 1e-5, "declared order is not sharp"  # order is exactly `order`
    if tab.btilde is not None:
        res = residuals_rk(A, tab.b_hat, tab.embedded_order + 1)
        for n in range(1, tab.embedded_order + 1):
            assert res[n] < 1e-13, (tab.name, "embedded", n, res[n])
        assert res[tab.embedded_order + 1] > 1e-5


@pytest.mark.parametrize("tab", ROS_TABS, ids=lambda t: t.name)
def test_rosenbrock_order_conditions(tab):
    alpha, Gam, b, bhat = ros_original(tab)
    res = residuals_ros(alpha, Gam, b, tab.order + 1)
    for n in range(1, tab.order + 1):
        assert res[n] < 1e-12, (tab.name, n, res[n])
    assert res[tab.order + 1] > 1e-5
    res = residuals_ros(alpha, Gam, bhat, tab.embedded_order + 1)
    for n in range(1, tab.embedded_order + 1):
        assert res[n] < 1e-12, (tab.name, "embedded", n, res[n])
    assert res[tab.embedded_order + 1] > 1e-5


# ---------------------------------------------------------------------------------------------
# convergence: a generic stepper written from the documented equations
# ---------------------------------------------------------------------------------------------
# Test problem with a known solution phi(t), nonlinear and non-autonomous:
#   f(u, t) = L (u - phi) + N(u) - N(phi) + phi',   N(u) = (u2^2, u1 u2) / 2.

def make_problem(stiff_eig: float):
    L = np.array([[-stiff_eig, 1.0], [0.0, -1.0]])

    def phi(t):
        return np.array([math.cos(t) + 0.5 * math.sin(2 * t), math.sin(t) + 1.0])

    def dphi(t):
        return np.array([-math.sin(t) + math.cos(2 * t), math.cos(t)])

    def ddphi(t):
        return np.array([-math.cos(t) - 2 * math.sin(2 * t), -math.sin(t)])

    def N(u):
        return 0.5 * np.array([u[1] * u[1], u[0] * u[1]])

    def dN(u):
        return 0.5 * np.array([[0.0, 2 * u[1]], [u[1], u[0]]])

    def f(u, t):
        p = phi(t)
        return L @ (u - p) + N(u) - N(p) + dphi(t)

    def jac(u, t):
        return L + dN(u)

    def tgrad(u, t):
        p, dp = phi(t), dphi(t)
        return -L @ dp - dN(p) @ dp + ddphi(t)

    return f, jac, tgrad, phi


def rk_step(tab, w, f, u, t, h):
    """One explicit RK step with weights w (b or b_hat), per ExplicitRK's docstring."""
    k = []
    for i in range(tab.stages):
        ui = u + h * sum((aij * kj for aij, kj in zip(tab.a[i], k)), np.zeros_like(u))
        k.append(f(ui, t + tab.c[i] * h))
    return u + h * sum(wi * ki for wi, ki in zip(w, k)), k


def slope(hs, errs) -> float:
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


T_END = 1.0
NS = (10, 20, 40, 80)


def explicit_global_errors(tab, w):
    f, _, _, phi = make_problem(2.0)
    errs = []
    for n in NS:
        h, u = T_END / n, phi(0.0)
        for i in range(n):
            u, _ = rk_step(tab, w, f, u, i * h, h)
        errs.append(np.max(np.abs(u - phi(T_END))))
    return [T_END / n for n in NS], errs


@pytest.mark.parametrize("tab", EXPLICIT_TABS, ids=lambda t: t.name)
def test_explicit_convergence(tab):
    hs, errs = explicit_global_errors(tab, tab.b)
    assert min(errs) > 1e-14
    p = slope(hs, errs)
    assert abs(p - tab.order) < 0.5, (tab.name, p, errs)


@pytest.mark.parametrize("tab", EMBEDDED_TABS, ids=lambda t: t.name)
def test_embedded_convergence(tab):
    hs, errs = explicit_global_errors(tab, tab.b_hat)
    p = slope(hs, errs)
    assert abs(p - tab.embedded_order) < 0.5, (tab.name, p, errs)


@pytest.mark.parametrize("tab", EMBEDDED_TABS, ids=lambda t: t.name)
def test_error_estimate_is_local_error_difference(tab):
    # err = h sum btilde k equals (order-p solution) - (embedded solution) and scales as
    # h^(embedded_order + 1) per step.
    f, _, _, phi = make_problem(2.0)
    hs = [0.2, 0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        u0 = phi(0.3)
        u1, k = rk_step(tab, tab.b, f, u0, 0.3, h)
        uh, _ = rk_step(tab, tab.b_hat, f, u0, 0.3, h)
        err = h * sum(e * ki for e, ki in zip(tab.btilde, k))
        np.testing.assert_allclose(err, u1 - uh, atol=1e-15)
        errs.append(np.max(np.abs(err)))
    assert abs(slope(hs, errs) - (tab.embedded_order + 1)) < 0.5


def test_tsit5_dense_output_converges():
    f, _, _, phi = make_problem(2.0)
    hs, errs = [], []
    for h in (0.2, 0.1, 0.05, 0.025):
        u0 = phi(0.3)
        _, k = rk_step(TSIT5, TSIT5.b, f, u0, 0.3, h)
        w = tsit5_dense_weights(0.4)
        u = u0 + h * sum(wi * ki for wi, ki in zip(w, k))
        hs.append(h)
        errs.append(np.max(np.abs(u - phi(0.3 + 0.4 * h))))
    # local error of a 4th-order continuous extension: O(h^5)
    assert slope(hs, errs) > 4.5, errs


# ---- Rosenbrock -----------------------------------------------------------------------------

def ros_step(tab, w, f, jac, tgrad, u, t, h):
    """One step of the documented Rosenbrock form; returns (u + sum w_i k_i, k)."""
    J, T = jac(u, t), tgrad(u, t)
    W = np.eye(u.size) / (h * tab.gamma) - J
    k = []
    for i in range(tab.stages):
        Ui = u + sum((aij * kj for aij, kj in zip(tab.a[i], k)), np.zeros_like(u))
        rhs = f(Ui, t + tab.c[i] * h) + h * tab.d[i] * T
        rhs = rhs + sum((Cij / h * kj for Cij, kj in zip(tab.C[i], k)), np.zeros_like(u))
        k.append(np.linalg.solve(W, rhs))
    return u + sum(wi * ki for wi, ki in zip(w, k)), k


def ros_global_errors(tab, w, stiff_eig=5.0, ns=NS):
    f, jac, tgrad, phi = make_problem(stiff_eig)
    errs = []
    for n in ns:
        h, u = T_END / n, phi(0.0)
        for i in range(n):
            u, _ = ros_step(tab, w, f, jac, tgrad, u, i * h, h)
        errs.append(np.max(np.abs(u - phi(T_END))))
    return [T_END / n for n in ns], errs


@pytest.mark.parametrize("tab", ROS_TABS, ids=lambda t: t.name)
def test_rosenbrock_convergence(tab):
    hs, errs = ros_global_errors(tab, tab.b)
    assert min(errs) > 1e-14
    p = slope(hs, errs)
    assert abs(p - tab.order) < 0.5, (tab.name, p, errs)


@pytest.mark.parametrize("tab", ROS_TABS, ids=lambda t: t.name)
def test_rosenbrock_embedded_convergence(tab):
    # finer steps: Rodas5P's embedded method is still pre-asymptotic (slope ~4.6) at h = 1/10
    hs, errs = ros_global_errors(tab, tab.b_hat, ns=(40, 80, 160, 320))
    p = slope(hs, errs)
    assert abs(p - tab.embedded_order) < 0.5, (tab.name, p, errs)


@pytest.mark.parametrize("tab", ROS_TABS, ids=lambda t: t.name)
def test_rosenbrock_stiffly_accurate_form(tab):
    # The docstring's shortcut u_new = U_s + k_s, err = k_s agrees with the weights.
    f, jac, tgrad, phi = make_problem(20.0)
    u0, h = phi(0.2), 0.05
    u1, k = ros_step(tab, tab.b, f, jac, tgrad, u0, 0.2, h)
    Us = u0 + sum(a * kj for a, kj in zip(tab.a[-1], k))
    np.testing.assert_allclose(u1, Us + k[-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(sum(e * kj for e, kj in zip(tab.btilde, k)), k[-1], atol=0)


@pytest.mark.parametrize("tab", ROS_TABS, ids=lambda t: t.name)
def test_rosenbrock_dense_output(tab):
    f, jac, tgrad, phi = make_problem(5.0)
    hs, errs = [0.1, 0.05, 0.025, 0.0125], []
    for h in hs:
        u0, theta = phi(0.2), 0.3
        u1, k = ros_step(tab, tab.b, f, jac, tgrad, u0, 0.2, h)
        w = rosenbrock_dense_weights(tab, theta)
        u = u0 + sum(wi * ki for wi, ki in zip(w, k))
        # the Horner form of the docstring gives the same value
        K = [sum(Hm[i] * k[i] for i in range(tab.stages)) for Hm in tab.H]
        acc = K[-1]
        for Km in reversed(K[:-1]):
            acc = Km + theta * acc
        horner = (1 - theta) * u0 + theta * (u1 + (1 - theta) * acc)
        np.testing.assert_allclose(u, horner, atol=1e-13)
        errs.append(np.max(np.abs(u - phi(0.2 + theta * h))))
    p = slope(hs, errs)
    assert abs(p - (tab.dense_order + 1)) < 0.5, (tab.name, p, errs)  # local O(h^(q+1))


def rb23_step(f, jac, tgrad, u, t, h, k3_T_coeff=ROSENBROCK23.k3_T_coeff):
    """Rosenbrock23Constants' docstring, verbatim."""
    d, e32 = ROSENBROCK23.d, ROSENBROCK23.e32
    J, T = jac(u, t), tgrad(u, t)
    W = np.eye(u.size) - h * d * J
    f0 = f(u, t)
    k1 = np.linalg.solve(W, f0 + h * d * T)
    f1 = f(u + h / 2 * k1, t + h / 2)
    k2 = np.linalg.solve(W, f1 - k1) + k1
    u_new = u + h * k2
    f2 = f(u_new, t + h)
    k3 = np.linalg.solve(W, f2 - e32 * (k2 - f1) - 2 * (k1 - f0) + k3_T_coeff * h * T)
    err = h / 6 * (k1 - 2 * k2 + k3)
    return u_new, err


def test_rosenbrock23_convergence():
    f, jac, tgrad, phi = make_problem(20.0)
    errs = []
    for n in NS:
        h, u = T_END / n, phi(0.0)
        for i in range(n):
            u, _ = rb23_step(f, jac, tgrad, u, i * h, h)
        errs.append(np.max(np.abs(u - phi(T_END))))
    p = slope([T_END / n for n in NS], errs)
    assert abs(p - ROSENBROCK23.order) < 0.5, (p, errs)


def rb23_local_errors(problem, coeff):
    f, jac, tgrad, exact = problem
    hs, est, true = [0.02, 0.01, 0.005, 0.0025], [], []
    for h in hs:
        u0 = exact(0.2, None)
        u1, err = rb23_step(f, jac, tgrad, u0, 0.2, h, coeff)
        est.append(np.max(np.abs(err)))
        true.append(np.max(np.abs(u1 - exact(0.2 + h, h))))
    # the local error of the order-2 solution is O(h^3)
    assert abs(slope(hs, true) - 3) < 0.5
    return slope(hs, est)


def nonautonomous_problem():
    f, jac, tgrad, phi = make_problem(20.0)
    return f, jac, tgrad, lambda t, h: phi(t)


def autonomous_problem():
    """u' = L u + N(u); the exact flow from t=0.2 is replaced by 200 RODAS5P substeps."""
    L = np.array([[-20.0, 1.0], [0.0, -1.0]])

    def f(u, t):
        return L @ u + 0.5 * np.array([u[1] * u[1], u[0] * u[1]])

    def jac(u, t):
        return L + 0.5 * np.array([[0.0, 2 * u[1]], [u[1], u[0]]])

    def tgrad(u, t):
        return np.zeros(2)

    u0 = np.array([1.0, 1.5])

    def exact(t, h):
        if h is None:
            return u0
        u = u0
        for i in range(200):
            u, _ = ros_step(RODAS5P, RODAS5P.b, f, jac, tgrad, u, 0.2 + i * h / 200, h / 200)
        return u

    return f, jac, tgrad, exact


def test_rosenbrock23_error_estimate_paper_form():
    # k3 with + h*d*T (Shampine-Reichelt): err = O(h^3) per step, with or without time dependence.
    assert abs(rb23_local_errors(nonautonomous_problem(), ROSENBROCK23.d) - 3) < 0.5
    assert abs(rb23_local_errors(autonomous_problem(), ROSENBROCK23.d) - 3) < 0.5


def test_rosenbrock23_error_estimate_diffeqgpu_form():
    # k3 with + h*T (OrdinaryDiffEq / DiffEqGPU, the default): O(h^3) for autonomous problems,
    # only O(h^2) once f depends on t, as the Rosenbrock23Constants docstring says.
    assert ROSENBROCK23.k3_T_coeff == 1.0
    assert abs(rb23_local_errors(autonomous_problem(), 1.0) - ROSENBROCK23.error_order) < 0.5
    assert abs(rb23_local_errors(nonautonomous_problem(), 1.0) - 2) < 0.5


@pytest.mark.parametrize("method", ["rodas4", "rodas5p", "rosenbrock23"])
def test_stiff_stability(method):
    # A very stiff mode (-1e5) with steps h*lambda = -1e4: the L-stable methods stay bounded
    # and accurate to O(h^2) at least, where any explicit method would explode.
    f, jac, tgrad, phi = make_problem(1e5)
    n, u = 10, phi(0.0)
    h = T_END / n
    for i in range(n):
        if method == "rosenbrock23":
            u, _ = rb23_step(f, jac, tgrad, u, i * h, h)
        else:
            tab = get_tableau(method)
            u, _ = ros_step(tab, tab.b, f, jac, tgrad, u, i * h, h)
    assert np.max(np.abs(u - phi(T_END))) < 1e-2


# ---------------------------------------------------------------------------------------------
# controller
# ---------------------------------------------------------------------------------------------

def test_pi_constants():
    c = DIFFEQGPU_PI
    assert (c.beta1, c.beta2, c.qmin, c.qmax, c.gamma, c.qold_init) == (0.14, 0.08, 0.2, 10.0, 0.9, 1e-4)
    assert tb.diffeqgpu_pi(5) == DIFFEQGPU_PI
    assert tb.diffeqgpu_pi(4).beta1 == 7 / 40 and tb.diffeqgpu_pi(4).beta2 == 2 / 20
    assert tb.diffeqgpu_pi(2).beta1 == 0.35
    assert get_controller("diffeqgpu") is DIFFEQGPU_PI
    assert get_controller("diffeqgpu", order=2) == tb.diffeqgpu_pi(2)
    with pytest.raises(ValueError, match="diffeqgpu"):
        get_controller("nope")


def test_pi_accept_reject():
    for e in (0.0, 1e-8, 0.3, 0.999, 1.0):
        fac, qold, ok = pi_step_factor(e, 1e-4)
        assert ok and qold == max(e, 1e-4)
    for e in (1.0000001, 2.0, 1e6, math.inf):
        fac, qold, ok = pi_step_factor(e, 0.37)
        assert not ok and qold == 0.37 and fac < 1.0


def test_pi_formula_and_clamps():
    c = DIFFEQGPU_PI
    # accepted, interior: dt_new/dt = gamma * qold^beta2 / EEst^beta1
    e, qold = 0.5, 0.2
    fac, qn, ok = pi_step_factor(e, qold)
    assert ok and qn == 0.5
    assert fac == pytest.approx(c.gamma * qold ** c.beta2 / e ** c.beta1, rel=1e-15)
    # accepted, tiny error: growth clamped at qmax
    assert pi_step_factor(1e-30, 1e-4)[0] == pytest.approx(c.qmax, rel=1e-15)
    # EEst == 0: q = 1/qmax, then divided by gamma -> growth qmax*gamma = 9
    assert pi_step_factor(0.0, 1e-4)[0] == pytest.approx(9.0, rel=1e-15)
    # accepted but EEst close to 1 with large qold: shrink clamped at qmin
    fac = pi_step_factor(1.0, 1e-60)[0]
    assert fac == pytest.approx(c.qmin, rel=1e-15)
    # rejected: dt / min(1/qmin, EEst^beta1 / gamma)
    assert pi_step_factor(1e12, 0.5)[0] == pytest.approx(c.qmin, rel=1e-15)
    assert pi_step_factor(2.0, 0.5)[0] == pytest.approx(c.gamma / 2.0 ** c.beta1, rel=1e-15)
    # all factors within [qmin, qmax]
    for e in np.geomspace(1e-12, 1e12, 97):
        for qo in (1e-4, 0.01, 1.0):
            fac = pi_step_factor(float(e), qo)[0]
            assert c.qmin - 1e-15 <= fac <= c.qmax + 1e-15
    # NaN is "accepted" with a NaN step, as Julia's `while EEst > 1` loop does
    fac, qn, ok = pi_step_factor(math.nan, 1e-4)
    assert ok and math.isnan(fac) and math.isnan(qn)


def test_scaled_rms_norm():
    assert scaled_rms_norm([1e-6, -2e-6], [1.0, -3.0], [2.0, 0.5], 1e-6, 1e-3) == pytest.approx(
        math.sqrt(((1e-6 / (1e-6 + 2e-3)) ** 2 + (2e-6 / (1e-6 + 3e-3)) ** 2) / 2))


def test_adaptive_tsit5_with_controller_meets_tolerance():
    # End-to-end: Tsit5 + btilde + scaled_rms_norm + pi_step_factor, DiffEqGPU's loop.
    f, _, _, phi = make_problem(2.0)
    tol = 1e-8
    t, u, dt, qold, tf = 0.0, phi(0.0), 1e-3, DIFFEQGPU_PI.qold_init, 2.0
    accepted = rejected = 0
    while t < tf - 1e-14:
        dt = min(dt, tf - t)
        u_new, k = rk_step(TSIT5, TSIT5.b, f, u, t, dt)
        err = dt * sum(e * ki for e, ki in zip(TSIT5.btilde, k))
        eest = scaled_rms_norm(err, u, u_new, tol, tol)
        fac, qold, ok = pi_step_factor(eest, qold)
        if ok:
            t, u = t + dt, u_new
            accepted += 1
        else:
            rejected += 1
        dt *= fac
    assert np.max(np.abs(u - phi(tf))) < 100 * tol
    assert 10 < accepted < 400 and rejected < accepted


# ---------------------------------------------------------------------------------------------
# registries
# ---------------------------------------------------------------------------------------------

def test_registries():
    assert EXPLICIT == {"tsit5": TSIT5, "rk4": RK4, "rk4_38": RK4_38, "dopri5": DOPRI5}
    assert ROSENBROCK == {"rodas4": RODAS4, "rodas5p": RODAS5P}
    for name, tab in {**EXPLICIT, **ROSENBROCK}.items():
        assert get_tableau(name) is tab and tab.name == name
    assert get_tableau("rosenbrock23") is ROSENBROCK23


def test_get_tableau_unknown():
    with pytest.raises(ValueError) as exc:
        get_tableau("tsit6")
    msg = str(exc.value)
    assert "tsit6" in msg
    for name in ("tsit5", "rk4", "rk4_38", "dopri5", "rodas4", "rodas5p", "rosenbrock23"):
        assert name in msg
