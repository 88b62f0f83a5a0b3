"""Solver backends behind one interface (see solvers.base), and the shared tableaus."""
from solvers.base import Backend, Prepared, SolveResult, SolveSpec, Status, UnsupportedError
from solvers.registry import backend_names, get_backend

__all__ = ["Backend", "Prepared", "SolveResult", "SolveSpec", "Status", "UnsupportedError",
           "backend_names", "get_backend"]
