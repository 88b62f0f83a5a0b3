"""The step controller: the kernels' log/exp and PI law against libm and ``pi_step_factor``,
and whole adaptive solves against plain-Python steppers built from the tableaus alone."""
import math

import numpy as np
import pytest

from problems.registry import get_problem
from solvers.fused.assemble import controller_domain, controller_for
from solvers.fused.build import load_module
from solvers.fused.codegen import KernelKey
from solvers.fused.tests.helpers import python_rk_adaptive, python_rodas_adaptive, run_kernel
from solvers.tableaus import RODAS5P, TSIT5, pi_step_factor


@pytest.fixture(scope="module", params=["float32", "float64"])
def module(request):
    return load_module(KernelKey("lorenz", "tsit5", "adaptive", request.param))


def test_log_exp_match_libm(module):
    T = module._T
    eps = np.finfo(T).eps
    x = np.geomspace(1e-30, 1e30, 2001).astype(T)
    got = np.array([module._log(v) for v in x], dtype=np.float64)
    want = np.log(x.astype(np.float64))
    # a few ulps of the result, or of the argument's log-scale near x = 1
    assert np.all(np.abs(got - want) <= 4 * eps * np.maximum(np.abs(want), 1.0))
    z = np.linspace(-60.0, 60.0, 2001).astype(T)
    got = np.array([module._exp(v) for v in z], dtype=np.float64)
    want = np.exp(z.astype(np.float64))
    assert np.all(np.abs(got - want) <= 4 * eps * want)


def test_control_is_pi_step_factor(module):
    """Accept/reject decisions and step factors of DiffEqGPU's controller, for EEst from 0
    to far above 1 and every controller memory, in the kernel's dtype. The kernel takes the
    squared norm ``ssq = n EEst^2`` (n = 3 here) and the memory ``lm = log(n qold^2)``
    (``solvers.tableaus.SquaredPI``), and accepts when ``ssq <= n``."""
    T = module._T
    n = 3
    ctrl = controller_for("tsit5", "diffeqgpu")
    tol = 16 * np.finfo(T).eps
    rng = np.random.default_rng(0)
    eests = np.concatenate([[0.0, 1.0, 1e-15, 1e15], np.exp(rng.uniform(math.log(1e-14), math.log(1e8), 400))])
    for eest in eests.astype(T):
        ssq = T(n) * eest * eest
        for qold in (ctrl.qold_init, 1e-3, 0.37, 1.0):
            factor, qnew, accept = pi_step_factor(float(eest), qold, ctrl)
            h = T(0.5)
            dta, dtr, lmn = module._control(ssq, T(math.log(n * qold * qold)), h)
            if abs(float(eest) - 1.0) > 4 * np.finfo(T).eps:  # the rounding of ssq may decide at EEst = 1
                assert (ssq <= n) == accept, (eest, ssq)
            got = (dta if ssq <= n else dtr) / h
            assert abs(got - factor) <= tol * factor, (eest, qold, got, factor)
            if accept:
                assert abs(math.sqrt(math.exp(lmn) / n) - qnew) <= tol * qnew


def test_controller_domain_clamps_do_not_change_decisions():
    """EEst outside the clamped range gives the same factor as the range's end."""
    for method in ("tsit5", "rosenbrock23", "rodas4", "rodas5p"):
        ctrl = controller_for(method, "diffeqgpu")
        lo, hi = controller_domain(ctrl)
        for qold in (ctrl.qold_init, 0.5, 1.0):
            assert pi_step_factor(lo / 10, qold, ctrl)[0] == pi_step_factor(lo, qold, ctrl)[0]
            assert pi_step_factor(hi * 10, qold, ctrl)[0] == pi_step_factor(hi, qold, ctrl)[0]


@pytest.mark.parametrize("variant", ["lanes", "serial"])
@pytest.mark.parametrize("tol", [1e-6, 1e-9])
def test_tsit5_steps_match_python_stepper(variant, tol):
    """Identical accepted/rejected counts in float64 as a plain-Python Tsit5 with
    ``pi_step_factor``; the final states agree to rounding."""
    prob = get_problem("lorenz")
    u0, p = prob.ensemble(4, "float64")
    dt0 = 0.05  # large enough that the first steps get rejected
    out = run_kernel("lorenz", "tsit5", "adaptive", "float64", u0, p, variant=variant, dt=dt0,
                     rtol=tol, atol=tol)
    ctrl = controller_for("tsit5", "diffeqgpu")
    f = prob.rhs_for(math)
    assert out.rejected.sum() > 0
    for i in range(len(u0)):
        u, acc, rej = python_rk_adaptive(f, TSIT5, ctrl, u0[i], tuple(p[i]), 0.0, 1.0, dt0, tol, tol)
        assert (out.accepted[i], out.rejected[i]) == (acc, rej)
        np.testing.assert_allclose(out.u_final[i], u, rtol=1e-11, atol=1e-13)
    assert np.all(out.rhs_evals == 1 + 6 * (out.accepted + out.rejected))


def test_rodas5p_steps_match_python_stepper():
    """The Rosenbrock kernel (unrolled LU, stage equations) step for step against NumPy."""
    prob = get_problem("robertson")
    u0, p = prob.ensemble(2, "float64")
    tspan, dt0, tol = (0.0, 100.0), 1e-3, 1e-7
    out = run_kernel("robertson", "rodas5p", "adaptive", "float64", u0, p, tspan=tspan, dt=dt0,
                     rtol=tol, atol=tol)
    ctrl = controller_for("rodas5p", "diffeqgpu")
    for i in range(len(u0)):
        u, acc, rej = python_rodas_adaptive(prob, RODAS5P, ctrl, u0[i], tuple(p[i]), *tspan, dt0, tol, tol)
        assert (out.accepted[i], out.rejected[i]) == (acc, rej)
        np.testing.assert_allclose(out.u_final[i], u, rtol=1e-9, atol=1e-15)
