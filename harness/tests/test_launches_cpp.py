"""Launch counting sees the hand-written C++ backend's one entry-point call per solve."""
from harness.measure.launches import count_launches
from solvers.base import SolveSpec
from solvers.registry import get_backend


def test_cuda_cpp_one_kernel_call_per_solve():
    prep = get_backend("cuda-cpp").prepare(SolveSpec("lorenz", "tsit5", "adaptive", "float32", 40))
    prep.sync(prep.run())  # the first call compiles (or loads the cached library)
    for _ in range(2):
        count, how = count_launches(prep, "cpu")
        assert count == 1, how
    res = prep.fetch(prep.run())
    assert res.u_final.shape == (40, 3)
