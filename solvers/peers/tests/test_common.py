"""The shared pieces: the DiffEqGPU -> PID mapping, output grids, and the registry wiring."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.base import SolveSpec, Status
from solvers.peers import _common
from solvers.registry import get_backend
from solvers.tableaus import DIFFEQGPU_PI, pi_step_factor


@pytest.mark.parametrize("eest, qold", [(0.5, 0.3), (0.9, 0.01), (0.2, 0.6), (0.7, 0.7)])
def test_pid_mapping_reproduces_diffeqgpu_accepted_step_factor(eest, qold):
    """With pcoeff/icoeff from diffeqgpu_pid, the PID factor of diffrax and torchode,
    safety * E_n**(-(icoeff + pcoeff)/k) * E_{n-1}**(pcoeff/k), equals DiffEqGPU's accepted-step
    factor (inside the clamps)."""
    k = 5
    pid = _common.diffeqgpu_pid(5, k)
    pid_factor = (pid["safety"] * eest ** (-(pid["icoeff"] + pid["pcoeff"]) / k)
                  * qold ** (pid["pcoeff"] / k))
    factor, _, accepted = pi_step_factor(eest, qold, DIFFEQGPU_PI)
    assert accepted
    assert DIFFEQGPU_PI.qmin < factor < DIFFEQGPU_PI.qmax  # the cases sit inside the clamps
    assert pid_factor == pytest.approx(factor, rel=1e-12)
    assert (pid["pcoeff"], pid["icoeff"]) == pytest.approx((0.4, 0.3))


def test_output_grid_puts_t1_last_and_indexes_saveat():
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=2,
                     saveat=(0.0, 0.5, 0.5))
    times, index = _common.output_grid(spec)
    assert times == (0.0, 0.5, 1.0)
    np.testing.assert_array_equal(index, [0, 1, 1])
    ys = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3)
    final, saved = _common.split_outputs(ys, index)
    np.testing.assert_array_equal(final, ys[:, 2])
    np.testing.assert_array_equal(saved, ys[:, [0, 1, 1]])


def test_mark_nonfinite_only_overrides_success():
    u = np.array([[1.0, 2.0], [np.nan, 0.0], [np.inf, 1.0]])
    status = np.array([Status.SUCCESS, Status.SUCCESS, Status.MAX_STEPS])
    np.testing.assert_array_equal(_common.mark_nonfinite(u, status),
                                  [Status.SUCCESS, Status.NONFINITE, Status.MAX_STEPS])


def test_explicit_rk_evaluation_counts_come_from_the_tableaus():
    assert _common.explicit_rk_evals("tsit5") == (1, 6)
    assert _common.explicit_rk_evals("dopri5") == (1, 6)
    assert _common.explicit_rk_evals("rk4_38") == (0, 4)


@pytest.mark.parametrize("name, cls", [("diffrax", "DiffraxBackend"),
                                       ("torchdiffeq", "TorchdiffeqBackend"),
                                       ("scipy", "ScipyBackend")])
def test_registry_loads_the_peer_backends(name, cls):
    b = get_backend(name)
    assert type(b).__name__ == cls and b.name == name


def test_probe_import_reports_a_missing_module():
    ok, reason = _common.probe_import("surely_not_a_module_here")
    assert not ok and "surely_not_a_module_here is not importable" in reason


@pytest.mark.parametrize("module, backend_cls, method", [
    ("diffrax", "solvers.peers.diffrax_backend:DiffraxBackend", "tsit5"),
    ("torchdiffeq", "solvers.peers.torchdiffeq_backend:TorchdiffeqBackend", "dopri5"),
    ("torchode", "solvers.peers.torchode_backend:TorchodeBackend", "tsit5"),
    ("scipy", "solvers.peers.scipy_backend:ScipyBackend", "rk45"),
])
def test_a_missing_library_only_disables_its_backend(monkeypatch, module, backend_cls, method):
    import importlib
    import sys

    from solvers.base import UnsupportedError

    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now raises ImportError
    mod_name, cls_name = backend_cls.split(":")
    backend = getattr(importlib.import_module(mod_name), cls_name)()
    ok, reason = backend.available("cpu")
    assert not ok and f"{module} is not importable" in reason
    spec = SolveSpec(problem="lorenz", method=method, mode="adaptive", dtype="float64", n=2)
    assert backend.check(spec) == reason
    with pytest.raises(UnsupportedError):
        backend.prepare(spec)
