"""The batched nonlinear solvers' algorithms, defined once for every backend that implements them.

Methods (``SolveSpec.method``), mode "adaptive" (iterate until converged):

* ``"newton"``: Newton-Raphson, full steps: solve ``J(x) dx = -F(x)``, ``x <- x + dx``.
* ``"trust-region"``: Powell's dogleg trust region on ``f = |F|^2 / 2`` (Nocedal & Wright,
  Numerical Optimization, Alg. 4.1 with the dogleg step; the method of SimpleNonlinearSolve's
  ``SimpleTrustRegion``): Newton step if it fits the radius, else the dogleg path between the
  Cauchy point and the Newton step cut at the radius; the step is accepted when
  ``rho = actual / predicted reduction > ETA``, the radius shrinks to ``SHRINK * |p|`` when
  ``rho < RHO_LOW`` and doubles (up to ``MAX_RADIUS``) when ``rho > RHO_HIGH`` and the step
  reached the radius. The initial radius is ``spec.step`` (the problem's ``dt0``: 1).

Both use the convergence test of problems.nonlinear_core (``CONVERGENCE``, optimistix.Newton's
Cauchy test) and a general dense solve of ``J dx = -F`` (Gaussian elimination with partial
pivoting in the fused kernel, ``xp.linalg.solve`` / LAPACK in array code): no backend assumes the
Jacobian's sparsity. A system stops with a status (solvers.base.Status): SUCCESS, NOT_CONVERGED
(``max_steps`` iterations, accepted + rejected), NONFINITE (an iterate or residual overflowed),
FAILED (an exactly singular Jacobian: a zero pivot).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from problems.nonlinear_core import CONVERGENCE

NONLINEAR_METHODS = ("newton", "trust-region")


@dataclass(frozen=True)
class TrustRegionParams:
    eta: float = 1e-4        # accept a step when rho > eta
    rho_low: float = 0.25    # shrink the radius below this ratio ...
    shrink: float = 0.25     # ... to shrink * |p|
    rho_high: float = 0.75   # expand above this ratio when the step reached the radius ...
    expand: float = 2.0      # ... to expand * radius
    max_radius: float = 1e4


TRUST_REGION = TrustRegionParams()


def method_settings(method: str, radius0: float) -> dict:
    """What every backend stores about the algorithm of ``method``."""
    out = {"algorithm": method, "convergence": CONVERGENCE, "iteration_cap": "max_steps (accepted + rejected steps)"}
    if method == "trust-region":
        out.update(trust_region="Powell dogleg on |F|^2/2", initial_radius=radius0, **asdict(TRUST_REGION))
    else:
        out["step"] = "full Newton step, no globalisation"
    return out
