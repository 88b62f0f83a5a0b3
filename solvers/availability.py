"""Can a library run here, on this device? One answer for every backend built on JAX or torch."""
from __future__ import annotations

import importlib


def probe_import(module: str) -> tuple[bool, str]:
    """(True, "module version") if ``module`` imports here, else (False, the reason)."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising something else
        return False, f"{module} is not importable here: {type(exc).__name__}: {exc}"
    return True, f"{module} {getattr(mod, '__version__', 'unknown version')}"


def framework_available(framework: str, device: str, *libraries: str) -> tuple[bool, str]:
    """(ok, versions or reason) for ``framework`` ("jax" or "torch") and ``libraries`` on ``device``.

    On "gpu" the framework must also see a device: ``jax.devices("gpu")`` or
    ``torch.cuda.is_available()``.
    """
    if framework not in ("jax", "torch"):
        raise ValueError(f"invalid framework {framework!r}: choose jax or torch")
    if device not in ("cpu", "gpu"):
        raise ValueError(f"invalid device {device!r}: choose one of cpu, gpu")
    infos = []
    for module in (framework, *libraries):
        ok, info = probe_import(module)
        if not ok:
            return False, info
        infos.append(info)
    if device == "gpu":
        if framework == "jax":
            import jax  # jax is optional: probed above, imported only to ask it for a GPU

            try:
                infos.append(jax.devices("gpu")[0].device_kind)
            except RuntimeError as exc:
                return False, f"jax sees no GPU: {exc}"
        else:
            import torch  # torch is optional: probed above, imported only to ask it for a GPU

            if not torch.cuda.is_available():
                return False, "torch sees no CUDA device (torch.cuda.is_available() is False)"
            infos.append(torch.cuda.get_device_name(0))
    return True, ", ".join(infos)
