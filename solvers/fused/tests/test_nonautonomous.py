"""The stiff methods on a non-autonomous problem (Prothero-Robinson, ``df/dt != 0``): the
time-derivative terms are generated, converge at the methods' orders against the closed-form
solution, take the plain-Python stepper's steps, and meet the float64 reference."""
import numpy as np
import pytest

from problems.prothero_robinson import exact_solution
from problems.reference import max_scaled_error, reference
from problems.registry import get_problem
from solvers.base import Status
from solvers.fused.assemble import controller_for
from solvers.fused.codegen import KernelKey, generate_source
from solvers.fused.tests.helpers import python_rodas_adaptive, run_kernel, solve
from solvers.tableaus import get_tableau

PROBLEM = "prothero_robinson"
STIFF_METHODS = ("rosenbrock23", "rodas4", "rodas5p")
#: The same, with Rodas5P's kernel (the slowest to compile) in the slow set only.
STIFF_METHODS_EVERYDAY = ("rosenbrock23", "rodas4", pytest.param("rodas5p", marks=pytest.mark.slow))

# The terms that exist only for non-autonomous problems, as the generator writes them.
T_TERMS = {"rosenbrock23": ("dtd * tg0", "hk3 * tg0"), "rodas4": ("hd_0 * tg0", "hd_3 * tg1"),
           "rodas5p": ("hd_0 * tg0", "hd_4 * tg1")}


@pytest.mark.parametrize("method", STIFF_METHODS)
@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_time_derivative_terms_are_generated(method, mode):
    src = generate_source(KernelKey(PROBLEM, method, mode, "float64"))
    assert "tgrad((y0, y1), (p0, p1, p2), t)" in src
    terms = T_TERMS[method] if not (method == "rosenbrock23" and mode == "fixed") else T_TERMS[method][:1]
    for term in terms:
        assert term in src, f"{term!r} missing from the {method} {mode} kernel"
    # the autonomous problems get none of them
    assert "tgrad(" not in generate_source(KernelKey("robertson", method, mode, "float64")).split("tgrad = _jit")[-1]


# method -> (order, step counts over [0, 1]); lam = 1 and 5 (mild stiffness: the classical
# order, not Prothero-Robinson order reduction). Seen slopes: 2.00, 4.02, 5.4-5.5.
ORDERS = {"rosenbrock23": (2, [10, 20, 40, 80]), "rodas4": (4, [10, 20, 40, 80]),
          "rodas5p": (5, [10, 20, 40])}


@pytest.mark.parametrize("method", STIFF_METHODS_EVERYDAY)
def test_empirical_order_against_the_closed_form(method):
    """Dropping or mis-scaling a time-derivative term costs the order (the forcing's time
    dependence is the only thing these terms see)."""
    u0 = np.array([[1.0, 0.0], [1.0, 0.0]])
    p = np.array([[1.0, 2.0, 1.0], [5.0, 2.0, 1.0]])
    exact = np.array([exact_solution(u0[i], p[i], 1.0) for i in range(2)])
    order, steps = ORDERS[method]
    errors = []
    for n in steps:
        out = run_kernel(PROBLEM, method, "fixed", "float64", u0, p, tspan=(0.0, 1.0), dt=1.0 / n, n_steps=n)
        errors.append(np.max(np.abs(out.u_final - exact)))
    slope = np.polyfit(np.log(1.0 / np.array(steps)), np.log(errors), 1)[0]
    assert abs(slope - order) <= 0.6, f"{method}: slope {slope:.2f}, errors {errors}"
    assert errors[-1] > 1e-13


@pytest.mark.parametrize("method", ["rodas4", pytest.param("rodas5p", marks=pytest.mark.slow)])
def test_rodas_steps_match_python_stepper(method):
    """Step for step against the plain-Python Rosenbrock (NumPy solves, T terms from the
    tableau's d), over the sweep's ends (lam = 1 and 1e4)."""
    prob = get_problem(PROBLEM)
    u0, p = prob.ensemble(2, "float64")
    tspan, dt0, tol = (0.0, 2.0), 1e-3, 1e-7
    out = run_kernel(PROBLEM, method, "adaptive", "float64", u0, p, tspan=tspan, dt=dt0, rtol=tol, atol=tol)
    ctrl = controller_for(method, "diffeqgpu")
    for i in range(len(u0)):
        u, acc, rej = python_rodas_adaptive(prob, get_tableau(method), ctrl, u0[i], tuple(p[i]), *tspan, dt0, tol, tol)
        assert (out.accepted[i], out.rejected[i]) == (acc, rej)
        np.testing.assert_allclose(out.u_final[i], u, rtol=1e-9, atol=1e-14)


# method -> (rtol = atol, bound on the max scaled error in units of that tolerance).
# Rosenbrock23 runs at 1e-4: DiffEqGPU's k3 time-derivative term (h*T, not h*d*T; see
# Rosenbrock23Constants) leaves (1-d)/6 h^2 T in its error estimate, and T grows with lam here,
# so at 1e-6 and 1e-8 the stiff trajectories stop at max_steps = 1e5 (seen). Seen scaled
# errors: 0.33 (max 23302 steps), 0.017 (Rodas4, max 8240 steps: Prothero-Robinson order
# reduction), 0.035 (Rodas5P, max 256 steps).
SCALED_BOUNDS = {"rosenbrock23": (1e-4, 5.0), "rodas4": (1e-8, 1.0), "rodas5p": (1e-8, 1.0)}


@pytest.mark.parametrize("method", STIFF_METHODS_EVERYDAY)
def test_adaptive_against_the_reference(method):
    prob = get_problem(PROBLEM)
    n = 16
    tol, bound = SCALED_BOUNDS[method]
    res = solve(PROBLEM, method, "adaptive", "float64", n, rtol=tol, atol=tol)
    assert np.all(res.status == Status.SUCCESS)
    err = max_scaled_error(res.u_final, reference(prob, n, "float64"), tol, tol)
    assert err <= bound, f"{method}: max scaled error {err:.3g}"
    lanes_vs_serial = solve(PROBLEM, method, "adaptive", "float64", n, variant="serial", rtol=tol, atol=tol)
    np.testing.assert_array_equal(res.u_final, lanes_vs_serial.u_final)
    np.testing.assert_array_equal(res.accepted, lanes_vs_serial.accepted)
