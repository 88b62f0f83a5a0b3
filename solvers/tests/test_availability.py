import sys

import pytest

from solvers.availability import framework_available, probe_import


def test_missing_library_gives_the_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffrax", None)
    ok, why = framework_available("jax", "cpu", "diffrax")
    assert not ok and "diffrax is not importable" in why
    assert probe_import("numpy")[0]


def test_gpu_answer_matches_what_the_framework_sees():
    import jax
    import torch

    ok, why = framework_available("torch", "gpu")
    assert ok == torch.cuda.is_available() and (ok or "CUDA" in why)
    try:
        has_jax_gpu = bool(jax.devices("gpu"))
    except RuntimeError:
        has_jax_gpu = False
    ok, why = framework_available("jax", "gpu")
    assert ok == has_jax_gpu and (ok or "GPU" in why)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="framework"):
        framework_available("tensorflow", "cpu")
    with pytest.raises(ValueError, match="device"):
        framework_available("jax", "tpu")
