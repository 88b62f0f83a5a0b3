"""Per-trajectory failure codes, and failures that never leak into the neighbours."""
import numpy as np
import pytest

from problems.registry import get_problem
from solvers.base import Status
from solvers.fused.tests.helpers import run_kernel

N = 40  # one full lane block (32 lanes) and a partial one
BAD = 5  # inside the first lane block


def _ensemble(dtype):
    return get_problem("lorenz").ensemble(N, dtype)


@pytest.mark.parametrize("variant", ["lanes", "serial"])
@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_blow_up_is_nonfinite_and_isolated(mode, variant):
    u0, p = _ensemble("float32")
    kw = {"dt": 1e-3, "n_steps": 1000} if mode == "fixed" else {"dt": 1e-3, "rtol": 1e-6, "atol": 1e-6}
    clean = run_kernel("lorenz", "tsit5", mode, "float32", u0, p, variant=variant, **kw)
    u0_bad = u0.copy()
    u0_bad[BAD] = 1e30  # x*y overflows float32 in the first stage
    out = run_kernel("lorenz", "tsit5", mode, "float32", u0_bad, p, variant=variant, **kw)
    assert out.status[BAD] == Status.NONFINITE
    assert not np.all(np.isfinite(out.u_final[BAD]))
    others = np.arange(N) != BAD
    assert np.all(out.status[others] == Status.SUCCESS)
    np.testing.assert_array_equal(out.u_final[others], clean.u_final[others])
    np.testing.assert_array_equal(out.accepted[others], clean.accepted[others])
    if mode == "adaptive":
        # the failed attempt is counted, nothing is accepted after it
        assert out.accepted[BAD] == 0 and out.rejected[BAD] == 1


@pytest.mark.parametrize("variant", ["lanes", "serial"])
def test_max_steps_stops_only_the_long_trajectories(variant):
    """rho = linspace(0, 21): low rho needs ~30 steps at 1e-6, high rho ~60; a cap of 40 stops
    the second group only, and the first is untouched."""
    u0, p = _ensemble("float64")
    kw = {"dt": 1e-3, "rtol": 1e-6, "atol": 1e-6}
    free = run_kernel("lorenz", "tsit5", "adaptive", "float64", u0, p, variant=variant, **kw)
    cap = 40
    out = run_kernel("lorenz", "tsit5", "adaptive", "float64", u0, p, variant=variant, max_steps=cap, **kw)
    needs_more = (free.accepted + free.rejected) > cap
    assert needs_more.any() and (~needs_more).any()
    assert np.all(out.status[needs_more] == Status.MAX_STEPS)
    assert np.all(out.accepted[needs_more] + out.rejected[needs_more] == cap)
    assert np.all(out.status[~needs_more] == Status.SUCCESS)
    np.testing.assert_array_equal(out.u_final[~needs_more], free.u_final[~needs_more])


@pytest.mark.parametrize("variant", ["lanes", "serial"])
@pytest.mark.parametrize("t0", [0.0, 1e3])
def test_unreachable_tolerance_underflows(variant, t0):
    """Float32 cannot meet rtol = atol = 1e-30: every attempt is rejected and the step
    shrinks until it falls below dtmin (t0 = 0) or no longer advances t (t0 = 1000, where a
    float32 ulp is 6e-5)."""
    u0, p = _ensemble("float32")
    out = run_kernel("lorenz", "tsit5", "adaptive", "float32", u0, p, variant=variant, dt=1e-3,
                     rtol=1e-30, atol=1e-30, tspan=(t0, t0 + 1.0))
    assert np.all(out.status == Status.DT_UNDERFLOW)
    assert np.all(out.accepted == 0) and np.all(out.rejected >= 2)
