"""Look problems up by name, and register new ones.

``register(problem)`` adds a problem at run time after checking its right-hand side
(problems.rhs_check). ``$ODEBENCH_PROBLEMS`` names Python files or modules (separated by
``os.pathsep``) that register problems when imported: the registry imports them on first look-up,
in every process (the harness's worker processes inherit the variable), so
``ODEBENCH_PROBLEMS=vdp.py python -m harness run --problem vdp`` runs a problem defined outside
the repository.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from problems.base import ProblemBase
from problems.bouncing_ball import BOUNCING_BALL
from problems.crn_sigmagen import CRN_SIGMAGEN, CRN_SIGMAGEN_SHORT
from problems.fitzhugh_nagumo import FITZHUGH_NAGUMO
from problems.generalized_rosenbrock import GENERALIZED_ROSENBROCK
from problems.linear_sde import LINEAR_SDE
from problems.lorenz import LORENZ, LORENZ_MPI
from problems.lorenz_plane import LORENZ_PLANE
from problems import lorenz96
from problems.pk_doses import PK_DOSES
from problems.prothero_robinson import PROTHERO_ROBINSON
from problems.pso_problems import PSO_FITZHUGH_NAGUMO, PSO_ROSENBROCK
from problems.rhs_check import check_problem
from problems.robertson import ROBERTSON
from problems.sir import SIR

PROBLEMS: dict[str, ProblemBase] = {p.name: p for p in (LORENZ, ROBERTSON, SIR, PROTHERO_ROBINSON)}
#: SDE problems (problems.sde_core.SDEProblem, kind "sde"), served by backends whose kinds list it.
PROBLEMS.update({p.name: p for p in (LINEAR_SDE, CRN_SIGMAGEN, CRN_SIGMAGEN_SHORT)})
PROBLEMS[FITZHUGH_NAGUMO.name] = FITZHUGH_NAGUMO
#: Particle-swarm problems (problems.pso_core.PSOProblem, kind "pso").
PROBLEMS.update({p.name: p for p in (PSO_ROSENBROCK, PSO_FITZHUGH_NAGUMO)})
#: The paper's multi-node Lorenz run (t in [0, 10], dt0 = 0.1): the scaling suite (harness.run.shards).
PROBLEMS[LORENZ_MPI.name] = LORENZ_MPI
#: Batched nonlinear systems (problems.nonlinear_core.NonlinearProblem, kind "nonlinear").
PROBLEMS[GENERALIZED_ROSENBROCK.name] = GENERALIZED_ROSENBROCK
#: ODEs with per-trajectory events (problems.events_core.EventProblem, kind "event").
PROBLEMS.update({p.name: p for p in (BOUNCING_BALL, LORENZ_PLANE, PK_DOSES)})


#: Families of problems made on demand from their name (``lorenz96-<d>``): not in PROBLEMS, so
#: loops over the zoo (``problem_names()``) stay finite; ``is_problem_name`` accepts them.
FAMILIES = {"lorenz96-<d>": lorenz96.from_name}


#: Environment variable: files or modules that register problems (see module docstring).
PLUGINS_ENV = "ODEBENCH_PROBLEMS"
_loaded_plugins: set[str] = set()
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")


class ProblemPluginError(Exception):
    """A file or module named in ``$ODEBENCH_PROBLEMS`` could not be imported (one-line message)."""


def register(problem: ProblemBase) -> ProblemBase:
    """Add ``problem`` to the registry after checking its right-hand side; returns the
    registered object. Registering an identical definition again is a no-op (a module imported
    twice); a different definition under a registered name is a ValueError."""
    name = problem.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"invalid problem name {name!r}: letters, digits, '_' and '-', starting with a letter")
    existing = PROBLEMS.get(name)
    if existing is not None:
        if existing is problem or existing.fingerprint() == problem.fingerprint():
            return existing
        raise ValueError(f"problem {name!r} is already registered with a different definition: choose another name")
    check_problem(problem)
    PROBLEMS[name] = problem
    return problem


def _import_plugin(entry: str) -> None:
    if entry.endswith(".py") or os.sep in entry or "/" in entry:
        path = Path(entry).expanduser().resolve()
        if not path.is_file():
            raise ProblemPluginError(f"{PLUGINS_ENV}: no such file {entry!r}")
        name = "odebench_problems_" + re.sub(r"\W", "_", path.stem)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(entry)


def load_plugins() -> None:
    """Import every file or module named in ``$ODEBENCH_PROBLEMS`` (each once per process)."""
    for entry in filter(None, os.environ.get(PLUGINS_ENV, "").split(os.pathsep)):
        if entry in _loaded_plugins:
            continue
        _loaded_plugins.add(entry)
        try:
            _import_plugin(entry.strip())
        except ProblemPluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken plugin is one clear line, not a traceback
            msg = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ProblemPluginError(f"cannot load problems from {entry!r} ({PLUGINS_ENV}): {msg}") from None


def problem_names() -> list[str]:
    load_plugins()
    return list(PROBLEMS)


def problem_choices() -> list[str]:
    """Every valid name, families as patterns (for error messages)."""
    load_plugins()
    return list(PROBLEMS) + list(FAMILIES)


def is_problem_name(name: str) -> bool:
    """Whether ``name`` names a problem of the zoo or of a family (``lorenz96-64``)."""
    try:
        get_problem(name)
    except ValueError:
        return False
    return True


def get_problem(name: str) -> ProblemBase:
    """The problem called ``name``; an unknown name raises ``ValueError`` listing the choices."""
    try:
        return PROBLEMS[name]
    except (KeyError, TypeError):
        pass
    load_plugins()
    if isinstance(name, str) and name in PROBLEMS:
        return PROBLEMS[name]
    for make in FAMILIES.values():
        prob = make(name)
        if prob is not None:
            return prob
    raise ValueError(f"unknown problem {name!r}: choose one of {', '.join(problem_choices())}")
