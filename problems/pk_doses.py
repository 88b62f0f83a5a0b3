"""One-compartment pharmacokinetics with periodic doses: a' = -k a, a dose D added at t = 1..9
(``tstops``, a discrete callback), the first dose in u0. The ensemble sweeps the elimination
rate k. Reference in closed form: a(t) = D * sum over doses at tau <= t of exp(-k (t - tau))."""
import numpy as np

from problems.core import Sweep, m  # noqa: F401  (m: math namespace, rebound per backend)
from problems.events_core import EventProblem

DOSE_TIMES = tuple(float(t) for t in range(1, 10))


def pk_rhs(u, p, t):
    (a,) = u
    k, dose = p
    return (-k * a,)


def pk_dose(u, p, t):
    (a,) = u
    k, dose = p
    return (a + dose,)


def pk_exact(u0, p, t1, saveat, max_events):
    """Closed form: (event_t (n, K), n_events, u(t1), saved or None). A save at a dose time
    holds the state before the dose (solvers save when the step lands, then dose)."""
    a0, k, dose = u0[:, 0], p[:, 0], p[:, 1]
    taus = np.asarray(DOSE_TIMES)
    n = len(a0)

    def state(t, after):
        inc = (taus < t) | ((taus == t) & after)
        total = a0 * np.exp(-k * t) + (dose[:, None] * np.exp(-k[:, None] * (t - taus[None, :])) * inc[None, :]).sum(axis=1)
        return total[:, None]

    hits = taus[taus <= t1]
    ev_t = np.full((n, max_events), np.nan)
    m_ = min(len(hits), max_events)
    ev_t[:, :m_] = hits[:m_]
    n_ev = np.full(n, len(hits), dtype=np.int64)
    saved = None if saveat is None else np.stack([state(float(s), False) for s in saveat], axis=1)
    return ev_t, n_ev, state(float(t1), True), saved


PK_DOSES = EventProblem(
    name="pk_doses",
    rhs=pk_rhs,
    state_names=("a",),
    param_names=("k", "dose"),
    u0=(100.0,),
    params=(0.5, 100.0),
    tspan=(0.0, 10.0),
    sweep=Sweep("k", 0.1, 1.0),
    default_dtype="float32",
    dt0=1e-3,
    rtol=1e-6,
    atol=1e-6,
    tstops=DOSE_TIMES,
    discrete_affect=pk_dose,
    max_events=16,
    exact=pk_exact,
    citation="one-compartment model with repeated bolus doses (e.g. Gabrielsson & Weiner, PK/PD "
             "Data Analysis); DiffEqGPU GPUDiscreteCallback + tstops",
    description="a(0) = 100, dose 100 at t = 1..9, k = linspace(0.1, 1, N), t in [0, 10]",
)
