"""Accepted-step counts of the fused kernel on the cpu suite's Lorenz adaptive ensembles (float64).

Issue 29 lets the controller's rounding change (EEst^2 against 1, one exp per step, multiplies
by reciprocals) provided that the accepted step counts stay within +-1 of the kernel before the
change for at least 99% of trajectories, at rtol = atol = 1e-6 and 1e-8. This module defines the
sample and, run as a script, writes the counts of the kernel checked out now to
``data/lorenz_step_counts.npz``. The committed file was written by the kernel before issue 29
changed its arithmetic (see ``git log`` of the file); ``test_step_counts`` compares against it.

    python -m solvers.fused.tests.step_counts      # rewrites the fixture: only for a new baseline
"""
from __future__ import annotations

import pathlib

import numpy as np

from problems.registry import get_problem
from solvers.fused.build import make_inputs, run_cpu
from solvers.fused.codegen import KernelKey

FIXTURE = pathlib.Path(__file__).with_name("data") / "lorenz_step_counts.npz"
#: the cpu suite's largest Lorenz adaptive ensemble (harness/suites/cpu.toml: n_range max)
SUITE_N = 524288
#: every STRIDE-th trajectory of it: 2048 trajectories, rho over the whole sweep
STRIDE = 256
TOLERANCES = (1e-6, 1e-8)


def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, u0, p) of the sampled trajectories, in float64."""
    u0, p = get_problem("lorenz").ensemble(SUITE_N, "float64")
    idx = np.arange(0, SUITE_N, STRIDE)
    return idx, u0[idx], p[idx]


def accepted_counts(tol: float, variant: str = "lanes") -> tuple[np.ndarray, np.ndarray]:
    """(accepted, rejected) per sampled trajectory of the current fused float64 kernel."""
    prob = get_problem("lorenz")
    _, u0, p = sample()
    key = KernelKey("lorenz", "tsit5", "adaptive", "float64")
    inputs = make_inputs(u0, p, prob.tspan, "float64", mode="adaptive", dt=prob.dt0 or prob.dt,
                         rtol=tol, atol=tol)
    out = run_cpu(key, inputs, variant)
    return out.accepted.astype(np.int32), out.rejected.astype(np.int32)


def main() -> None:
    idx, _, _ = sample()
    data = {"index": idx.astype(np.int32)}
    for tol in TOLERANCES:
        acc, rej = accepted_counts(tol)
        data[f"accepted_{tol:g}"] = acc
        data[f"rejected_{tol:g}"] = rej
        print(f"tol {tol:g}: accepted mean {acc.mean():.2f} (min {acc.min()}, max {acc.max()}), "
              f"rejected mean {rej.mean():.2f}")
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, **data)
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
