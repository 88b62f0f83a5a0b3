"""The launch counter counts known sequences of operations exactly, for every dispatch kind."""
from __future__ import annotations

import numpy as np
import pytest

from harness.measure.launches import CountingArray, CountingNamespace, count_launches, counting_operations
from solvers.base import Prepared, SolveResult


class FakePrepared(Prepared):
    """A prepared 'solve' that runs ``body(self)``; ``dispatch`` is set per test."""

    def __init__(self, dispatch, body, **attributes):
        self.dispatch = dispatch
        self.body = body
        self.runs = 0
        self.synced = 0
        for name, value in attributes.items():
            setattr(self, name, value)

    def run(self):
        self.runs += 1
        return self.body(self)

    def sync(self, out):
        self.synced += 1

    def fetch(self, out):
        return SolveResult(u_final=np.zeros((1, 1)))


# ---- dispatch "xp": NumPy operations -----------------------------------------------------------

def three_adds_two_multiplies(prepared):
    xp = prepared.xp
    a = xp.asarray(prepared.a)            # a no-copy conversion: free
    b = prepared.b                        # an input array used directly
    c = a + b
    c = c + 1.0
    c = c + a
    return 2.0 * (c * b)


def test_xp_counts_three_adds_and_two_multiplies_as_five():
    prepared = FakePrepared("xp", three_adds_two_multiplies, xp=np, a=np.ones(4), b=np.arange(4.0))
    assert count_launches(prepared, "cpu")[0] == 5
    assert prepared.runs == prepared.synced == 1
    # the counter put everything back
    assert prepared.xp is np and type(prepared.a) is np.ndarray and type(prepared.b) is np.ndarray


def test_xp_counts_namespace_functions_once_each_and_views_as_free():
    def body(prepared):
        xp = prepared.xp
        u = xp.stack([prepared.a, prepared.b])        # 1 (stack), arguments in a list
        rows = tuple(u)                               # views: free
        t = u.T.reshape(-1)                           # views: free
        m = xp.mean(u * u, axis=0)                    # 2 (multiply, mean; mean's inner ops nest)
        w = xp.where(m > 1, rows[0], rows[1])         # 2 (greater, where)
        u[0] = w                                      # 1 (setitem)
        picked = t[t > 2]                             # 2 (greater, gather)
        flag = bool(xp.any(picked > 0))               # 2 (greater, any); bool() is a host copy
        s = xp.sqrt(2.0)                              # host scalar arithmetic: free
        x = xp.linalg.solve(xp.eye(2)[None], u.T[:2, :, None])  # 2 (eye, solve)
        return flag, s, x

    prepared = FakePrepared("xp", body, xp=np, a=np.ones(3), b=np.arange(3.0))
    count, how = count_launches(prepared, "cpu")
    assert count == 12
    assert how.startswith("cpu: NumPy array operations")


def test_counting_namespace_outputs_count_their_own_operators():
    xp = CountingNamespace(np)
    with counting_operations() as counter:
        z = xp.zeros(3)                 # 1
        assert isinstance(z, CountingArray)
        z += 1                          # 1 (in place)
        _ = -abs(z)                     # 2
        _ = z.astype(np.float32)        # 1
    assert counter.count == 5
    _ = z * 2                           # no active counter: nothing counted, nothing breaks


def test_xp_needs_numpy_on_the_cpu():
    prepared = FakePrepared("xp", three_adds_two_multiplies, xp=object(), a=np.ones(2), b=np.ones(2))
    count, how = count_launches(prepared, "cpu")
    assert count is None and how.startswith("not measurable")


# ---- dispatch "torch": ATen operators ----------------------------------------------------------

def test_torch_counts_three_adds_and_two_multiplies_as_five():
    torch = pytest.importorskip("torch")

    def body(prepared):
        a, b = prepared.a, prepared.b
        c = a + b
        c = c + 1.0
        c = torch.add(c, a)
        c = c.view(-1)               # a view operator: not counted
        return (c * b) * 2.0

    prepared = FakePrepared("torch", body, a=torch.ones(4), b=torch.arange(4.0))
    count, how = count_launches(prepared, "cpu")
    assert count == 5
    assert "ATen" in how


# ---- dispatch "kernel": compiled entry point ----------------------------------------------------

def test_kernel_counts_calls_through_the_entry_point():
    calls = []

    def body(prepared):
        prepared.kernel(prepared.u)
        return prepared.u

    prepared = FakePrepared("kernel", body, kernel=lambda u: calls.append(u), u=np.ones(2))
    count, how = count_launches(prepared, "cpu")
    assert count == 1 and len(calls) == 1
    assert "kernel entry point" in how
    assert not hasattr(prepared.kernel, "_tally")  # restored


def test_kernel_counts_every_launch_including_configured_ones():
    class Configurable:
        def __getitem__(self, config):
            return lambda *args: None

        def __call__(self, *args):
            return None

    def body(prepared):
        prepared.kernel[4, 32](1)      # a CUDA-style launch configuration
        prepared.kernel(2)
        return None

    prepared = FakePrepared("kernel", body, kernel=Configurable())
    assert count_launches(prepared, "cpu")[0] == 2


def test_numba_dispatchers_are_found_under_any_attribute_name():
    numba = pytest.importorskip("numba")

    @numba.njit
    def add_one(x):
        return x + 1.0

    add_one(1.0)  # compile before counting, as the runner does by timing first

    def body(prepared):
        return prepared.compiled_solve(3.0)

    prepared = FakePrepared("kernel", body, compiled_solve=add_one)
    assert count_launches(prepared, "cpu")[0] == 1


def test_kernel_not_called_through_an_attribute_is_not_measurable():
    prepared = FakePrepared("kernel", lambda p: None)
    count, how = count_launches(prepared, "cpu")
    assert count is None and "no kernel entry point" in how


# ---- dispatch "jax": jitted callables -----------------------------------------------------------

def test_jax_counts_calls_of_the_jitted_callable():
    jax = pytest.importorskip("jax")

    def body(prepared):
        out = prepared.fn(prepared.x)
        return prepared.fn(out)

    fn = jax.jit(lambda x: x * 2.0 + 1.0)
    prepared = FakePrepared("jax", body, fn=fn, x=jax.numpy.ones(3))
    prepared.fn(prepared.x)  # compiled before counting
    count, how = count_launches(prepared, "cpu")
    assert count == 2
    assert "jitted" in how
    assert prepared.fn is fn


# ---- anything else ----------------------------------------------------------------------------

def test_unknown_dispatch_is_not_measurable():
    count, how = count_launches(FakePrepared("python", lambda p: None), "cpu")
    assert count is None and how.startswith("not measurable") and "'python'" in how


def test_invalid_device_is_refused():
    with pytest.raises(ValueError, match="cpu, gpu"):
        count_launches(FakePrepared("xp", lambda p: None), "tpu")


def test_gpu_counting_without_a_cuda_profiler_is_not_measurable():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: this tests the CPU-only machine")
    try:
        import cupti  # noqa: F401
        pytest.skip("cupti-python is installed")
    except ImportError:
        pass
    prepared = FakePrepared("xp", lambda p: None)
    count, how = count_launches(prepared, "gpu")
    assert count is None and how.startswith("not measurable") and prepared.runs == 0


# ---- on a GPU box: measured kernels (skipped on machines without CuPy and a CUDA device) ---------

def test_gpu_measures_one_kernel_per_cupy_operation():
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no CUDA device: {exc}")

    class CupyPrepared(FakePrepared):
        def sync(self, out):
            cupy.cuda.get_current_stream().synchronize()

    def body(prepared):
        a, b = prepared.a, prepared.b
        return 2.0 * ((((a + b) + 1.0) + a) * b)   # 3 adds, 2 multiplies: 5 elementwise kernels

    prepared = CupyPrepared("xp", body, a=cupy.ones(1024), b=cupy.arange(1024.0))
    body(prepared)  # compile CuPy's kernels before counting
    cupy.cuda.get_current_stream().synchronize()
    count, how = count_launches(prepared, "gpu")
    if count is None:
        pytest.skip(how)
    assert count == 5
    assert how.startswith("gpu: device kernels measured")
