"""Developer timing scripts of one backend's variants (not the harness): ``python -m benchmarks.variants.<name>``."""
