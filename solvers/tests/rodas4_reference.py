"""An independent float64 NumPy Rodas4 with its dense output, for the tests of issue 28.

Written for the tests, not derived from the project's code: the coefficients are copied from
Hairer-Wanner's RODAS (``rodas.f``, METH=1) as OrdinaryDiffEq's ``Rodas4Tableau`` prints them
(a, C, c, d, and the dense-output rows ``h2*``/``h3*``), the stages are solved with
``numpy.linalg.solve`` on the full matrix ``I/(h gamma) - J``, and the step controller is
DiffEqGPU's PI law written out in plain floats. The project's generated Rodas4 kernel must agree
with it to rounding at the same ``(t, h, y)``.
"""
from __future__ import annotations

import numpy as np

GAMMA = 0.25
A = np.zeros((6, 6))
C = np.zeros((6, 6))
A[1, 0] = 1.544
A[2, :2] = [0.9466785280815826, 0.2557011698983284]
A[3, :3] = [3.314825187068521, 2.896124015972201, 0.9986419139977817]
A[4, :4] = [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950]
A[5, :5] = [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950, 1.0]
C[1, 0] = -5.6688
C[2, :2] = [-2.430093356833875, -0.2063599157091915]
C[3, :3] = [-0.1073529058151375, -9.594562251023355, -20.47028614809616]
C[4, :4] = [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160]
C[5, :5] = [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
            -6.058818238834054]
NODES = np.array([0.0, 0.386, 0.21, 0.63, 1.0, 1.0])
D = np.array([0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0])
H = np.array([[10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
               1.025137723295662, 0.0],
              [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
               -6.594389125716872, 0.0]])
B = np.append(A[5, :5], 1.0)   # stiffly accurate: y1 = U_6 + k_6, error estimate k_6


def step(f, jac, tgrad, t: float, y: np.ndarray, h: float):
    """One Rodas4 step: ``(y1, err, K)`` with ``K`` the (6, n) stage increments."""
    n = y.size
    W = np.eye(n) / (h * GAMMA) - jac(t, y)
    T = tgrad(t, y)
    K = np.zeros((6, n))
    for i in range(6):
        U = y + A[i, :i] @ K[:i]
        K[i] = np.linalg.solve(W, f(t + NODES[i] * h, U) + h * D[i] * T + (C[i, :i] / h) @ K[:i])
    return y + B @ K, K[5].copy(), K


def dense(y0: np.ndarray, y1: np.ndarray, K: np.ndarray, th: float) -> np.ndarray:
    """Hairer's RODAS continuous extension: ``(1-th) y0 + th (y1 + (1-th)(K1 + th K2))``."""
    K1, K2 = H @ K
    return (1.0 - th) * y0 + th * (y1 + (1.0 - th) * (K1 + th * K2))


def prothero_robinson(lam: float, c: float = 2.0, w: float = 1.0):
    """``(f, jac, tgrad, exact)`` of ``problems.prothero_robinson`` (u0 = (1, 0) at t = 0),
    written out again here: ``u' = A (u - g) + g'``, ``g = (sin wt, cos wt)``."""
    Am = np.array([[-lam, c], [-c, -lam]])

    def g(t):
        return np.array([np.sin(w * t), np.cos(w * t)])

    def gp(t):
        return w * np.array([np.cos(w * t), -np.sin(w * t)])

    def f(t, u):
        return Am @ (u - g(t)) + gp(t)

    def jac(t, u):
        return Am

    def tgrad(t, u):
        return -Am @ gp(t) - w * w * g(t)

    def exact(t):
        co, si = np.cos(c * t), np.sin(c * t)
        e0 = np.array([1.0, -1.0])
        return g(t) + np.exp(-lam * t) * (np.array([[co, si], [-si, co]]) @ e0)

    return f, jac, tgrad, exact


def integrate(f, jac, tgrad, y0, t0: float, tf: float, tol: float, dt0: float, saveat=()):
    """Adaptive Rodas4 with DiffEqGPU's PI controller for order 4 (beta1 = 7/40, beta2 = 1/10,
    qmin 1/5, qmax 10, safety 9/10, qold 1e-4) and the kernel's landing rule on ``tf``.

    Returns ``(saved, steps, rejected)``: the dense output at ``saveat``, the accepted steps as
    ``(t, h, y, y1, K)`` and the number of rejected attempts."""
    b1, b2 = 7 / 40, 1 / 10
    t, y, dt, qold = t0, np.array(y0, float), dt0, 1e-4
    saved, steps, j, rejected = [], [], 0, 0
    while t < tf:
        last = dt >= tf - t
        h = tf - t if last else dt
        y1, err, K = step(f, jac, tgrad, t, y, h)
        eest = np.sqrt(np.mean((err / (tol + np.maximum(np.abs(y), np.abs(y1)) * tol)) ** 2))
        if eest > 1.0:
            dt = h / min(5.0, eest ** b1 / 0.9)
            rejected += 1
            continue
        q = 0.1 if eest == 0 else eest ** b1 / qold ** b2
        q = max(0.1, min(5.0, q / 0.9))
        qold = max(eest, 1e-4)
        tn = tf if last else t + h
        steps.append((t, h, y.copy(), y1.copy(), K))
        while j < len(saveat) and saveat[j] <= tn:
            saved.append(y1.copy() if saveat[j] == tn else dense(y, y1, K, (saveat[j] - t) / h))
            j += 1
        dt = max(h / q, dt) if h < dt else h / q
        t, y = tn, y1
    return np.array(saved), steps, rejected
