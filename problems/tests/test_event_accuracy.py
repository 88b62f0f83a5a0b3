"""The event kind's accuracy measure (problems.events_core.EventAccuracy): which count
differences are held against a solver."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from problems.events_core import AMBIGUOUS_WINDOW, EventAccuracy
from problems.registry import get_problem


def _measure(dtype="float32", n=8):
    prob = get_problem("bouncing_ball")
    spec = SimpleNamespace(ensemble=lambda: prob.ensemble(n, dtype), saveat=None, dtype=dtype)
    return prob, EventAccuracy(prob, spec)


def _result_like(ref):
    return SimpleNamespace(events=ref.n_events.copy(), event_t=ref.event_t.copy(), u_final=ref.u_final.copy(),
                           saved=None)


def test_the_reference_itself_has_no_count_errors():
    _, acc = _measure()
    res = _result_like(acc.ref())
    assert acc.columns(res)["event_count_errors"] == 0
    assert acc.accuracy(res)[0] == 0


def test_an_extra_event_just_before_the_end_is_ambiguous_one_far_from_it_is_an_error():
    prob, acc = _measure()
    ref = acc.ref()
    t1 = prob.tspan[1]
    window = AMBIGUOUS_WINDOW["float32"] * (t1 - prob.tspan[0])
    for shift, errors in ((0.1 * window, 0), (10 * window, 1)):
        res = _result_like(ref)
        k = int(res.events[0])
        res.event_t[0, k] = t1 - shift   # one bounce more, which the reference has after the end
        res.events[0] += 1
        assert acc.columns(res)["event_count_errors"] == errors, shift


def test_a_missing_event_is_an_error():
    _, acc = _measure()
    res = _result_like(acc.ref())
    res.events[3] -= 1
    assert acc.columns(res)["event_count_errors"] == 1
