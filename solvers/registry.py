"""Backends by name, what each one offers (``MANIFEST``), and loading one safely.

Backends are imported lazily so that a missing library breaks only its own backend. The
manifest is plain data: suites and listings read it without importing jax or torch, and a test
(solvers/tests/test_registry.py) checks it against every backend that imports here.
"""
from __future__ import annotations

import importlib

from solvers.base import Backend, UnsupportedError

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
    "optimistix": "solvers.peers.optimistix_backend:OptimistixBackend",
    "scipy-root": "solvers.peers.scipy_root_backend:ScipyRootBackend",
    "torch-newton": "solvers.peers.torch_newton_backend:TorchNewtonBackend",
}

_EXPLICIT_RK = {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive"), "rk4": ("fixed",),
                "rk4_38": ("fixed",)}
_FUSED_ODE = {"tsit5": ("fixed", "adaptive"), "rk4": ("fixed",), "rk4_38": ("fixed",)}
_PSO = {"pso": ("fixed",), "pso-async": ("fixed",)}
_NEWTON = {"newton": ("adaptive",), "trust-region": ("adaptive",)}
#: Event problems (kind "event", problems.events_core): adaptive Tsit5 with dense output, named
#: apart from the ODE kind's tsit5 (method names are unique per backend across kinds).
_EVENT_TSIT5 = {"tsit5_event": ("adaptive",)}

#: What each backend offers: kinds (kind -> method -> modes) and its named variants. Each
#: backend's own ``kinds`` and ``variants`` equal this (the registry test).
MANIFEST: dict[str, dict] = {
    "fused": {"kinds": {"ode": {**_FUSED_ODE, "rosenbrock23": ("adaptive",), "rodas4": ("adaptive",),
                                "rodas5p": ("adaptive",)},
                        "sde": {"em": ("fixed",)}, "pso": _PSO, "nonlinear": _NEWTON, "event": _EVENT_TSIT5},
              "variants": ("", "serial", "stop")},
    "array": {"kinds": {"ode": {**_FUSED_ODE, "rosenbrock23": ("adaptive",)},
                        "sde": {"em": ("fixed",)}, "pso": _PSO, "nonlinear": _NEWTON, "event": _EVENT_TSIT5},
              "variants": ("", "shared", "philox")},
    "diffrax": {"kinds": {"ode": {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive"),
                                  "kvaerno5": ("adaptive",)},
                          "sde": {"em": ("fixed",)}, "event": _EVENT_TSIT5},
                "variants": ("", "vmap-of-jit", "batched", "tuple")},
    "torchdiffeq": {"kinds": {"ode": {"rk4_38": ("fixed",), "dopri5": ("adaptive",)},
                              "event": {"dopri5_event": ("adaptive",)}},
                    "variants": ("", "max-norm", "vmap", "compiled")},
    "torchode": {"kinds": {"ode": {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive")}},
                 "variants": ("", "compiled", "jit")},
    "torchsde": {"kinds": {"sde": {"em": ("fixed",)}}, "variants": ("", "path")},
    "scipy": {"kinds": {"ode": {m: ("adaptive",) for m in ("rk45", "dop853", "radau", "bdf", "lsoda")}},
              "variants": ("", "odeint", "ode")},
    "jax-handwritten": {"kinds": {"ode": _EXPLICIT_RK}, "variants": ("", "soa", "soa-unroll8")},
    "torch-handwritten": {"kinds": {"ode": _EXPLICIT_RK}, "variants": ("", "compiled", "compiled-step", "cudagraph")},
    "pallas": {"kinds": {"ode": _EXPLICIT_RK}, "variants": ("",)},
    "cuda-cpp": {"kinds": {"ode": _FUSED_ODE}, "variants": ("",)},
    "jax-pso": {"kinds": {"pso": _PSO}, "variants": ("", "evosax")},
    "optimistix": {"kinds": {"nonlinear": {"newton": ("adaptive",)}}, "variants": ("",)},
    "scipy-root": {"kinds": {"nonlinear": {"hybr": ("adaptive",)}}, "variants": ("",)},
    "torch-newton": {"kinds": {"nonlinear": {"newton": ("adaptive",)}}, "variants": ("", "compiled")},
}


def backend_names() -> list[str]:
    return list(BACKENDS)


def methods_of(name: str) -> dict[str, tuple[str, ...]]:
    """Every method of backend ``name`` (method -> modes), from the manifest."""
    return {m: modes for methods in MANIFEST[name]["kinds"].values() for m, modes in methods.items()}


def variants_of(name: str) -> tuple[str, ...]:
    """The named variants of backend ``name``, from the manifest."""
    return MANIFEST[name]["variants"]


def all_method_names() -> list[str]:
    """Every method some backend has, sorted."""
    return sorted({m for name in MANIFEST for m in methods_of(name)})


_instances: dict[str, Backend] = {}


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
            _instances[name] = Missing(name, one_line(f"{type(exc).__name__}: {exc}"))
    return _instances[name]


def load_backend(name: str) -> tuple[Backend | None, str]:
    """(backend, "") if ``name``'s module imports, else (None, why not): one broken backend never
    stops a sweep."""
    backend = get_backend(name)
    if isinstance(backend, Missing):
        return None, backend.reason
    return backend, ""


def one_line(text: str) -> str:
    """``text`` squeezed onto one line (results rows and messages are one line each)."""
    return " ".join(str(text).split())


class Missing(Backend):
    """Stand-in for a backend whose module cannot be imported here."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return False, self.reason

    def check(self, spec):
        return self.reason

    def prepare_own(self, spec):
        raise UnsupportedError(self.reason)
