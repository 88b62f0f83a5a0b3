"""Backends as the harness sees them: loaded safely, with their method and variant names.

Suite files are validated against the names a backend declares (``Backend.methods`` and
``Backend.variants``). A backend whose module cannot be imported here (its library is missing,
or it is not written yet) declares nothing, so for those the names the project expects of it
(``EXPECTED``) stand in; its cells then become "unavailable" rows at run time. Either way the
backend's own ``check(spec)`` decides at run time whether a combination is supported.
"""
from __future__ import annotations

from solvers import registry
from solvers.base import Backend

_HANDWRITTEN = {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive"), "rk4": ("fixed",),
                "rk4_38": ("fixed",)}
#: What each backend is expected to offer: method -> modes, and its named variants. Used only
#: when the backend cannot be imported here (see module docstring); a loaded backend's own
#: declarations take precedence.
EXPECTED: dict[str, dict] = {
    "fused": {"methods": {"tsit5": ("fixed", "adaptive"), "rk4": ("fixed",), "rk4_38": ("fixed",),
                          "rosenbrock23": ("adaptive",), "rodas4": ("adaptive",),
                          "rodas5p": ("adaptive",)},
              "variants": ("",)},
    "array": {"methods": {"tsit5": ("fixed", "adaptive"), "rk4": ("fixed",), "rk4_38": ("fixed",),
                          "rosenbrock23": ("adaptive",)},
              "variants": ("", "shared")},
    "diffrax": {"methods": {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive"),
                            "kvaerno5": ("adaptive",)},
                "variants": ("", "vmap-of-jit", "batched")},
    "torchdiffeq": {"methods": {"rk4_38": ("fixed",), "dopri5": ("adaptive",)},
                    "variants": ("", "max-norm", "vmap", "compiled")},
    "torchode": {"methods": {"tsit5": ("fixed", "adaptive"), "dopri5": ("fixed", "adaptive")},
                 "variants": ("", "compiled", "jit")},
    "scipy": {"methods": {m: ("adaptive",) for m in ("rk45", "dop853", "radau", "bdf", "lsoda")},
              "variants": ("", "odeint", "ode")},
    "jax-handwritten": {"methods": _HANDWRITTEN, "variants": ("", "soa", "soa-unroll8")},
    "torch-handwritten": {"methods": _HANDWRITTEN, "variants": ("", "compiled", "cudagraph")},
    "pallas": {"methods": _HANDWRITTEN, "variants": ("",)},
    "jax-pso": {"methods": {"pso": ("fixed",), "pso-async": ("fixed",)}, "variants": ("", "evosax")},
    "optimistix": {"methods": {"newton": ("adaptive",)}, "variants": ("",)},    # nonlinear systems
    "scipy-root": {"methods": {"hybr": ("adaptive",)}, "variants": ("",)},      # nonlinear systems
    "torch-newton": {"methods": {"newton": ("adaptive",)}, "variants": ("", "compiled")},  # nonlinear systems
}


#: Backends whose module raised something other than ImportError: name -> reason. Python does
#: not cache a failed import, so this keeps a broken backend from being re-imported per cell.
_broken: dict[str, str] = {}


def backend_names() -> list[str]:
    """Every registered backend name, in the registry's order."""
    return list(registry.BACKENDS)


def load_backend(name: str) -> tuple[Backend | None, str]:
    """(backend, "") if ``name``'s module imports, else (None, why not).

    Unlike ``solvers.registry.get_backend`` this also survives a module that fails with an
    error other than ImportError, so one broken backend never stops a sweep.
    """
    if name not in registry.BACKENDS:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(registry.BACKENDS)}")
    if name in _broken:
        return None, _broken[name]
    try:
        backend = registry.get_backend(name)
    except Exception as exc:  # noqa: BLE001 - any import-time failure makes it unavailable
        _broken[name] = one_line(f"{type(exc).__name__}: {exc}")
        return None, _broken[name]
    if isinstance(backend, registry._Missing):
        return None, one_line(backend.available()[1])
    return backend, ""


def one_line(text: str) -> str:
    """``text`` squeezed onto one line (results rows and messages are one line each)."""
    return " ".join(str(text).split())


def declared_methods(name: str) -> tuple[dict[str, tuple[str, ...]], bool]:
    """(method -> modes, loaded): the backend's own declaration if it loads, else EXPECTED's."""
    backend, _ = load_backend(name)
    if backend is not None:
        return {m: tuple(modes) for m, modes in backend.methods.items()}, True
    return dict(EXPECTED.get(name, {}).get("methods", {})), False


def declared_variants(name: str) -> tuple[tuple[str, ...], bool]:
    """(variants, loaded), as :func:`declared_methods`."""
    backend, _ = load_backend(name)
    if backend is not None:
        return tuple(backend.variants), True
    return tuple(EXPECTED.get(name, {}).get("variants", ("",))), False


def method_known(name: str, method: str) -> bool:
    """Whether backend ``name`` has ``method``: EXPECTED answers without importing anything;
    a name it does not list is looked up in the backend's own declaration."""
    return method in EXPECTED.get(name, {}).get("methods", {}) or method in declared_methods(name)[0]


def variant_known(name: str, variant: str) -> bool:
    """Whether backend ``name`` has ``variant`` (see :func:`method_known`)."""
    return variant in EXPECTED.get(name, {}).get("variants", ("",)) or variant in declared_variants(name)[0]


def all_method_names() -> list[str]:
    """Every method name any backend declares or is expected to declare, sorted."""
    names: set[str] = set()
    for b in backend_names():
        names.update(EXPECTED.get(b, {}).get("methods", {}))
        names.update(declared_methods(b)[0])
    return sorted(names)


def is_method_name(method: str) -> bool:
    """Whether some backend has ``method`` (EXPECTED first, so the common case imports nothing)."""
    if any(method in e["methods"] for e in EXPECTED.values()):
        return True
    return method in all_method_names()
