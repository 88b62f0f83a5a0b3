"""One FMA and one vector-width policy for all (issue 33, item 3): every row records both, and
the torch.compile variants record their compile options (item 2)."""
import pytest

from solvers import numeric_policy
from solvers.base import SolveSpec
from solvers.registry import load_backend

CASES = [("fused", "", "numba"), ("array", "", "numpy"), ("cuda-cpp", "", "gcc"),
         ("jax-handwritten", "soa", "xla"), ("diffrax", "batched", "xla"),
         ("torch-handwritten", "", "torch-eager"), ("torch-handwritten", "compiled", "inductor"),
         ("torchdiffeq", "compiled", "inductor"), ("torchode", "compiled", "inductor")]


@pytest.mark.parametrize("backend,variant,compiler", CASES)
def test_every_row_records_fma_and_vector_width(backend, variant, compiler):
    b, why = load_backend(backend)
    if b is None or not b.available("cpu")[0]:
        pytest.skip(f"{backend} unavailable here: {why}")
    method = "rk4_38" if backend == "torchdiffeq" else "tsit5"
    spec = SolveSpec("lorenz", method, "fixed", "float32", n=8, variant=variant)
    s = b.settings(spec)
    assert b.compiler(spec) == compiler
    assert s["fma"] == numeric_policy.FMA[compiler]
    assert s["vector_width"] == numeric_policy.vector_width(compiler)


def test_torch_compiled_records_chunk_and_compile_options():
    b, why = load_backend("torch-handwritten")
    if b is None or not b.available("cpu")[0]:
        pytest.skip(f"torch unavailable here: {why}")
    for mode in ("fixed", "adaptive"):
        s = b.settings(SolveSpec("lorenz", "tsit5", mode, "float32", n=8, variant="compiled"))
        assert s["chunk"] > 1
        assert s["compile_options"]["fullgraph"] is True
        assert s["inductor_config"]["cpp.enable_floating_point_contract_flag"] == "fast"
        assert s["inductor_config"]["cpp.simdlen"] == numeric_policy.vector_bits()
    step = b.settings(SolveSpec("lorenz", "tsit5", "fixed", "float32", n=8, variant="compiled-step"))
    assert step["chunk"] == 1


def test_worker_environment_carries_the_vector_width():
    env = numeric_policy.environment({"XLA_FLAGS": "--xla_cpu_prefer_vector_width=128 --foo"})
    assert env["XLA_FLAGS"] == f"--foo --xla_cpu_prefer_vector_width={numeric_policy.vector_bits()}"
    if numeric_policy.vector_bits() == 512:
        assert env["NUMBA_CPU_FEATURES"].endswith(",-prefer-256-bit")
