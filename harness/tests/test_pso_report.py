"""The particle-swarm report section: built from the rows alone, ratios computed from them, no
section without swarm rows; swarm errors are results, not accuracy violations."""
import json

import numpy as np
import pandas as pd

from harness.measure.accuracy import violation
from harness.report.sections.pso import comparison_lines, ratios, report_section, summary
from harness.results.cells import cell_table


def rows():
    out = []
    for backend, t in (("fused", 0.01), ("array", 0.5), ("jax-pso", 0.05)):
        for n, scale in ((100, 1.0), (1000, 4.0)):
            for rep in (0, 1):
                out.append({"problem": "pso_rosenbrock", "backend": backend, "variant": "", "method": "pso",
                            "mode": "fixed", "dtype": "float32", "n": n, "device": "cpu", "status": "ok",
                            "repeat": rep, "time_s": t * scale * (1 + rep), "steps_mean": 500.0,
                            "max_rel_err": 0.3, "max_scaled_err": 30.0, "launches": 501.0 if backend == "fused" else 9000.0,
                            "failed_trajectories": 0.0, "settings": json.dumps({"notes": {"best_cost": 1.5}})})
    out.append({**out[0], "problem": "lorenz", "method": "tsit5"})
    return pd.DataFrame(out)


def test_summary_and_ratios_come_from_the_rows():
    summ = summary(cell_table(rows()))
    assert set(summ["problem"]) == {"pso_rosenbrock"}
    fused100 = summ[(summ.backend == "fused") & (summ.n == 100)].iloc[0]
    assert np.isclose(fused100.median_s, 0.015) and fused100.best_cost == 1.5 and fused100.iterations == 500
    rat = ratios(summ)
    assert np.allclose(rat.sort_values("n")["ratio"], [50.0, 50.0])
    cpu = pd.DataFrame([{"problem": "lorenz", "backend": b, "variant": "", "method": "tsit5", "mode": "fixed",
                         "dtype": "float32", "n": 128, "dt": 1e-3, "threads": 2, "status": "ok", "time_s": t}
                        for b, t in (("fused", 0.001), ("array", 0.2))])
    text = "\n".join(comparison_lines(summ, cell_table(cpu)))
    assert "100 particles 50x (ODE at N=128: 200x)" in text
    assert "smaller than the ODE's at 2 of 2 sizes" in text


def test_section_and_figure(tmp_path):
    md = report_section(tmp_path, cell_table(rows()))
    assert "| pso_rosenbrock | fused | pso | float32 | 100 | 500 |" in md
    assert (tmp_path / "figures" / "pso_time_vs_particles.png").exists()
    plotted = pd.read_csv(tmp_path / "figures" / "pso_time_vs_particles.csv")
    assert len(plotted) == 6
    assert report_section(tmp_path, cell_table(rows()[lambda d: d.problem == "lorenz"])) is None


def test_swarm_error_is_a_result_not_a_violation():
    row = rows().iloc[0].to_dict()
    assert violation(row) is None
    assert violation({**row, "failed_trajectories": 1.0}) == "1 failed trajectories"


def test_section_figure_files_are_byte_reproducible(tmp_path):
    """Every figure goes through harness.report.figures.canvas: drawing twice gives the same bytes."""
    for folder in ("a", "b"):
        report_section(tmp_path / folder, cell_table(rows()))
    for suffix in ("png", "svg", "csv"):
        name = f"figures/pso_time_vs_particles.{suffix}"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_the_section_says_when_the_ode_ratios_come_from_another_cpu(tmp_path):
    from harness.report.inputs import Run
    from harness.report.sections import SECTIONS, SectionContext

    swarm = cell_table(rows())
    cpu = pd.DataFrame([{"problem": "lorenz", "backend": b, "variant": "", "method": "tsit5", "mode": "fixed",
                         "dtype": "float32", "n": 128, "dt": 1e-3, "threads": 2, "status": "ok", "time_s": t}
                        for b, t in (("fused", 0.001), ("array", 0.2))])
    section = next(s for s in SECTIONS if s.name == "pso")
    for name, cpu_name in (("swarm", "znver4"), ("ode-same", "znver4"), ("ode-other", "znver3")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "environment.json").write_text(json.dumps({"cpu_vector": {"cpu_name": cpu_name, "isa": "x"}}))
    run = Run(tmp_path / "swarm", rows(), swarm)
    same = section.markdown(SectionContext(run, (Run(tmp_path / "ode-same", cpu, cell_table(cpu)),)))
    other = section.markdown(SectionContext(run, (Run(tmp_path / "ode-other", cpu, cell_table(cpu)),)))
    assert "ODE at N=128" in same and "another CPU" not in same
    assert other.startswith(same.rstrip())
    assert other.endswith("*The ODE ratios come from the cpu reference run `ode-other`, measured on another "
                          "CPU (znver3, x) than this run (znver4, x).*\n")
