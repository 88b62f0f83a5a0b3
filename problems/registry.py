"""Look problems up by name."""
from __future__ import annotations

from problems.base import ProblemBase
from problems.crn_sigmagen import CRN_SIGMAGEN, CRN_SIGMAGEN_SHORT
from problems.fitzhugh_nagumo import FITZHUGH_NAGUMO
from problems.generalized_rosenbrock import GENERALIZED_ROSENBROCK
from problems.linear_sde import LINEAR_SDE
from problems.lorenz import LORENZ, LORENZ_MPI
from problems import lorenz96
from problems.prothero_robinson import PROTHERO_ROBINSON
from problems.pso_problems import PSO_FITZHUGH_NAGUMO, PSO_ROSENBROCK
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


#: Families of problems made on demand from their name (``lorenz96-<d>``): not in PROBLEMS, so
#: loops over the zoo (``problem_names()``) stay finite; ``is_problem_name`` accepts them.
FAMILIES = {"lorenz96-<d>": lorenz96.from_name}


def problem_names() -> list[str]:
    return list(PROBLEMS)


def problem_choices() -> list[str]:
    """Every valid name, families as patterns (for error messages)."""
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
    for make in FAMILIES.values():
        prob = make(name)
        if prob is not None:
            return prob
    raise ValueError(f"unknown problem {name!r}: choose one of {', '.join(problem_choices())}")
