"""Solver backends behind one interface (see solvers.base), the shared tableaus, and the public
Python API (solvers.api): ``solve_ensemble`` with per-trajectory initial states and parameters on
any backend, and the input helpers ``parameter_grid`` and ``random_initial_conditions``."""
from solvers.api import EnsembleSolution, parameter_grid, random_initial_conditions, solve_ensemble
from solvers.base import Backend, Prepared, SolveResult, SolveSpec, Status, UnsupportedError
from solvers.registry import backend_names, get_backend

__all__ = ["Backend", "EnsembleSolution", "Prepared", "SolveResult", "SolveSpec", "Status", "UnsupportedError",
           "backend_names", "get_backend", "parameter_grid", "random_initial_conditions", "solve_ensemble"]
