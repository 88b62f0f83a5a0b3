"""Which packages the project needs, in one place (stdlib only: the Makefile asks it before any
environment exists).

* required: without them nothing runs (the harness, results, the fused kernel on a CPU);
* optional: each serves some backends or steps, named in ``OPTIONAL``; a missing one costs
  those backends (their cells become "unavailable" rows), never the run.

``python -m harness.packages --required`` exits 0 when every required package imports;
``--all`` when the full core set (required + the optional packages ``make`` installs) imports;
``--network`` when PyPI can be reached (the Makefile never builds a venv offline).
"""
from __future__ import annotations

import importlib
import socket
import sys

REQUIRED = {"numpy": "everything", "pandas": "results", "numba": "fused backend",
            "scipy": "references, the command line", "sympy": "Jacobians, C++ and GPU-profile translation",
            "matplotlib": "figures and reports (the command line imports them)"}
OPTIONAL = {
    "jax": "diffrax, jax-handwritten, pallas", "diffrax": "diffrax", "equinox": "diffrax",
    "torch": "torch-handwritten, torchdiffeq, torchode", "torchdiffeq": "torchdiffeq",
    "torchode": "torchode", "cupy": "array backend on a GPU", "cupti": "launch counting (CUPTI)",
    "distributed": "run --cluster / --shards (Dask)",
}
#: What `make` installs into a venv (pyproject's dependencies): present = a complete environment.
CORE = ("numpy", "scipy", "sympy", "pandas", "matplotlib", "numba", "jax", "diffrax", "equinox",
        "torch", "torchdiffeq")


def missing(names) -> list[str]:
    out = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken install is missing too
            out.append(name)
    return out


def network(host: str = "pypi.org", timeout_s: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout_s).close()
        return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if argv == ["--required"]:
        return 1 if missing(REQUIRED) else 0
    if argv == ["--all"]:
        return 1 if missing(CORE) else 0
    if argv == ["--network"]:
        return 0 if network() else 1
    print("usage: python -m harness.packages --required | --all | --network", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
