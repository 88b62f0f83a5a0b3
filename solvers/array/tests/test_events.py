"""The array replica's events (issue 32): bounce counts exact and times/states as the closed form,
the Lorenz plane crossing as SciPy's, doses landing exactly, in float32 and float64; the step is
shared, so every event of any trajectory cuts it."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.tests.event_checks import (check_bouncing_ball, check_doses, check_lorenz_plane, event_spec,
                                        saves_around_doses)
from solvers.peers.tests.helpers import solve

DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_bouncing_ball_matches_closed_form(dtype):
    res = check_bouncing_ball("array", dtype, n=16, saveat=(0.5, 1.5, 2.5))
    assert res.notes["step_scope"] == "shared" and len(set(res.accepted.tolist())) == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_lorenz_plane_matches_scipy_with_100_saves(dtype):
    check_lorenz_plane("array", dtype, n=16, saveat=tuple(np.linspace(0.0, 2.0, 100)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_doses_land_exactly(dtype):
    check_doses("array", dtype, n=16, saveat=saves_around_doses(dtype))


def test_array_events_of_any_trajectory_cut_the_shared_step():
    one = solve("array", event_spec("array", "bouncing_ball", "float64", 1))
    many = solve("array", event_spec("array", "bouncing_ball", "float64", 16))
    # the first bounce is shared (same drop height); the later ones differ (restitution e):
    # every distinct event time of any ball ends a shared step
    distinct = np.unique(many.event_t[~np.isnan(many.event_t)]).size
    assert distinct > 16
    assert many.accepted[0] >= distinct > one.accepted[0]
