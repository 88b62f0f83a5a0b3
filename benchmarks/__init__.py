"""Benchmark scripts (run as modules, e.g. ``python -m benchmarks.paper_jax_config``)."""
