"""Figures: deterministic files, joins on keys (not row order), skipped figures, the time model."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.report.figures import FIGURES, make_figures
from harness.results.cells import cell_table, speedup_table
from harness.report.figures.model import fit_series
from harness.report.figures.style import BACKEND_COLOURS, backend_colour, variant_linestyle
from harness.results.schema import SCHEMA_VERSION, validate

#: Per backend: (launches per solve, fixed overhead per launch [s], cost per trajectory-step [s],
#: method in fixed mode, step control in adaptive mode). Invented for the test, not measurements.
_BACKENDS = {
    "fused": (1, 2e-4, 1e-9, "tsit5", "per-trajectory"),
    "array": (7000, 5e-6, 2e-8, "tsit5", "lockstep"),
    "diffrax": (9000, 6e-6, 3e-8, "tsit5", "lockstep"),
    "torchdiffeq": (12000, 5e-5, 4e-8, "rk4_38", "shared"),
}
NS = (8, 128, 2048)


def _row(problem, backend, method, mode, n, *, dtype="float32", dt=1e-3, rtol=np.nan, atol=np.nan,
         repeat=0, time_s=np.nan, status="ok", reason="", launches=np.nan, steps_mean=np.nan,
         steps_max=np.nan, err=np.nan, failed=0.0, step_control="none", variant=""):
    settings = {"method": method, "dt": dt, "step_control": step_control}
    if mode == "adaptive":
        settings.update(rtol=rtol, atol=atol, controller={"beta1": 0.14, "beta2": 0.08})
    return dict(schema_version=SCHEMA_VERSION, run_id="synthetic", suite="test", problem=problem,
                backend=backend, variant=variant, method=method, mode=mode, step_control=step_control,
                dtype=dtype, n=n, device="cpu", dt=dt, rtol=rtol, atol=atol, status=status,
                reason=reason, repeat=repeat, time_s=time_s, device_time_s=np.nan, compile_s=0.5,
                first_call_s=0.6, launches=launches, launch_counter="synthetic",
                steps_mean=steps_mean, steps_max=steps_max, rejected_mean=0.0,
                rhs_evals_mean=6 * steps_mean if steps_mean == steps_mean else np.nan,
                rhs_evals_max=np.nan, max_rel_err=err, failed_trajectories=failed,
                settings=json.dumps(settings, sort_keys=True), started_at="2024-01-01T00:00:00")


def _timed(problem, backend, method, mode, n, steps_mean, steps_max, err, **kw):
    """Three repeats of one cell; the median time is exactly the model time."""
    launches, launch_cost, step_cost, _, _ = _BACKENDS[backend]
    lock = kw.get("step_control") in ("lockstep", "shared")
    t = launches * launch_cost + n * (steps_max if lock else steps_mean) * step_cost
    return [_row(problem, backend, method, mode, n, repeat=i, time_s=t * f, launches=launches,
                 steps_mean=steps_mean, steps_max=steps_max, err=err, **kw)
            for i, f in enumerate((1.0, 1.1, 0.95))]


def synthetic_results() -> pd.DataFrame:
    """A small valid results table: Lorenz fixed/adaptive sweeps, work-precision cells at N=128,
    a Robertson sweep, one cell that could not run and one cell with failed trajectories. No SIR."""
    rows = []
    for backend, (_, _, _, fixed_method, adaptive_scope) in _BACKENDS.items():
        for n in NS:
            rows += _timed("lorenz", backend, fixed_method, "fixed", n, 1000.0, 1000.0, 1e-5,
                           step_control="none")
            if backend == "torchdiffeq":
                continue
            failed = 2.0 if (backend == "diffrax" and n == 2048) else 0.0
            rows += _timed("lorenz", backend, "tsit5", "adaptive", n, 150.0, 150.0 + n / 16, 1e-6,
                           rtol=1e-8, atol=1e-8, step_control=adaptive_scope, failed=failed)
        for dt in (5e-4, 2e-3):   # work-precision: other step sizes at N=128
            rows += _timed("lorenz", backend, fixed_method, "fixed", 128, 1e-3 / dt * 1000, 1e-3 / dt * 1000,
                           1e-5 * (dt / 1e-3) ** 4, dt=dt, step_control="none")
    rows.append(_row("lorenz", "torchdiffeq", "rk4_38", "adaptive", 8, rtol=1e-8, atol=1e-8, repeat=-1,
                     status="unsupported", reason="torchdiffeq rk4_38 has no adaptive mode",
                     step_control="shared"))
    for n in NS:
        rows += _timed("robertson", "fused", "rosenbrock23", "adaptive", n, 40.0, 60.0, 1e-7,
                       dtype="float64", rtol=1e-8, atol=1e-8, dt=1e2, step_control="per-trajectory")
        rows += _timed("robertson", "diffrax", "kvaerno5", "adaptive", n, 30.0, 55.0, 1e-8,
                       dtype="float64", rtol=1e-8, atol=1e-8, dt=1e2, step_control="lockstep")
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    return validate(synthetic_results())


ENV = {"gpu": {"model": ""}, "cpu_model": "Synthetic CPU", "cpu_count": 2, "python": "3.11",
       "versions": {"numpy": "2.0", "jax": "0.10"}, "git": {"commit": "abcdef1234567890", "dirty": True}}


def test_cells_use_median_and_min_of_repeats(results):
    cells = cell_table(results)
    c = cells[(cells["backend"] == "array") & (cells["mode"] == "fixed") & (cells["n"] == 8)
              & (cells["dt"] == 1e-3)].iloc[0]
    model = 7000 * 5e-6 + 8 * 1000 * 2e-8
    assert c["time_median_s"] == pytest.approx(model)
    assert c["time_min_s"] == pytest.approx(0.95 * model)
    assert c["repeats"] == 3 and c["success"]
    bad = cells[(cells["backend"] == "diffrax") & (cells["mode"] == "adaptive") & (cells["n"] == 2048)]
    assert not bad["success"].iloc[0], "a cell with failed trajectories is not a success"


def test_speedup_is_ratio_of_medians_at_matching_keys(results):
    table = speedup_table(cell_table(results))
    row = table[(table["peer"] == "diffrax") & (table["mode"] == "fixed") & (table["n"] == 8)
                & (table["dt"] == 1e-3)].iloc[0]
    expected = (9000 * 6e-6 + 8 * 1000 * 3e-8) / (2e-4 + 8 * 1000 * 1e-9)
    assert row["speedup"] == pytest.approx(expected)
    torch = table[(table["peer"] == "torchdiffeq")]
    assert set(torch["mode"]) == {"fixed"}
    assert torch["note"].str.contains("3/8 rule").all()


def test_speedup_pairs_like_with_like_where_the_fused_kernel_ran_the_method():
    rows = []
    for backend, method, scale in (("fused", "tsit5", 1.0), ("fused", "rk4_38", 0.5),
                                   ("torchdiffeq", "rk4_38", 100.0), ("diffrax", "tsit5", 50.0),
                                   ("scipy", "dop853", 200.0)):
        rows += [_row("lorenz", backend, method, "fixed", 8, repeat=i, time_s=scale * 1e-3)
                 for i in range(3)]
    table = speedup_table(cell_table(validate(pd.DataFrame(rows))))
    pairs = set(zip(table["peer"], table["peer_method"], table["fused_method"]))
    # same method where fused ran it; a method fused never ran is compared with each fused method
    assert pairs == {("torchdiffeq", "rk4_38", "rk4_38"), ("diffrax", "tsit5", "tsit5"),
                     ("scipy", "dop853", "tsit5"), ("scipy", "dop853", "rk4_38")}
    td = table[table["peer"] == "torchdiffeq"].iloc[0]
    assert td["speedup"] == pytest.approx(200.0)


def published_sample() -> pd.DataFrame:
    """Two published Lorenz series on a V100 (values invented for the test)."""
    rows = []
    for impl, folder, times in (("EnsembleGPUKernel (Julia)", "Julia", (2e-4, 2.1e-4)),
                                ("diffrax vmap (JAX)", "JAX", (6e-2, 6.3e-2))):
        for n, t in zip((8, 128), times):
            rows.append(dict(gpu="Tesla V100", implementation=impl, mode="fixed", problem="lorenz",
                             method="tsit5", dtype="float32", n=n, time_s=t,
                             source_file=f"Tesla_V100/{folder}/x.txt", branch="main", note=""))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def drawn(results, tmp_path_factory):
    """The figures drawn twice: from the table and from the same rows shuffled."""
    out = tmp_path_factory.mktemp("figures")
    first = make_figures(results, ENV, out / "a", published=published_sample(), dpi=30)
    shuffled = results.sample(frac=1.0, random_state=7).reset_index(drop=True)
    second = make_figures(shuffled, ENV, out / "b", published=published_sample(), dpi=30)
    return first, second


def test_make_figures_writes_deterministic_files(drawn):
    first, second = drawn
    assert [f.name for f in first] == list(FIGURES)
    assert {f.name for f in first if not f.skipped} == {
        "fig1_lorenz_fixed_time", "fig2_lorenz_adaptive_time", "fig3_speedup", "fig4_launches_model",
        "fig5_work_precision", "fig6_robertson", "fig8_lockstep"}
    for a, b in zip(first, second):
        assert [p.name for p in a.paths] == [p.name for p in b.paths]
        if a.skipped:
            assert a.paths == [] and a.skipped == b.skipped
            continue
        assert [p.name for p in a.paths] == [f"{a.name}.png", f"{a.name}.svg", f"{a.name}.csv"]
        assert all(p.stat().st_size > 0 for p in a.paths)
        # Shuffled rows give byte-identical plotted data and SVG: the joins use keys, not order.
        for pa, pb in zip(a.paths[1:], b.paths[1:]):
            assert pa.read_bytes() == pb.read_bytes(), f"{pa.name} depends on row order"


def test_skipped_figure_has_reason_and_failed_cells_are_not_successes(drawn):
    figs = {f.name: f for f in drawn[0]}
    assert "SIR" in figs["fig7_sir"].skipped
    assert not any(p.name.startswith("fig7") for p in figs["fig1_lorenz_fixed_time"].paths[0].parent.iterdir())
    data = figs["fig2_lorenz_adaptive_time"].data
    ours = data[data["source"] == "this run"]
    assert "torchdiffeq" not in set(ours["backend"]), "a cell that could not run is not drawn"
    flagged = ours[(ours["backend"] == "diffrax") & (ours["n"] == 2048)]
    assert len(flagged) == 1 and not flagged["success"].iloc[0]
    # Work-precision cells (single-N dt variations) stay out of the time-vs-N sweep.
    fixed = figs["fig1_lorenz_fixed_time"].data
    assert set(fixed["dt"].dropna()) == {1e-3}
    assert set(figs["fig5_work_precision"].data["dt"]) == {5e-4, 1e-3, 2e-3}


def test_published_series_are_separate_and_labelled(drawn):
    figs = {f.name: f for f in drawn[0]}
    data = figs["fig1_lorenz_fixed_time"].data
    paper = data[data["source"] == "paper"]
    assert len(paper) == 4 and paper["series"].str.contains("Tesla V100").all()
    assert (paper["backend"] == "").all(), "published rows never look like our rows"
    ratios = figs["fig3_speedup"].data
    paper_ratio = ratios[(ratios["source"] == "paper") & (ratios["n"] == 8)]["speedup"]
    assert paper_ratio.tolist() == [pytest.approx(6e-2 / 2e-4)]
    assert "omitted" not in " ".join(figs["fig1_lorenz_fixed_time"].notes)


def test_empty_published_frame_is_footnoted(results, tmp_path):
    empty = pd.DataFrame(columns=["gpu", "implementation", "mode", "problem", "method", "dtype", "n",
                                  "time_s", "source_file", "branch", "note"])
    small = results[(results["problem"] == "lorenz") & (results["mode"] == "fixed")
                    & (results["backend"] == "fused") & (results["dt"] == 1e-3)]
    figs = make_figures(small, ENV, tmp_path, published=empty, dpi=30)
    assert not figs[0].skipped and figs[1].skipped and figs[2].skipped  # no adaptive cells, no peer
    assert any("published series omitted" in note for note in figs[0].notes)


def test_time_model_recovers_known_coefficients():
    launches = np.array([7000.0, 7000.0, 7000.0, 7000.0])
    work = np.array([8e3, 1.28e5, 2.048e6, 3.2768e7])
    time_s = launches * 5e-6 + work * 2e-8
    a, b, err = fit_series(launches, work, time_s)
    assert a == pytest.approx(5e-6, rel=1e-6) and b == pytest.approx(2e-8, rel=1e-6)
    assert err < 1e-9
    with pytest.raises(ValueError, match="at least two points"):
        fit_series(launches[:1], work[:1], time_s[:1])


def test_fig4_reports_dominant_terms(drawn):
    fig4 = next(f for f in drawn[0] if f.name == "fig4_launches_model")
    fits = fig4.extra["fits"].set_index("backend")
    assert fits.loc["array", "launch_cost_s"] == pytest.approx(5e-6, rel=1e-6)
    assert fits.loc["array", "dominant_small"].startswith("launches")
    assert fits.loc["fused", "dominant_large"].startswith("trajectory-steps")


def test_colours_are_fixed_and_variants_never_dashed():
    assert backend_colour("fused") == BACKEND_COLOURS["fused"]
    assert backend_colour("some-new-backend") == backend_colour("some-new-backend")
    styles = {variant_linestyle(v, ["", "a", "b", "c", "d", "e", "f"]) for v in "abcdef"}
    assert "--" not in styles and variant_linestyle("", ["x", ""]) == "-"
