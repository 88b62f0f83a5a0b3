"""The problem zoo: each ODE defined once, translated to every backend.

Public surface::

    from problems import get_problem, problem_names, Problem, reference
    from problems import register, EnsembleInputs, parameter_grid, random_initial_conditions
"""
from problems.base import VALID_DTYPES, ProblemBase, check_dtype, check_n
from problems.core import Invariant, Problem, Sweep, m
from problems.inputs import EnsembleInputs, parameter_grid, random_initial_conditions
from problems.registry import PROBLEMS, get_problem, problem_names, register
from problems.reference import Reference, reference, subsample_indices

__all__ = [
    "PROBLEMS", "VALID_DTYPES", "EnsembleInputs", "Invariant", "Problem", "ProblemBase", "Reference", "Sweep",
    "check_dtype", "check_n", "get_problem", "m", "parameter_grid", "problem_names", "random_initial_conditions",
    "reference", "register", "subsample_indices",
]
