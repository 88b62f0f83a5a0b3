"""The generalized Rosenbrock system: NonlinearSolve.jl's GPU-kernel example (Pal et al.,
arXiv:2403.16341, sec. 3.3; SciML tutorial "Accelerated Rootfinding on GPUs").

F_1 = a - x_1, F_i = b (x_i - x_{i-1}^2) for i = 2..d, with a = 1, b = 10, d = 10: the unique
root is x = (1, ..., 1). Solved from many random starting points (their tutorial: 1024 starts in
float32). Starts here are uniform in [0, 1)^10 (a seeded stream, problems.nonlinear_core).

The Jacobian is lower bidiagonal; the solvers treat it as a general dense 10 x 10 matrix.
Plain Newton is exact after d iterations in exact arithmetic (component i is exact after i
steps), so every start converges in about d + 1 iterations unless rounding or overflow of the
intermediate iterates intervenes: the per-system status reports it.
"""
from __future__ import annotations

from problems.core import m  # noqa: F401  (the namespace the definition uses; rebound per backend)
from problems.nonlinear_core import NonlinearProblem

DIM = 10


def generalized_rosenbrock_residual(x, p):
    a, b = p
    return (a - x[0],) + tuple(b * (x[i] - x[i - 1] * x[i - 1]) for i in range(1, len(x)))


GENERALIZED_ROSENBROCK = NonlinearProblem(
    name="generalized_rosenbrock",
    residual=generalized_rosenbrock_residual,
    state_names=tuple(f"x{i + 1}" for i in range(DIM)),
    param_names=("a", "b"),
    params=(1.0, 10.0),
    root=(1.0,) * DIM,
    start_box=(0.0, 1.0),
    default_dtype="float32",
    rtol=1e-5,
    atol=1e-5,
    citation="Pal et al., NonlinearSolve.jl (arXiv:2403.16341), sec. 3.3; SciML GPU rootfinding tutorial",
    description="generalized Rosenbrock, d = 10, starts uniform in [0, 1)^10, root (1, ..., 1)",
)
