"""The published-timings loader: the real folder when present, a copy of it, and a missing folder."""
from __future__ import annotations

import pytest

from harness.results import paper as paper_data
from harness.results.paper import PAPER_DATA_ENV, load_paper_data, locate_paper_data, read_timing_file

REAL = paper_data.repo_root() / paper_data.SHIPPED


def test_the_published_data_ship_with_the_project(monkeypatch):
    """No `shared/` beside the checkout is needed: the shipped copy is found by default."""
    monkeypatch.delenv(PAPER_DATA_ENV, raising=False)
    assert locate_paper_data()[0] == REAL
    assert (REAL / "README.md").is_file()


def test_real_folder_has_the_expected_implementations_and_gpus():
    frame = load_paper_data(REAL)
    assert list(frame.columns) == list(paper_data.COLUMNS)
    assert {"EnsembleGPUKernel (Julia)", "diffrax vmap (JAX)", "torchdiffeq (PyTorch)", "MPGOS (C++)",
            "EnsembleGPUArray (Julia)", "EnsembleThreads CPU (Julia)",
            "EnsembleGPUKernel (Julia, vendor run)"} == set(frame["implementation"])
    assert {"Tesla V100", "Quadro RTX 5000"} <= set(frame["gpu"])
    lorenz = frame[frame["problem"] == "lorenz"]
    assert set(lorenz["mode"]) == {"fixed", "adaptive"}
    stiff = frame[frame["problem"] == "robertson"]
    assert set(stiff["branch"]) == {paper_data.STIFF_BRANCH}
    assert set(stiff[stiff["gpu"] == "Tesla V100"]["method"]) == {"rosenbrock23", "rodas4", "rodas5p",
                                                                   "kvaerno5"}
    assert frame["n"].min() == 8 and frame[frame["problem"] == "lorenz"]["n"].max() == 8 * 4 ** 10


@pytest.mark.parametrize("rel, implementation, gpu, mode, method", [
    ("Tesla_V100/JAX/Jax_times_unadaptive.txt", "diffrax vmap (JAX)", "Tesla V100", "fixed", "tsit5"),
    ("RTX_5000/CPP/MPGOS_times_adaptive.txt", "MPGOS (C++)", "Quadro RTX 5000", "adaptive", "rkck45"),
    ("Tesla_V100/Julia/stiff_ode/Julia_times_adaptive_rs5p.txt", "EnsembleGPUKernel (Julia)",
     "Tesla V100", "adaptive", "rodas5p"),
])
def test_a_line_of_a_real_file_round_trips(rel, implementation, gpu, mode, method):
    n, ms = read_timing_file(REAL / rel)[0]
    # The first line as written in the file, parsed independently of the loader.
    fields = (REAL / rel).read_text().splitlines()[0].split()
    assert (n, ms) == (int(fields[0]), float(fields[1]))
    frame = load_paper_data(REAL)
    row = frame[(frame["source_file"] == rel) & (frame["n"] == n)]
    assert len(row) == 1
    row = row.iloc[0]
    assert (row["implementation"], row["gpu"], row["mode"], row["method"]) == (implementation, gpu, mode, method)
    assert row["time_s"] == pytest.approx(ms / 1e3, rel=1e-15)


def test_copy_with_crlf_and_tabs_parses_and_unknown_files_warn(tmp_path):
    (tmp_path / "Tesla_V100" / "Julia").mkdir(parents=True)
    (tmp_path / "Tesla_V100" / "Julia" / "Julia_times_unadaptive.txt").write_bytes(b"8 0.231724\r\n32\t0.208332\n\n")
    (tmp_path / "Tesla_V100" / "Other").mkdir()
    (tmp_path / "Tesla_V100" / "Other" / "mystery.txt").write_text("8 1.0\n")
    with pytest.warns(UserWarning, match="no rule describes Tesla_V100/Other/mystery.txt"):
        frame = load_paper_data(tmp_path)
    assert frame["n"].tolist() == [8, 32]
    assert frame["time_s"].tolist() == pytest.approx([0.231724e-3, 0.208332e-3])
    assert set(frame["implementation"]) == {"EnsembleGPUKernel (Julia)"}


def test_malformed_file_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "RTX_5000" / "JAX").mkdir(parents=True)
    (tmp_path / "RTX_5000" / "JAX" / "Jax_times_adaptive.txt").write_text("8 1.0\nnot a number\n")
    with pytest.warns(UserWarning, match="malformed"):
        frame = load_paper_data(tmp_path)
    assert frame.empty


def test_missing_folder_gives_an_empty_frame(tmp_path, monkeypatch):
    frame = load_paper_data(tmp_path / "absent")
    assert frame.empty and list(frame.columns) == list(paper_data.COLUMNS)
    assert "not a folder" in frame.attrs["source"]
    monkeypatch.setenv(PAPER_DATA_ENV, str(tmp_path / "absent"))
    path, where = locate_paper_data()
    assert path is None and PAPER_DATA_ENV in where
    assert load_paper_data().empty


def test_env_var_wins_and_nothing_outside_the_checkout_is_read(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.setenv(PAPER_DATA_ENV, str(tmp_path / "data"))
    assert locate_paper_data()[0] == tmp_path / "data"
    monkeypatch.delenv(PAPER_DATA_ENV)
    repo = tmp_path / "repo"
    (tmp_path / "shared" / "paper_data").mkdir(parents=True)  # beside the checkout: ignored
    assert locate_paper_data(repo)[0] is None
    (repo / paper_data.SHIPPED).mkdir(parents=True)
    assert locate_paper_data(repo)[0] == repo / paper_data.SHIPPED
