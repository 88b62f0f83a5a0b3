"""Noise statistics on hand-made samples: quartiles, spread, the noisy flag, speedup ranges."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.results.stats import NOISY_SPREAD, cell_stats, format_speedup, report_section, sample_stats, speedup


def test_sample_stats_of_known_samples():
    s = sample_stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s == {"count": 5, "min": 1.0, "q1": 2.0, "median": 3.0, "q3": 4.0, "iqr": 2.0,
                 "max": 5.0, "spread": 5.0, "noisy": True}
    quiet = sample_stats([1.0, 1.1, 1.2, float("nan")])  # NaN is ignored
    assert quiet["count"] == 3 and quiet["spread"] == pytest.approx(1.2) and not quiet["noisy"]
    assert sample_stats([1.0, NOISY_SPREAD])["noisy"] is False  # the flag is strictly above 1.5x
    empty = sample_stats([])
    assert empty["count"] == 0 and math.isnan(empty["median"]) and empty["noisy"] is False


def test_speedup_is_the_ratio_of_medians_with_its_bracket():
    fused, peer = [1.0, 1.0, 2.0], [10.0, 12.0, 20.0]
    s = speedup(peer, fused)
    assert s == {"median": 12.0, "min": 10.0, "lo": 5.0, "hi": 20.0}
    assert format_speedup(s) == "12x (5-20)"
    assert format_speedup(speedup([], fused)) == "n/a"


def _rows(backend, times, threads=2, cpu=1.0, status="ok"):
    return [{"problem": "lorenz", "backend": backend, "variant": "", "method": "tsit5", "mode": "fixed",
             "dtype": "float32", "n": 8, "device": "cpu", "dt": 1e-3, "rtol": float("nan"),
             "atol": float("nan"), "threads": threads, "status": status, "time_s": t, "cpu_util": cpu}
            for t in times]


def test_cell_stats_groups_repeats_by_key_including_missing_values():
    df = pd.DataFrame(_rows("fused", [1.0, 2.0, 3.0], cpu=1.9) + _rows("fused", [5.0, 5.0], threads=1)
                      + _rows("diffrax", [9.0], status="error"))
    df["threads"] = df["threads"].astype("Int64")
    st = cell_stats(df).set_index("threads")
    assert len(st) == 2  # the error row is not a timed cell
    assert st.loc[2, "time_median"] == 2.0 and st.loc[2, "time_spread"] == 3.0 and st.loc[2, "time_noisy"]
    assert st.loc[1, "time_count"] == 2 and not st.loc[1, "time_noisy"]
    assert st.loc[2, "cpu_util"] == pytest.approx(1.9)

    old = pd.DataFrame(_rows("fused", [1.0, 1.1])).drop(columns=["threads", "cpu_util"])
    st = cell_stats(old)  # a run from before the threads and cpu_util columns
    assert len(st) == 1 and math.isnan(st.loc[0, "cpu_util"]) and st.loc[0, "time_count"] == 2


def test_report_section_lists_noisy_cells(tmp_path):
    df = pd.DataFrame(_rows("fused", [1.0, 2.0, 3.0]) + _rows("array", [1.0, 1.0], threads=1))
    text = report_section(tmp_path, df)
    assert "1 cells (50%) vary more than 1.5x" in text and "| lorenz | fused |" in text
    assert "| lorenz | array |" not in text
    assert report_section(tmp_path, df.iloc[0:0]) is None
