"""Sharded ensembles (harness.run.shards) without a cluster: the split, the sweep's slices, and that
solving the shards and concatenating gives the unsharded solve (bitwise for the fused kernel)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.run.shards import refusal, shard_cell, split
from harness.measure.execute import Cell
from problems.registry import get_problem
from solvers.base import SolveSpec
from solvers.registry import get_backend


def test_split_is_contiguous_and_balanced():
    for n, k in ((8, 1), (8, 3), (10, 4), (2 ** 20 + 3, 4), (5, 5)):
        parts = split(n, k)
        assert len(parts) == k and parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        sizes = [b - a for a, b in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError):
        split(8, 0)


@pytest.mark.parametrize("n", [2, 3, 8, 1000, 2 ** 20 + 7])
def test_sweep_slices_are_bit_identical_to_the_whole(n):
    sweep = get_problem("lorenz").sweep
    whole = np.linspace(sweep.lo, sweep.hi, n)
    for a, b in split(n, 3 if n >= 3 else n) + [(0, n), (n - 1, n)]:
        assert np.array_equal(sweep.values(n, a, b), whole[a:b])
    u0, p = get_problem("lorenz").ensemble(n, "float32", 1, n)
    w0, wp = get_problem("lorenz").ensemble(n, "float32")
    assert np.array_equal(u0, w0[1:]) and np.array_equal(p, wp[1:])


def test_shard_spec_validates_its_slice():
    with pytest.raises(ValueError, match="shard_of"):
        SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=8, shard_of=(4, 10))


def _solve(backend: str, spec: SolveSpec) -> np.ndarray:
    prepared = get_backend(backend).prepare(spec)
    try:
        out = prepared.run()
        prepared.sync(out)
        return np.asarray(prepared.fetch(out).u_final)
    finally:
        prepared.close()


def _sharded_and_whole(backend: str, spec: SolveSpec, k: int) -> tuple[np.ndarray, np.ndarray]:
    cell = Cell(backend=backend, spec=spec, repeats=1, warmups=0, timeout_s=60, shards=k)
    assert refusal(cell) is None
    parts = [_solve(backend, shard_cell(cell, a, b).spec) for a, b in split(spec.n, k)]
    return np.concatenate(parts), _solve(backend, spec)


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_fused_shards_are_bitwise_the_unsharded_solve(mode):
    spec = SolveSpec(problem="lorenz", method="tsit5", mode=mode, dtype="float32", n=37, threads=1,
                     rtol=1e-6 if mode == "adaptive" else None, atol=1e-6 if mode == "adaptive" else None)
    sharded, whole = _sharded_and_whole("fused", spec, 3)
    assert sharded.shape == whole.shape and np.array_equal(sharded, whole)


def test_array_shards_equal_the_unsharded_solve():
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=16, threads=1)
    sharded, whole = _sharded_and_whole("array", spec, 4)
    np.testing.assert_allclose(sharded, whole, rtol=1e-6, atol=1e-6)


def test_peer_shards_equal_the_unsharded_solve_to_rounding():
    pytest.importorskip("torchdiffeq", reason="torchdiffeq not installed (optional peer)")
    spec = SolveSpec(problem="lorenz", method="rk4_38", mode="fixed", dtype="float32", n=12, threads=1)
    sharded, whole = _sharded_and_whole("torchdiffeq", spec, 3)
    np.testing.assert_allclose(sharded, whole, rtol=1e-5, atol=1e-5)


def test_sde_and_oversharded_cells_are_refused_with_a_reason():
    sde = SolveSpec(problem="linear_sde", method="em", mode="fixed", dtype="float32", n=8, dt=0.0625)
    assert "noise" in refusal(Cell(backend="fused", spec=sde, repeats=1, warmups=0, timeout_s=9, shards=2))
    ode = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=2)
    assert "empty" in refusal(Cell(backend="fused", spec=ode, repeats=1, warmups=0, timeout_s=9, shards=4))


def test_shards_is_a_key_column_and_suite_setting(tmp_path):
    from harness.results.store import cell_key
    from harness.run.suites import load_suite

    path = tmp_path / "t.toml"
    path.write_text('description = "t"\ndevice = "cpu"\nthreads = 1\n[[entries]]\nproblem = "lorenz"\n'
                    'backends = ["fused"]\nmethods = ["tsit5"]\nmodes = ["fixed"]\nn = [8]\nshards = [0, 1, 2]\n')
    cells = load_suite(str(path)).cells
    assert [c.shards for c in cells] == [None, 1, 2]
    assert len({c.key for c in cells}) == 3
    assert cell_key(dataclasses.replace(cells[2]).key_fields()) == cells[2].key
    assert "shards=2" in cells[2].label
