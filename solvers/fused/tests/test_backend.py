"""The backend interface: registry, availability, refusals with reasons, settings, counts."""
import numpy as np
import pytest

from solvers.base import SolveSpec, UnsupportedError
from solvers.fused.backend import FusedBackend
from solvers.fused.tests.helpers import solve
from solvers.registry import get_backend


def test_registered_as_fused():
    b = get_backend("fused")
    assert isinstance(b, FusedBackend) and b.name == "fused"
    assert b.available("cpu")[0]
    assert set(b.methods) == {"tsit5", "rk4", "rk4_38", "rosenbrock23", "rodas4", "rodas5p", "em", "pso", "pso-async",
                              "newton", "trust-region", "tsit5_event"}
    assert set(b.kinds["sde"].methods) == {"em"} and "em" not in b.kinds["ode"].methods
    assert set(b.kinds["pso"].methods) == {"pso", "pso-async"} and "pso" not in b.kinds["ode"].methods
    assert set(b.kinds["event"].methods) == {"tsit5_event"}
    assert set(b.kinds["nonlinear"].methods) == {"newton", "trust-region"}


def test_gpu_availability_has_a_reason():
    from numba import cuda

    ok, why = FusedBackend().available("gpu")
    assert ok == cuda.is_available()
    assert why
    if not ok:
        spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8, device="gpu")
        with pytest.raises(UnsupportedError):
            FusedBackend().prepare(spec)


@pytest.mark.parametrize("changes,reason", [
    (dict(method="rk4", mode="adaptive"), "no adaptive mode"),
    (dict(method="dopri5"), "no method"),
    (dict(problem="robertson", method="tsit5", mode="adaptive", dtype="float64"), "stiff"),
    (dict(variant="serial", device="gpu"), "CPU variant"),
    (dict(variant="blocked"), "no variant"),
    (dict(saveat=(0.0, 0.0005)), "not on the fixed step grid"),
    (dict(mode="adaptive", max_steps=2 ** 25), "max_steps"),
])
def test_unsupported_combinations_have_reasons(changes, reason, monkeypatch):
    # the device's availability is checked before a backend's own reasons: pretend it is there,
    # so a GPU-only combination gets its own reason on a machine without CUDA too
    monkeypatch.setattr(FusedBackend, "available", lambda self, device="cpu": (True, ""))
    spec = SolveSpec(**{**dict(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8), **changes})
    why = FusedBackend().check(spec)
    assert why is not None and reason in why
    with pytest.raises(UnsupportedError, match=reason):
        FusedBackend().prepare(spec)


@pytest.mark.parametrize("kwargs,match", [
    (dict(lanes=0), "lanes"), (dict(lanes=16.0), "lanes"),
    (dict(threads_per_block=100), "threads_per_block"), (dict(fastmath=("fast-ish",)), "fastmath"),
])
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FusedBackend(**kwargs)


def test_settings_record_everything():
    b = FusedBackend()
    fixed = b.settings(SolveSpec(problem="lorenz", method="rk4_38", mode="fixed", dtype="float32", n=8))
    assert fixed["tableau"] == "rk4_38" and fixed["dt"] == 1e-3 and fixed["n_steps"] == 1000
    assert fixed["lanes"] == 32 and fixed["fastmath"] == "contract" and fixed["save_mode"] == "final"
    ada = b.settings(SolveSpec(problem="robertson", method="rodas5p", mode="adaptive", dtype="float64", n=8,
                               device="gpu", saveat=(0.0, 1e5)))
    assert (ada["beta1"], ada["beta2"]) == (7 / 50, 2 / 25)  # Rodas5P: alg_order 5
    assert ada["qmin"] == 0.2 and ada["qmax"] == 10 and ada["gamma"] == 0.9 and ada["qold_init"] == 1e-4
    assert ada["rtol"] == ada["atol"] == 1e-8 and ada["threads_per_block"] == 256
    assert ada["save_mode"] == "dense" and ada["step_control"] == "per-trajectory"  # Rodas interpolant
    assert b.settings(SolveSpec(problem="robertson", method="rodas5p", mode="adaptive", dtype="float64", n=8,
                                saveat=(0.0, 1e5), variant="stop"))["save_mode"] == "stop"
    assert b.settings(SolveSpec(problem="robertson", method="rosenbrock23", mode="adaptive", dtype="float64",
                                n=8))["beta1"] == 7 / 20  # order 2
    cpu = b.settings(SolveSpec(problem="lorenz", method="tsit5", mode="adaptive", dtype="float32", n=8))
    assert cpu["lane_layout"] in ("one-pass", "two-pass")
    # how the lane loops were laid out is recorded beside every lanes cell, fixed step included
    assert cpu["lane_interleave"] == ([2, 2, 1] if cpu["lane_layout"] == "two-pass" else [2])
    for layout, loops in (("one-pass", [1]), ("two-pass", [4])):  # 32 lanes: four ways of 8
        tsit5 = FusedBackend(lane_layout=layout).settings(
            SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8))
        assert tsit5["lane_interleave"] == loops, layout
    assert "lane_interleave" not in b.settings(SolveSpec(problem="lorenz", method="tsit5", mode="fixed",
                                                         dtype="float32", n=8, variant="serial"))


def test_prepared_dispatches_a_kernel():
    prep = FusedBackend().prepare(SolveSpec(problem="sir", method="rk4", mode="fixed", dtype="float32", n=8))
    assert prep.dispatch == "kernel"
    out = prep.run()
    prep.sync(out)
    res = prep.fetch(out)
    assert res.u_final.shape == (8, 3) and res.notes["variant"] == "lanes"


@pytest.mark.parametrize("problem,method,mode,dtype,evals", [
    ("lorenz", "tsit5", "fixed", "float32", lambda a, r: 6 * a),
    ("lorenz", "rk4", "fixed", "float32", lambda a, r: 4 * a),
    ("lorenz", "tsit5", "adaptive", "float32", lambda a, r: 1 + 6 * (a + r)),
    ("robertson", "rosenbrock23", "adaptive", "float64", lambda a, r: 1 + 2 * (a + r)),
    ("robertson", "rodas5p", "adaptive", "float64", lambda a, r: 8 * (a + r)),
])
def test_rhs_evaluation_counts(problem, method, mode, dtype, evals):
    res = solve(problem, method, mode, dtype, 32)
    np.testing.assert_array_equal(res.rhs_evals, evals(res.accepted, res.rejected))
