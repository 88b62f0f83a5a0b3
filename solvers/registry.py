"""Backends by name, imported lazily so that a missing library breaks only its own backend."""
from __future__ import annotations

import importlib

from solvers.base import Backend

#: name -> "module:Class". Order is the order listings and figures use.
BACKENDS: dict[str, str] = {
    "fused": "solvers.fused.backend:FusedBackend",
    "array": "solvers.array.backend:ArrayBackend",
    "diffrax": "solvers.peers.diffrax_backend:DiffraxBackend",
    "torchdiffeq": "solvers.peers.torchdiffeq_backend:TorchdiffeqBackend",
    "torchode": "solvers.peers.torchode_backend:TorchodeBackend",
    "torchsde": "solvers.peers.torchsde_backend:TorchsdeBackend",
    "scipy": "solvers.peers.scipy_backend:ScipyBackend",
    "jax-handwritten": "solvers.handwritten.jax_backend:JaxHandwrittenBackend",
    "torch-handwritten": "solvers.handwritten.torch_backend:TorchHandwrittenBackend",
    "pallas": "solvers.handwritten.pallas_backend:PallasBackend",
    "cuda-cpp": "solvers.cpp.backend:CppBackend",
    "jax-pso": "solvers.peers.jax_pso_backend:JaxPSOBackend",
    "optimistix": "solvers.peers.optimistix_backend:OptimistixBackend",      # nonlinear systems only
    "scipy-root": "solvers.peers.scipy_root_backend:ScipyRootBackend",      # nonlinear systems only
    "torch-newton": "solvers.peers.torch_newton_backend:TorchNewtonBackend",  # nonlinear systems only
}

_instances: dict[str, Backend] = {}


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; unknown names raise ValueError listing the choices.

    A backend whose module fails to import (its library is missing) is still returned, as a
    stand-in whose ``available()`` is False with the import error as the reason.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    if name not in _instances:
        module, cls = BACKENDS[name].split(":")
        try:
            _instances[name] = getattr(importlib.import_module(module), cls)()
        except Exception as exc:  # a broken install can raise more than ImportError
            _instances[name] = _Missing(name, f"{type(exc).__name__}: {exc}")
    return _instances[name]


class _Missing(Backend):
    """Stand-in for a backend whose module cannot be imported here."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return False, self._reason

    def check(self, spec):
        return self._reason

    def prepare(self, spec):
        from solvers.base import UnsupportedError

        raise UnsupportedError(self._reason)
