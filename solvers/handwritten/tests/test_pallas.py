"""The Pallas kernel: interpret mode against jax-handwritten, padding, blocks, Triton lowering."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from solvers.base import SolveSpec
from solvers.handwritten.pallas_backend import PallasPrepared, block_size, build_kernel_call, padded_inputs
from solvers.handwritten.tests.helpers import max_rel_diff, solve


def _run(prep):
    out = prep.run()
    prep.sync(out)
    res = prep.fetch(out)
    prep.close()
    return res


@pytest.mark.parametrize("mode,problem,dt,dtype,tol", [
    ("fixed", "lorenz", 0.01, "float32", 1e-5), ("fixed", "sir", 1.0, "float64", 1e-12),
    ("adaptive", "lorenz", 0.01, "float64", 1e-12), ("adaptive", "sir", 1.0, "float32", 1e-5)])
def test_interpret_mode_agrees_with_jax_handwritten(mode, problem, dt, dtype, tol):
    spec = SolveSpec(problem, "tsit5", mode, dtype, n=8, dt=dt, rtol=1e-6, atol=1e-6)
    ours = solve("pallas", spec)
    jax_res = solve("jax-handwritten", spec)
    assert ours.u_final.dtype == np.dtype(dtype)
    assert max_rel_diff(ours.u_final, jax_res.u_final) < tol
    if dtype == "float64":
        np.testing.assert_array_equal(ours.accepted, jax_res.accepted)
        np.testing.assert_array_equal(ours.rejected, jax_res.rejected)
    np.testing.assert_array_equal(ours.status, jax_res.status)


@pytest.mark.parametrize("n,block,programs", [(12, 128, 1), (20, 8, 3)])
def test_blocks_and_padding(n, block, programs):
    """N that is no multiple of the block, and several programs: same answer as jax-handwritten."""
    spec = SolveSpec("lorenz", "tsit5", "adaptive", "float64", n=n, rtol=1e-6, atol=1e-6)
    prep = PallasPrepared(spec, block=block)
    assert prep.inputs[0].shape[0] == programs * prep.block
    assert prep.block == block_size(spec, block)
    ours = _run(prep)
    ref = solve("jax-handwritten", spec)
    assert ours.u_final.shape == (n, 3)
    assert max_rel_diff(ours.u_final, ref.u_final) < 1e-12
    np.testing.assert_array_equal(ours.accepted, ref.accepted)


def test_padding_repeats_the_last_trajectory():
    spec = SolveSpec("sir", "tsit5", "fixed", "float32", n=5)
    cols = padded_inputs(spec, 8)
    u0, p = spec.ensemble()
    assert len(cols) == 3 + 2 and all(c.shape == (8,) and c.dtype == np.float32 for c in cols)
    np.testing.assert_array_equal(cols[3][:5], p[:, 0])
    np.testing.assert_array_equal(cols[3][5:], p[-1, 0])


def _abstract_gpu():
    """The GPU to lower for, named: since jax 0.11 Pallas's Triton lowering asks for the target's
    compute capability and, without a GPU here, raises unless an abstract device names one (jax
    0.10 read none). The lent boxes' H100 (sm_90) is named."""
    from jax.sharding import AbstractDevice, AbstractMesh, use_abstract_mesh

    h100 = AbstractDevice(device_kind="NVIDIA H100", num_cores=None, platform="cuda")
    return use_abstract_mesh(AbstractMesh((1,), ("ensemble",), abstract_device=h100))


def _triton_module_text(spec: SolveSpec) -> str:
    """Lower the kernel for platform "cuda" on this CPU machine and return the Triton IR text.

    ``jax.export`` lowers without a GPU; Pallas's ``debug=True`` prints the Triton module.
    """
    import jax
    from jax import export

    from solvers.handwritten.jax_backend import x64_scope
    from solvers.handwritten.rk import step_constants

    with x64_scope(spec.dtype):
        fn = jax.jit(build_kernel_call(spec, step_constants(spec), 128, interpret=False, debug=True))
        args = [jax.ShapeDtypeStruct(c.shape, c.dtype) for c in padded_inputs(spec, 128)]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), _abstract_gpu():
            export.export(fn, platforms=["cuda"], disabled_checks=[
                export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)
    text = printed.getvalue()
    start = text.find("The Triton module")
    assert start >= 0, "Pallas did not print a Triton module"
    return text[start:]


@pytest.mark.parametrize("mode,loop", [("fixed", "scf.for"), ("adaptive", "scf.while")])
def test_kernel_lowers_to_triton_in_float32_only(mode, loop):
    """The GPU path's lowering (not its compilation or run: no GPU here) succeeds; the whole
    time loop is one loop inside the kernel, and a float32 kernel has no f64 operation."""
    text = _triton_module_text(SolveSpec("lorenz", "tsit5", mode, "float32", n=256, rtol=1e-6, atol=1e-6))
    assert text.count(loop) >= 1 and "tt.func" in text
    assert "f64" not in text
    assert "f32" in text


def test_float64_kernel_lowers_to_triton():
    text = _triton_module_text(SolveSpec("sir", "tsit5", "adaptive", "float64", n=128))
    assert "scf.while" in text and "f64" in text
