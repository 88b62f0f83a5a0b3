"""Lorenz-96 of any dimension d: the zoo's scalable problem (issue 15, the ``sizes`` suite).

    dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F,   i = 0..d-1, indices cyclic (mod d)

Lorenz, "Predictability: a problem partly solved" (ECMWF seminar, 1996). The ensemble sweeps the
forcing ``F = linspace(4, 8, N)``; every trajectory starts at ``x = F0`` (the default forcing, 8)
with ``x_0`` perturbed by ``+0.01``; t in [0, 1], float32, non-stiff.

Written once, in two forms generated from the same formula for a given d:

* the **component form** (``Problem.rhs``): ``x0, .., x{d-1} = u; F, = p; return (...)``, the
  zoo's universal convention, used by the fused kernel (its code generator), SymPy (Jacobian)
  and every backend that works on tuples of components;
* the **vectorised form** (``Problem.rhs_array``): ``(roll(x, -1) - roll(x, 2)) * roll(x, 1) - x + F``
  on an array whose axis 0 is the state, with ``roll`` from the injected namespace (NumPy,
  jax.numpy, torch, CuPy): what a JAX or PyTorch user writes for a 1024-state system, and what
  the array-style backends use (see docs/fairness.md). A test checks the two agree.

The component form's source is registered in ``linecache`` under a file name of its own, so
``inspect.getsource`` (the problem fingerprint, the CUDA code generator) sees it like any other.
"""
from __future__ import annotations

import functools
import linecache
import re

from problems.core import Problem, Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)

#: Registry names ``lorenz96-<d>``.
NAME_PATTERN = re.compile(r"lorenz96-([0-9]+)\Z")
MIN_DIM, MAX_DIM = 4, 4096
#: The default forcing (x starts there) and the ensemble's range of F.
F_DEFAULT, F_LO, F_HI = 8.0, 4.0, 8.0
PERTURBATION = 0.01
#: Reference solves keep (trajectories x d) bounded: SciPy at rtol 1e-12 takes ~50 ms a trajectory,
#: and a file of 512 x 1024 float64 would be 4 MB: at most 32 trajectories, 2048 numbers (16 KB).
REFERENCE_ENTRIES = 2048


def lorenz96_rhs_array(u, p, t):
    """The vectorised form: ``u`` has the state on axis 0 ((d,) or (d, N)); ``p = (F,)``."""
    (F,) = p
    return (m.roll(u, -1, 0) - m.roll(u, 2, 0)) * m.roll(u, 1, 0) - u + F


def component_source(d: int) -> str:
    """The component form for dimension ``d`` as Python source (one function)."""
    xs = [f"x{i}" for i in range(d)]
    terms = [f"(x{(i + 1) % d} - x{(i - 2) % d}) * x{(i - 1) % d} - x{i} + F" for i in range(d)]
    return (f"def lorenz96_rhs(u, p, t):\n"
            f"    {', '.join(xs)} = u\n"
            f"    F, = p\n"
            f"    return ({', '.join(terms)},)\n")


def _compile_component(d: int):
    src = component_source(d)
    filename = f"<problems.lorenz96 d={d}>"
    # inspect.getsource reads linecache; an entry whose mtime is None is never invalidated.
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    glb = {"__name__": __name__, "m": m}
    exec(compile(src, filename, "exec"), glb)
    return glb["lorenz96_rhs"]


def check_dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, int) or not MIN_DIM <= d <= MAX_DIM:
        raise ValueError(f"invalid Lorenz-96 dimension {d!r}: an integer in {MIN_DIM}..{MAX_DIM}")
    return d


@functools.lru_cache(maxsize=None)
def lorenz96(d: int) -> Problem:
    """The Lorenz-96 problem of dimension ``d`` (one object per d and process)."""
    d = check_dim(d)
    u0 = [F_DEFAULT] * d
    u0[0] += PERTURBATION
    return Problem(
        name=f"lorenz96-{d}",
        rhs=_compile_component(d),
        rhs_array=lorenz96_rhs_array,
        state_names=tuple(f"x{i}" for i in range(d)),
        param_names=("F",),
        u0=tuple(u0),
        params=(F_DEFAULT,),
        tspan=(0.0, 1.0),
        sweep=Sweep("F", F_LO, F_HI),
        stiff=False,
        default_dtype="float32",
        dt=1e-3,
        rtol=1e-6,
        atol=1e-6,
        reference_size=max(2, min(32, REFERENCE_ENTRIES // d)),
        citation="Lorenz, Predictability: a problem partly solved, ECMWF seminar (1996)",
        description=f"d = {d}, F = linspace({F_LO:g}, {F_HI:g}, N), x0 = F0 = {F_DEFAULT:g} "
                    f"with x_0 += {PERTURBATION:g}, t in [0, 1]",
    )


def from_name(name: str) -> Problem | None:
    """The problem for a registry name ``lorenz96-<d>``; None if ``name`` is not of that form."""
    match = NAME_PATTERN.match(name) if isinstance(name, str) else None
    return lorenz96(int(match.group(1))) if match else None
