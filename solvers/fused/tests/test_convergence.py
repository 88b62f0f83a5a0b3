"""Empirical order of every method: slope of log(error) against log(dt) in float64."""
import numpy as np
import pytest

from problems.reference import solve_one
from problems.registry import get_problem
from solvers.fused.tests.helpers import run_kernel

# method -> (order, step counts over Lorenz's [0, 1]). Tsit5's error constants are tuned
# small, so its error is dominated by higher-order terms down to ~dt = 1/100 (seen: local
# slopes 7.4, 5.8, 4.2 from dt = 1/20 to 1/160); its range starts in the asymptotic regime.
ORDERS = {
    "tsit5": (5, [160, 320, 640]),
    "rk4": (4, [80, 160, 320, 640]),
    "rk4_38": (4, [80, 160, 320, 640]),
    "rosenbrock23": (2, [80, 160, 320, 640]),
    "rodas4": (4, [80, 160, 320, 640]),
    "rodas5p": (5, [80, 160, 320, 640]),
}


@pytest.fixture(scope="module")
def lorenz_reference():
    prob = get_problem("lorenz")
    u0, p = prob.ensemble(2, "float64")  # rho = 0 and rho = 21, the sweep's ends
    tight = {"method": "DOP853", "rtol": 1e-13, "atol": 1e-16}
    ref = np.stack([solve_one(prob, u0[i], p[i], settings=tight)[0] for i in range(len(u0))])
    return u0, p, ref


@pytest.mark.parametrize("method", list(ORDERS))
def test_empirical_order(method, lorenz_reference):
    u0, p, ref = lorenz_reference
    order, steps = ORDERS[method]
    errors = []
    for n in steps:
        out = run_kernel("lorenz", method, "fixed", "float64", u0, p, dt=1.0 / n, n_steps=n)
        errors.append(np.max(np.abs(out.u_final - ref)))
    slope = np.polyfit(np.log(1.0 / np.array(steps)), np.log(errors), 1)[0]
    assert abs(slope - order) <= 0.5, f"{method}: slope {slope:.2f}, errors {errors}"
    assert errors[-1] > 1e-12, "finest error at the reference's accuracy: the slope means nothing"
