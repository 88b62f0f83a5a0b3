"""The sizes suite (issue 15): it loads with lorenz96-<d> problems, its report section and README
paragraph are computed from the rows (a synthetic table here: no timing is asserted)."""
import pandas as pd

from harness.report.sections import sizes as sizes_report
from harness.results.cells import cell_table
from harness.run.suites import load_suite


def test_suite_loads_lorenz96_family():
    cells = load_suite("sizes").cells
    dims = {c.spec.prob.n_states for c in cells}
    assert {4, 1024} <= dims and all(c.spec.problem.startswith("lorenz96-") for c in cells)
    assert all(c.spec.n * c.spec.prob.n_states <= 2**19 for c in cells)  # the bound its comments state


def _rows(times):
    rows = []
    for (d, n, backend, variant), t in times.items():
        for rep in range(2):
            rows.append(dict(problem=f"lorenz96-{d}", backend=backend, variant=variant, mode="fixed",
                             n=n, status="ok", time_s=t, steps_mean=1000.0, max_scaled_err=1.0,
                             repeat=rep))
    return pd.DataFrame(rows)


def test_crossover_is_read_from_the_data(tmp_path):
    df = _rows({(4, 8, "fused", ""): 1.0, (4, 8, "diffrax", "batched"): 3.0,
                (64, 8, "fused", ""): 1.0, (64, 8, "diffrax", "batched"): 0.5,
                (1024, 8, "fused", ""): 2.0, (1024, 8, "diffrax", "batched"): 0.5})
    w = sizes_report.winners(sizes_report.summary(cell_table(df)))
    cross, text = sizes_report.crossover(w, "fixed")
    assert cross == 64 and "from d = 64" in text
    md = sizes_report.report_section(tmp_path, cell_table(df))
    assert "| fixed | 4 | 8 | fused | 3x |" in md
    assert (tmp_path / "figures" / "sizes_winner.png").is_file()
    assert (tmp_path / "figures" / "sizes_per_state_step.csv").is_file()
    assert sizes_report.report_section(tmp_path, cell_table(df.assign(problem="lorenz"))) is None


def test_no_crossover_is_said(tmp_path):
    df = _rows({(4, 8, "fused", ""): 1.0, (4, 8, "array", ""): 3.0,
                (1024, 8, "fused", ""): 1.0, (1024, 8, "array", ""): 2.0})
    w = sizes_report.winners(sizes_report.summary(cell_table(df)))
    cross, text = sizes_report.crossover(w, "fixed")
    assert cross is None and "fastest at every d measured up to 1024" in text


def test_gpu_profile_table_and_first_spill():
    # the committed static profile (results/gpu-sizes-sm_90): the unrolled d = 4 kernel fits
    d = sizes_report.first_spill_d()
    assert d is None or d > 4
    lines = sizes_report.gpu_lines()
    assert not lines or lines[2].startswith("| d | mode | layout | registers")
