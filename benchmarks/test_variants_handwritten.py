"""The hand-written solvers' timing script (benchmarks.variants.handwritten): argument checking and one cell (no timing is asserted)."""
from __future__ import annotations

import math

import pytest

from benchmarks.variants import handwritten as bench


@pytest.mark.parametrize("argv,message", [
    (["--sizes", "0"], "--sizes"),
    (["--threads", "0"], "--threads"),
    (["--only", "nope"], "unknown backend"),
    (["--modes", "sometimes"], "invalid choice"),
])
def test_bad_arguments_are_refused(argv, message, refused):
    assert message in refused(bench.main, argv)


def test_one_cell_reports_steps_accuracy_and_a_time():
    row = bench.run_cell("jax-handwritten vmap", "jax-handwritten", "", "tsit5", "fixed", 8, budget=0.5)
    assert row.note == "" and row.first is not None and 1 <= len(row.times) <= 3
    assert row.steps_total == 8 * 1000 and row.steps_max == 1000
    assert row.rel_err < 1e-5
    assert row.ns_per_traj_step == pytest.approx(min(row.times) / 8000 * 1e9)
    assert "jax-handwritten vmap" in bench.format_table([row])


def test_unsupported_cell_becomes_a_row_with_the_reason():
    row = bench.run_cell("torchdiffeq", "torchdiffeq", "", "tsit5", "fixed", 8, budget=0.5)
    assert row.note.startswith(("unsupported:", "unavailable:")) and not row.times
    assert math.isnan(row.ns_per_traj_step)
    assert "torchdiffeq" in bench.format_table([row])
