"""The problem zoo: each ODE defined once, translated to every backend.

Public surface::

    from problems import get_problem, problem_names, Problem, reference
"""
from problems.core import VALID_DTYPES, Invariant, Problem, Sweep, check_dtype, check_n
from problems.registry import PROBLEMS, get_problem, problem_names
from problems.reference import Reference, reference, subsample_indices

__all__ = [
    "PROBLEMS", "VALID_DTYPES", "Invariant", "Problem", "Reference", "Sweep", "check_dtype",
    "check_n", "get_problem", "problem_names", "reference", "subsample_indices",
]
