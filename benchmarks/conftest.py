"""Shared fixture for the benchmark suite: a prepared solve, timed by pytest-benchmark.

Under ``make test`` (``--benchmark-disable``) every benchmark runs once, untimed, so the suite
stays exercised; ``make bench`` times it and ``make bench-compare`` checks it for regressions.
"""
import pytest

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

        once()  # compile outside the timed rounds
        out = benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
        result = prep.fetch(out)
        assert result.u_final.shape == (spec.n, spec.prob.n_states)
        return result

    yield _bench
    for prep in prepared_solves:
        prep.close()
