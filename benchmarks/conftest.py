"""Shared fixtures for the benchmark suite: a prepared solve, timed by pytest-benchmark; and
``refused``, the timing scripts' check for bad arguments.

Under ``make test`` (``--benchmark-disable``) every benchmark runs once, untimed, so the suite
stays exercised; ``make bench`` times it and ``make bench-compare`` checks it for regressions.
"""
import time

import pytest

from harness.measure.clock import MAX_WARMUP_CALLS, MIN_WARMUP_S
from solvers import SolveSpec, get_backend


@pytest.fixture
def solve_benchmark(benchmark):
    """Benchmark ``run() + sync()`` of one prepared solve; skip where the backend is unavailable."""
    prepared_solves = []

    def _bench(backend_name: str, **spec_fields):
        spec = SolveSpec(**spec_fields)
        backend = get_backend(backend_name)
        ok, why = backend.available(spec.device)
        if not ok:
            pytest.skip(f"{backend_name} unavailable here: {why}")
        reason = backend.check(spec)
        if reason:
            pytest.skip(f"{backend_name} cannot run {spec}: {reason}")
        prep = backend.prepare(spec)
        prepared_solves.append(prep)

        def once():
            out = prep.run()
            prep.sync(out)
            return out

        # compile, then warm up on a time scale as the harness clock does (thread pools settle)
        t0, calls = time.perf_counter(), 0
        while calls < 1 or (time.perf_counter() - t0 < MIN_WARMUP_S and calls < MAX_WARMUP_CALLS):
            once()
            calls += 1
        out = benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
        result = prep.fetch(out)
        assert result.u_final.shape == (spec.n, spec.prob.n_states)
        return result

    yield _bench
    for prep in prepared_solves:
        prep.close()


@pytest.fixture
def refused(capsys):
    """``refused(main, argv)``: run a timing script's ``main(argv)``, check that it refuses the
    arguments as argparse does (exit code 2, no traceback), and return what it wrote to stderr."""
    def _run(main, argv) -> str:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        return capsys.readouterr().err
    return _run
