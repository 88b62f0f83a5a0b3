"""Repository-wide pytest set-up.

A 600 s limit per test where pytest-timeout is installed (it is optional: a GPU box without it
must still run the tests; in addopts, ``--timeout`` would be an unknown option there).
"""

import os

import pytest

# A figure with an empty panel, an unlabelled axis or an unreadable legend fails the test that draws
# it (harness.report.figures.canvas.figure_problems); outside the tests it is a warning.
os.environ.setdefault("ODEBENCH_STRICT_FIGURES", "1")

DEFAULT_TIMEOUT_S = 600


@pytest.hookimpl(tryfirst=True)  # before pytest-timeout's own pytest_configure reads the option
def pytest_configure(config):
    if config.pluginmanager.hasplugin("timeout") and not config.getoption("timeout", None):
        config.option.timeout = DEFAULT_TIMEOUT_S

#: Cases `make test` leaves to the slow set (`make test-all`, CI, nightly) to stay within 10 minutes
#: on 2 cores from a cold kernel cache: each compiles its own kernels (3-14 s) for a code path a
#: sibling case in the everyday set already runs (another method, problem or width of the same
#: check). Listed here, by test id, so that the everyday set's gaps are in one place.
EVERYDAY_DEFERRED = frozenset({
    'solvers/array/tests/test_array_backend.py::test_per_trajectory_steps_match_the_fused_cpu_kernel[sir-tsit5-1e-06]',
    'solvers/array/tests/test_array_backend.py::test_per_trajectory_steps_match_the_fused_cpu_kernel[robertson-rosenbrock23-1e-05]',
    'solvers/fused/tests/test_accuracy.py::test_against_reference[robertson-float64-rodas5p-adaptive-0.3]',
    'solvers/fused/tests/test_accuracy.py::test_saveat[robertson-float64-rosenbrock23-adaptive-(0.0, 0.001, 1.0, 10-60.0]',
    'solvers/fused/tests/test_convergence.py::test_empirical_order[rodas5p]',
    "solvers/fused/tests/test_counters.py::test_counters_equal_an_independent_count[serial-prothero_robinson-rodas4-adaptive-{'rtol': 1e-06, 'atol': 1e-06}]",
    "solvers/fused/tests/test_counters.py::test_counters_equal_an_independent_count[serial-prothero_robinson-rodas4-fixed-{'dt': 0.05}]",
    "solvers/fused/tests/test_counters.py::test_counters_equal_an_independent_count[lanes-robertson-rosenbrock23-adaptive-{'rtol': 1e-06, 'atol': 1e-06}]",
    'solvers/fused/tests/test_events.py::test_terminal_lorenz_crossing_matches_scipy[float32]',
    'solvers/fused/tests/test_nonautonomous.py::test_adaptive_against_the_reference[rosenbrock23]',
    'solvers/fused/tests/test_nonlinear.py::test_cuda_kernel_compiles_to_ptx_without_f64[trust-region]',
    'solvers/fused/tests/test_sde.py::test_crn_finite_over_the_grid_and_matches_float64_path',
    'solvers/fused/tests/test_sde.py::test_generated_cuda_source_compiles_to_ptx_without_f64',
    'solvers/peers/tests/test_diffrax.py::test_robertson_kvaerno5_float64',
    'solvers/peers/tests/test_torchdiffeq.py::test_compiled_variant_matches_reference_and_the_eager_counts[rk4_38-fixed]',
    'solvers/peers/tests/test_torchdiffeq.py::test_compiled_variant_matches_reference_and_the_eager_counts[dopri5-adaptive]',
    'solvers/tests/test_numerics.py::test_float32_fixed_step_error_is_diffrax_tsit5s[fused-lorenz96-4-256]',
    'solvers/tests/test_numerics.py::test_rodas4_dense_output_is_the_methods_own[0.0001]',
    'solvers/tests/test_numerics.py::test_rosenbrock_dense_output_keeps_the_steps[rodas4-float64-1e-06]',
    'solvers/fused/tests/test_accuracy.py::test_saveat[lorenz-float64-tsit5-adaptive-(np.float64(0.0), np-2000.0]',
    "solvers/fused/tests/test_counters.py::test_counters_equal_an_independent_count[lanes-lorenz-tsit5-adaptive-{'rtol': 1e-06, 'atol': 1e-06}]",
    'solvers/fused/tests/test_lane_layout.py::test_layouts_equal_serial[lorenz-tsit5-float32-final-32-two-pass]',
    'solvers/fused/tests/test_pso.py::test_fused_and_array_take_the_same_trajectory_rosenbrock[pso]',
    'solvers/tests/test_numerics.py::test_rosenbrock_dense_output_keeps_the_steps[rosenbrock23-float64-0.0001]',
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in EVERYDAY_DEFERRED:
            item.add_marker(pytest.mark.slow)
