"""JAX backends split over host devices give the states of the unsplit solve (subprocess with
two forced host devices, since XLA_FLAGS must be set before JAX is imported)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")
pytest.importorskip("diffrax")

REPO = Path(__file__).resolve().parents[2]

#: Run in a fresh interpreter: every JAX variant at threads=1 and threads=2, compared.
SCRIPT = r"""
import numpy as np
from solvers.base import SolveSpec
from solvers.registry import get_backend

def solve(backend, spec):
    prep = get_backend(backend).prepare(spec)
    out = prep.run(); prep.sync(out)
    res = prep.fetch(out); prep.close()
    return res

get_backend("diffrax")   # as the worker does: the backend module first, then its library
import jax, equinox
assert len(jax.devices("cpu")) == 2, jax.devices("cpu")
print("eqx_on_error", equinox._config.EQX_ON_ERROR)
cases = [("diffrax", v, m) for v in ("", "vmap-of-jit", "batched", "tuple") for m in ("fixed", "adaptive")]
cases += [("jax-handwritten", v, m) for v in ("", "soa") for m in ("fixed", "adaptive")]
cases += [("jax-handwritten", "soa-unroll8", "fixed")]
for backend, variant, mode in cases:
    spec = SolveSpec(problem="lorenz", method="tsit5", mode=mode, dtype="float32", n=16,
                     variant=variant, rtol=1e-6, atol=1e-6)
    one, two = solve(backend, spec.with_(threads=1)), solve(backend, spec.with_(threads=2))
    devices = get_backend(backend).settings(spec.with_(threads=2))["jax_devices"]
    diff = float(np.max(np.abs(one.u_final.astype(float) - two.u_final.astype(float))
                        / np.maximum(np.abs(one.u_final.astype(float)), 1.0)))
    same_steps = bool(np.array_equal(one.accepted, two.accepted))
    print("case", backend, variant or "-", mode, devices, repr(diff), same_steps)
"""


@pytest.mark.slow  # a subprocess with two XLA host devices: 20-45 s
def test_two_host_devices_give_the_unsplit_states():
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env.pop("EQX_ON_ERROR", None)
    env["ODEBENCH_JAX_SPLIT_MIN_N"] = "0"     # N = 16 is below the measured threshold: force the split
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    # The backend module sets EQX_ON_ERROR=nan before equinox is first imported.
    assert "eqx_on_error nan" in lines
    cases = [line.split() for line in lines if line.startswith("case ")]
    assert len(cases) == 13
    for _, backend, variant, mode, devices, diff, same_steps in cases:
        assert devices == "2", (backend, variant, mode)
        assert same_steps == "True", (backend, variant, mode)
        if (backend, variant, mode) in (("diffrax", "batched", "adaptive"), ("diffrax", "tuple", "adaptive")):
            # One shared step: the norm's sum is added in another order across devices.
            assert float(diff) < 1e-4, (backend, variant, mode, diff)
        else:
            assert float(diff) == 0.0, (backend, variant, mode, diff)
