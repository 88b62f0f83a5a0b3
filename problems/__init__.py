"""The problem zoo: each ODE defined once, translated to every backend.

Public surface::

    from problems import get_problem, problem_names, Problem, reference
"""
from problems.base import VALID_DTYPES, ProblemBase, check_dtype, check_n
from problems.core import Invariant, Problem, Sweep
from problems.registry import PROBLEMS, get_problem, problem_names
from problems.reference import Reference, reference, subsample_indices

__all__ = [
    "PROBLEMS", "VALID_DTYPES", "Invariant", "Problem", "ProblemBase", "Reference", "Sweep", "check_dtype",
    "check_n", "get_problem", "problem_names", "reference", "subsample_indices",
]
