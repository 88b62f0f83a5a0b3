"""The suite of a problem that has none: ``python -m harness run --problem NAME`` without ``--suite``.

For each named problem, every backend whose manifest (solvers.registry.MANIFEST) serves the
problem's kind gets one entry per mode: fixed step where the problem has a dt, adaptive
always, with the backend's first method in ``PREFERENCE`` (stiff methods for a stiff problem,
explicit ones otherwise) that has that mode, over the short N sweep ``N_SWEEP``, at the problem's
own dt, tolerances and dtype. The result is a suite as a TOML file would give it (the same
validation, ``harness.run.suites``); its name is ``problem-NAME`` (``DEFAULT_PREFIX`` + the
comma-joined problem names), which is what a resumed run loads again.
"""
from __future__ import annotations

from typing import Any

from problems.registry import get_problem
from problems.kinds import kind_of
from solvers.base import Backend
from solvers.registry import MANIFEST

#: The pseudo-suite name prefix: ``problem:vdp`` (or ``problem:vdp,lorenz``).
DEFAULT_PREFIX = "problem:"
#: A short sweep: enough N for the headline's "smallest and largest" and a scaling slope.
N_SWEEP = [8, 64, 512]
#: Methods in order of preference (the problem's stiffness filters them first).
PREFERENCE = ("tsit5", "dopri5", "dop853", "rk45", "rk4", "rk4_38", "em",
              "rodas5p", "rosenbrock23", "kvaerno5", "rodas4", "radau", "lsoda", "bdf",
              "newton", "hybr", "trust-region", "pso")
TIMING = {"repeats": 3, "warmups": 1, "min_repeats": 1, "repeat_budget_s": 1.0, "cell_timeout_s": 180}


def is_default_suite(name: str) -> bool:
    return str(name).startswith(DEFAULT_PREFIX)


def default_suite_name(problems: list[str]) -> str:
    return DEFAULT_PREFIX + ",".join(problems)


def _pick(methods: dict[str, tuple[str, ...]], mode: str, stiff: bool) -> str | None:
    fit = [m for m, modes in methods.items() if mode in modes and (m in Backend.stiff_methods) == stiff]
    fit.sort(key=lambda m: (PREFERENCE.index(m) if m in PREFERENCE else len(PREFERENCE), m))
    return fit[0] if fit else None


def problem_entries(name: str) -> list[dict[str, Any]]:
    """The suite entries (as TOML tables) that run problem ``name`` on every backend that serves it."""
    prob = get_problem(name)
    kind = kind_of(prob).name
    stiff = bool(getattr(prob, "stiff", False))
    modes = (["fixed"] if getattr(prob, "dt", None) is not None else []) + ["adaptive"]
    entries = []
    for backend, manifest in MANIFEST.items():
        methods = manifest["kinds"].get(kind)
        if not methods:
            continue
        for mode in modes:
            method = _pick(methods, mode, stiff)
            if method is not None:
                entries.append({"problem": name, "backends": [backend], "methods": [method], "modes": [mode],
                                "n": list(N_SWEEP)})
    return entries


def suite_data(name: str, device: str = "cpu") -> dict[str, Any]:
    """The TOML-equivalent data of the default suite called ``name`` (``problem:A,B``)."""
    problems = [p for p in name[len(DEFAULT_PREFIX):].split(",") if p]
    entries = [e for p in problems for e in problem_entries(p)]
    return {"description": f"default cells of {', '.join(problems)}: every backend that serves it, "
                           f"its own dt, tolerances and dtype, N = {', '.join(map(str, N_SWEEP))}",
            "device": device, **TIMING, "entries": entries}
