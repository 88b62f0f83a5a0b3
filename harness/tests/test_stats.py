"""Noise statistics of the cell table on hand-made samples: quartiles, spread, the noisy flag."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.report.sections.noise import report_section
from harness.results.cells import NOISY_SPREAD, cell_table


def _rows(backend, times, threads=2, cpu=1.0, status="ok"):
    return [{"problem": "lorenz", "backend": backend, "variant": "", "method": "tsit5", "mode": "fixed",
             "dtype": "float32", "n": 8, "device": "cpu", "dt": 1e-3, "rtol": float("nan"),
             "atol": float("nan"), "threads": threads, "status": status, "time_s": t, "cpu_util": cpu,
             "reason": "" if status == "ok" else "broke"}
            for t in times]


def test_cell_table_statistics_of_known_samples():
    cells = cell_table(pd.DataFrame(_rows("fused", [4.0, 1.0, 3.0, 2.0, 5.0])))
    r = cells.iloc[0]
    assert (r["repeats"], r["time_min_s"], r["time_q1_s"], r["time_median_s"], r["time_q3_s"],
            r["time_iqr_s"], r["time_max_s"], r["time_spread"]) == (5, 1.0, 2.0, 3.0, 4.0, 2.0, 5.0, 5.0)
    assert r["noisy"] and r["kind"] == "ode"
    quiet = cell_table(pd.DataFrame(_rows("fused", [1.0, NOISY_SPREAD]))).iloc[0]
    assert not quiet["noisy"]  # the flag is strictly above 1.5x


def test_cell_table_groups_repeats_by_key_including_missing_values():
    df = pd.DataFrame(_rows("fused", [1.0, 2.0, 3.0], cpu=1.9) + _rows("fused", [5.0, 5.0], threads=1)
                      + _rows("diffrax", [9.0], status="error"))
    df["threads"] = df["threads"].astype("Int64")
    cells = cell_table(df)
    timed = cells[cells["repeats"] > 0].set_index("threads")
    assert len(timed) == 2  # the error row is not a timed cell
    assert timed.loc[2, "time_median_s"] == 2.0 and timed.loc[2, "time_spread"] == 3.0 and timed.loc[2, "noisy"]
    assert timed.loc[1, "repeats"] == 2 and not timed.loc[1, "noisy"]
    assert timed.loc[2, "cpu_util"] == pytest.approx(1.9)

    old = pd.DataFrame(_rows("fused", [1.0, 1.1])).drop(columns=["threads", "cpu_util"])
    cells = cell_table(old)  # a run from before the threads and cpu_util columns
    assert len(cells) == 1 and math.isnan(cells.loc[0, "cpu_util"]) and cells.loc[0, "repeats"] == 2


def test_report_section_lists_noisy_cells():
    cells = cell_table(pd.DataFrame(_rows("fused", [1.0, 2.0, 3.0]) + _rows("array", [1.0, 1.0], threads=1)))
    text = report_section(cells)
    assert "1 cells (50%) vary more than 1.5x" in text and "| lorenz | fused |" in text
    assert "| lorenz | array |" not in text
    assert report_section(cells.iloc[0:0]) is None
