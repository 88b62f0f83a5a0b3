"""An SDE cell through the kind-agnostic runner: rows carry the kind's own accuracy measure."""
import math

from harness.measure.execute import execute_cell
from harness.measure.execute import Cell
from solvers.base import SolveSpec


def _cell(backend, problem="linear_sde", n=512, **kw):
    return Cell(backend=backend, spec=SolveSpec(problem, "em", "fixed", "float32", n, **kw),
                repeats=1, warmups=0, timeout_s=120)


def test_sde_cell_rows_carry_the_weak_error():
    rows = execute_cell(_cell("fused"))
    assert [r["status"] for r in rows] == ["ok"]
    assert math.isfinite(rows[0]["max_rel_err"]) and rows[0]["max_rel_err"] < 0.5
    assert rows[0]["reason"] == ""  # the weak check passed (5 sigma + EM bias)


def test_ode_backend_gives_an_unsupported_row_for_an_sde():
    rows = execute_cell(_cell("torchdiffeq"))
    assert len(rows) == 1 and rows[0]["status"] in ("unsupported", "unavailable")


def test_crn_cell_compares_with_the_same_increments_path():
    rows = execute_cell(_cell("fused", "crn_sigmagen_short", 6720))
    assert rows[0]["status"] == "ok" and rows[0]["max_rel_err"] < 1e-3, rows[0]
