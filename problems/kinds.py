"""Workload kinds and their policies: the one place that answers "what kind is this problem?".

A kind (ODE ensembles, SDE ensembles, batched nonlinear systems, particle swarms) is a class of
problem with its own definition module (``problems.core``, ``sde_core``, ``nonlinear_core``,
``pso_core``). The harness never branches on a kind's name: it asks the kind's policy here.

Adding a kind: a definition module whose problem class (a problems.base.ProblemBase) sets
``kind = "<name>"``, one entry in ``KINDS`` below, one module per backend that serves it
(``solvers.base.Backend.kinds``) and one report section (``harness.report.sections.SECTIONS``);
docs/adding-a-kind.md walks through it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from problems import events_core, sde_core
from problems.events_core import EventProblem
from problems.nonlinear_core import NonlinearProblem
from problems.pso_core import PSOProblem
from problems.reference import ode_reference
from problems.registry import get_problem
from problems.sde_core import SDEProblem


@dataclass(frozen=True)
class Kind:
    """What the harness needs to know about a workload kind.

    accuracy_bounded: the row's error is checked against a correctness bound (False where the
        error is a result, e.g. a swarm's best objective).
    failures_are_results: trajectories or systems that fail are a finding of the method (Newton
        from a bad start), not a harness error.
    shardable: a cell may be split over workers bit-identically (per-trajectory random streams
        keyed by the global index would need re-keying, so SDEs are not).
    gpu_profiled: the static GPU evidence profiles this kind's fused kernels.
    reference: (problem, spec) -> the accuracy measure of a solve of spec (``.accuracy(result)``
        or, for ODEs, a problems.reference.Reference).
    violation: (results row) -> why an ok row fails this kind's own accuracy bound, or None;
        None here: the ODE bounds of harness.measure.accuracy apply.
    explicit_inputs: a solve may carry per-trajectory initial states and parameters
        (problems.inputs.EnsembleInputs) in place of the problem's own ensemble, and the
        kind's reference integrates them.
    headline: the report's headline (harness.results.headline) may compare the fused kernel with
        the libraries on a problem of this kind, where the run has no Lorenz.
    """
    name: str
    reference: Callable[[Any, Any], Any]
    accuracy_bounded: bool = True
    failures_are_results: bool = False
    shardable: bool = False
    gpu_profiled: bool = False
    violation: Callable[[dict], str | None] | None = None
    explicit_inputs: bool = False
    headline: bool = False


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("ode", ode_reference, shardable=True, gpu_profiled=True, explicit_inputs=True,
         headline=True),
    Kind("sde", SDEProblem.reference_for, violation=sde_core.violation),
    Kind("nonlinear", NonlinearProblem.reference_for, failures_are_results=True),
    Kind("pso", PSOProblem.reference_for, accuracy_bounded=False),
    Kind("event", EventProblem.reference_for, violation=events_core.violation),
)}

#: The kind of a name this checkout does not know (rows of an older run, a fake test problem).
DEFAULT_KIND = KINDS["ode"]


def kind_of(problem: Any) -> Kind:
    """The Kind of a problem object or problem name; ODE for a name the registry does not know."""
    if isinstance(problem, str) or problem is None:
        try:
            problem = get_problem(str(problem))
        except ValueError:
            return DEFAULT_KIND
    return KINDS[getattr(problem, "kind", "ode")]


def reference_for(spec: Any) -> Any:
    """The accuracy measure of a solve of ``spec`` (a solvers.base.SolveSpec), by its kind."""
    return kind_of(spec.prob).reference(spec.prob, spec)
