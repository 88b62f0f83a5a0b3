"""The looped layout of large systems (solvers/fused/looped.py): the rhs translation, the kernel's
accuracy against the float64 reference, and that d = 1024 compiles (CPU and CUDA PTX) and is right."""
import numpy as np
import pytest

from problems.reference import max_relative_error, ode_reference
from problems.registry import get_problem
from solvers.base import SolveSpec
from solvers.fused import FusedBackend, KernelKey
from solvers.fused.assemble import rhs_source
from solvers.fused.codegen import generate_source
from solvers.fused.looped import LOOPED_MIN_STATES, cyclic_stencil, store_form, uses_looped


def _solve(backend, **kw):
    spec = SolveSpec(method="tsit5", dtype="float32", dt=1e-3, rtol=1e-6, atol=1e-6, **kw)
    prep = backend.prepare(spec)
    out = prep.run()
    prep.sync(out)
    return spec, prep.fetch(out)


def test_store_form_and_stencil_translate_the_component_form():
    src = rhs_source(get_problem("lorenz96-6"))
    lines = store_form(src, "w", "K[j, {k}]", ["p0"], "tt")
    assert lines[0] == "K[j, 0] = (w[1] - w[4]) * w[5] - w[0] + p0" and len(lines) == 6
    assert cyclic_stencil(src, 6) == "(w[(s + 7) % 6] - w[(s + 4) % 6]) * w[(s + 5) % 6] - w[(s + 6) % 6] + F"
    assert cyclic_stencil(rhs_source(get_problem("lorenz")), 3) is None  # not a lattice: straight-line
    # the stencil evaluates to the component form
    rng = np.random.default_rng(0)
    w = rng.uniform(-3, 9, size=6)
    F = 5.0
    comp = get_problem("lorenz96-6").rhs_for(np)(tuple(w), (F,), 0.0)
    sten = [eval(cyclic_stencil(src, 6), {"w": w, "s": s, "F": F}) for s in range(6)]
    assert np.allclose(comp, sten, rtol=0, atol=1e-12)


def test_layout_is_chosen_by_size():
    assert not uses_looped(get_problem("lorenz")) and not uses_looped(get_problem(f"lorenz96-{LOOPED_MIN_STATES - 1}"))
    assert uses_looped(get_problem(f"lorenz96-{LOOPED_MIN_STATES}"))
    src = generate_source(KernelKey("lorenz96-64", "tsit5", "fixed", "float32"))
    assert "looped layout" in src and "np.empty((7, 64), _T)" in src and len(src) < 20_000


@pytest.mark.parametrize("mode", [pytest.param("fixed", marks=pytest.mark.slow), "adaptive"])  # 10-14 s each
def test_looped_kernel_matches_the_reference_and_the_replica(mode):
    from solvers.array import ArrayBackend

    spec, res = _solve(FusedBackend(), problem="lorenz96-16", mode=mode, n=6)
    assert np.all(res.status == 0)
    ref = ode_reference(spec.prob, spec)
    # float32: 6,000 roundings of y + c*k over [0, 1] of a chaotic system (the replica, same order, too)
    assert max_relative_error(res.u_final, ref) < 5e-3
    _, arr = _solve(ArrayBackend(), problem="lorenz96-16", mode=mode, n=6)
    # same tableau and summation order; the kernel contracts a*b+c into FMAs, the replica does
    # not, and the chaotic system amplifies that rounding to ~1e-4 over [0, 1]
    assert np.allclose(res.u_final, arr.u_final, rtol=2e-3, atol=2e-3)
    if mode == "fixed":
        assert np.all(res.accepted == 1000)
    else:
        assert np.all(np.abs(res.accepted - arr.accepted) <= 3)


def test_refuses_what_the_looped_layout_lacks():
    b = FusedBackend()
    spec = SolveSpec(problem="lorenz96-32", method="rosenbrock23", mode="adaptive", dtype="float32", n=4)
    assert "explicit Runge-Kutta" in b.check(spec)
    spec = SolveSpec(problem="lorenz96-32", method="tsit5", mode="adaptive", dtype="float32", n=4,
                     saveat=(0.5, 1.0))
    assert "final state only" in b.check(spec)


@pytest.mark.slow
def test_d1024_compiles_and_is_correct_cpu():
    spec, res = _solve(FusedBackend(), problem="lorenz96-1024", mode="fixed", n=2)
    assert np.all(res.status == 0) and res.u_final.shape == (2, 1024)
    assert max_relative_error(res.u_final, ode_reference(spec.prob, spec)) < 5e-3


@pytest.mark.slow
def test_d1024_cuda_kernel_compiles_to_float32_ptx():
    from solvers.fused.purity import cuda_ptx, ptx_f64_lines

    ptx = cuda_ptx(KernelKey("lorenz96-1024", "tsit5", "adaptive", "float32", target="cuda"))
    assert ".local" in ptx and ptx_f64_lines(ptx) == []
