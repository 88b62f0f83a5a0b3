"""The manifest (solvers.registry.MANIFEST) is true to every backend that imports here."""
from __future__ import annotations

import pytest

from problems.kinds import KINDS
from solvers.registry import BACKENDS, MANIFEST, all_method_names, load_backend, methods_of


def test_every_backend_has_a_manifest_entry():
    assert list(MANIFEST) == list(BACKENDS)
    for name, entry in MANIFEST.items():
        assert set(entry["kinds"]) <= set(KINDS), name
        assert "" in entry["variants"], name


@pytest.mark.parametrize("name", list(BACKENDS))
def test_manifest_equals_the_backends_own_declaration(name):
    backend, why = load_backend(name)
    if backend is None:
        pytest.skip(f"{name} does not import here: {why}")
    declared = {kind: dict(served.methods) for kind, served in backend.kinds.items()}
    assert declared == MANIFEST[name]["kinds"]
    assert tuple(backend.variants) == MANIFEST[name]["variants"]
    assert backend.methods == methods_of(name)


def test_method_names_are_unique_per_backend_across_kinds():
    for name, entry in MANIFEST.items():
        names = [m for methods in entry["kinds"].values() for m in methods]
        assert len(names) == len(set(names)), name
    assert "em" in all_method_names() and "newton" in all_method_names()
