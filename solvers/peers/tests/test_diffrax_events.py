"""diffrax's Event in a per-trajectory restart loop under vmap (issue 32): bounce counts exact and
times/states as the closed form, the Lorenz plane crossing (and SaveAt(ts)) as SciPy's, doses
landing exactly, in float32 and float64. Each case compiles its own jit(vmap(while_loop)) for
~5-10 s on a 2-core CPU: one case runs by default, the rest are marked slow."""
from __future__ import annotations

import numpy as np
import pytest

from solvers.tests.event_checks import check_bouncing_ball, check_doses, check_lorenz_plane

pytest.importorskip("diffrax")


def test_diffrax_doses_land_exactly_float32():
    check_doses("diffrax", "float32", n=8)


@pytest.mark.slow
def test_diffrax_doses_land_exactly_float64():
    check_doses("diffrax", "float64", n=8)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_diffrax_bouncing_ball_matches_closed_form(dtype):
    res = check_bouncing_ball("diffrax", dtype, n=8)
    assert (res.accepted > 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_diffrax_lorenz_plane_matches_scipy_with_100_saves(dtype):
    check_lorenz_plane("diffrax", dtype, n=16, saveat=tuple(np.linspace(0.0, 2.0, 100)))
