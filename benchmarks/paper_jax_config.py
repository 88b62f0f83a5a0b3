"""Is our diffrax configuration at least as fast as the paper's own JAX script? (CPU, same process)

Run::

    python -m benchmarks.paper_jax_config                 # N = 8, 1024, 16384
    python -m benchmarks.paper_jax_config --sizes 8 1024  # fewer sizes

Both configurations solve the paper's Lorenz ensemble (u0 = (1, 0, 0), t in [0, 1],
rho = linspace(0, 21, N), float32) with Tsit5 at a constant dt = 1e-3 (1000 steps), saving only
the final state, on the same machine, interleaved repeat by repeat so that load drift hits both
alike. Each call is synchronised (``jax.block_until_ready``) before the clock stops; the paper's
script did not synchronise, which on an asynchronous backend times the dispatch only.

"paper" rebuilds the configuration of the artifact's ``GPU_ODE_JAX/bench_diffrax.py``
(utkarsh530/GPUODEBenchmarks), from its facts, not its code:

* the vector field is an ``equinox.Module`` holding rho, with sigma = 10 and beta = 8/3 written
  as literals, indexing ``y[0], y[1], y[2]`` and returning ``jnp.stack``;
* ``jax.jit`` of a per-trajectory ``main(rho)`` that calls
  ``diffeqsolve(ODETerm(f), Tsit5(), t0=0.0, t1=1.0, dt0=0.001, y0)`` with every other argument
  at diffrax's default (``ConstantStepSize``, ``SaveAt(t1=True)``, ``max_steps=4096``,
  ``throw=True``) and returns the whole ``Solution``;
* timed call: ``jax.vmap(main)(rho_values)``, a fresh vmap of the jitted function per call;
* ``timeit.repeat(..., repeat=100, number=1)`` and the minimum reported.

"ours" is ``solvers.peers.diffrax_backend`` as the harness runs it: ``jax.jit(jax.vmap(solve))``,
the rhs from the problem's single definition, ``max_steps = 1000`` (exactly n_steps),
``throw=False``, inputs placed on the device in an untimed prepare, returning only the final
state, the step counts and the status.

Prints, for each N, the min and median wall time of both, the ratio paper / ours (> 1: ours is
faster), and the min process CPU time of both (summed over XLA's threads). On a shared machine
the wall times move with other people's load; the CPU times much less so. It also checks that both
computed the same final states.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from solvers.base import SolveSpec
from solvers.registry import get_backend

DEFAULT_SIZES = (8, 1024, 16384)


def repeats_for(n: int) -> int:
    """Timed repeats per configuration: more where a call is short (keeps the run ~1-2 min)."""
    if n <= 64:
        return 30
    if n <= 4096:
        return 10
    return 3


def paper_configuration(n: int):
    """The paper script's configuration: returns a zero-argument callable doing one timed call."""
    import diffrax  # the JAX stack is optional: imported only when this benchmark runs
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    class PaperLorenz(eqx.Module):
        rho: float

        def __call__(self, t, y, args):
            return jnp.stack([
                10.0 * (y[1] - y[0]),
                self.rho * y[0] - y[1] - y[0] * y[2],
                y[0] * y[1] - (8 / 3) * y[2],
            ])

    @jax.jit
    def main(rho):
        y0 = jnp.array([1.0, 0.0, 0.0])
        return diffrax.diffeqsolve(diffrax.ODETerm(PaperLorenz(rho)), diffrax.Tsit5(),
                                   0.0, 1.0, 0.001, y0)

    rho_values = jnp.linspace(0.0, 21.0, n)

    def call():
        sol = jax.vmap(main)(rho_values)
        jax.block_until_ready(sol)
        return sol

    return call


def our_configuration(n: int):
    """Our diffrax backend, prepared as the harness prepares it; returns (call, fetch)."""
    spec = SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32", n=n)
    backend = get_backend("diffrax")
    reason = backend.check(spec)
    if reason:
        raise SystemExit(f"diffrax backend cannot run here: {reason}")
    prepared = backend.prepare(spec)

    def call():
        out = prepared.run()
        prepared.sync(out)
        return out

    return call, prepared.fetch


def _timed(call) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(n: int, repeats: int) -> dict:
    """Warm both up (compilation, untimed), then time them alternately ``repeats`` times each."""
    paper = paper_configuration(n)
    ours, fetch = our_configuration(n)
    paper_sol = paper()          # compiles
    ours_out = ours()            # compiles
    paper_times, our_times, paper_cpu, our_cpu = [], [], [], []
    for _ in range(repeats):
        wall, cpu = _timed(paper)
        paper_times.append(wall)
        paper_cpu.append(cpu)
        wall, cpu = _timed(ours)
        our_times.append(wall)
        our_cpu.append(cpu)

    # Same work, same answer: the final states agree and both took 1000 steps.
    ours_res = fetch(ours_out)
    paper_final = np.asarray(paper_sol.ys)[:, -1, :]
    scale = np.maximum(np.abs(paper_final).max(axis=1), 1.0)
    agreement = float(np.max(np.abs(ours_res.u_final - paper_final).max(axis=1) / scale))
    paper_steps = np.asarray(paper_sol.stats["num_steps"])
    return {
        "n": n, "repeats": repeats,
        "paper_min": min(paper_times), "paper_median": statistics.median(paper_times),
        "ours_min": min(our_times), "ours_median": statistics.median(our_times),
        "paper_cpu_min": min(paper_cpu), "ours_cpu_min": min(our_cpu),
        "max_scaled_difference": agreement,
        "steps": (int(paper_steps.min()), int(paper_steps.max()),
                  int(ours_res.accepted.min()), int(ours_res.accepted.max())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="ensemble sizes N (default: 8 1024 16384)")
    args = parser.parse_args(argv)
    if any(n <= 0 for n in args.sizes):
        raise ValueError(f"invalid --sizes {args.sizes}: every N must be a positive integer")

    import jax  # the JAX stack is optional: imported only when this benchmark runs

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; Lorenz, Tsit5, dt=1e-3 "
          f"(1000 steps), float32, final state only; times in ms, synchronised")
    header = (f"{'N':>6} {'reps':>4} | {'paper min':>10} {'paper med':>10} | {'ours min':>10} "
              f"{'ours med':>10} | {'ratio min':>9} {'ratio med':>9} | {'paper cpu':>10} "
              f"{'ours cpu':>10} {'ratio':>6} | {'max diff':>8}")
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        r = compare(n, repeats_for(n))
        steps = r["steps"]
        if steps[0] != 1000 or steps[1] != 1000 or steps[2] != 1000 or steps[3] != 1000:
            print(f"warning: step counts differ from 1000: paper {steps[:2]}, ours {steps[2:]}")
        print(f"{n:>6} {r['repeats']:>4} | "
              f"{1e3 * r['paper_min']:>10.2f} {1e3 * r['paper_median']:>10.2f} | "
              f"{1e3 * r['ours_min']:>10.2f} {1e3 * r['ours_median']:>10.2f} | "
              f"{r['paper_min'] / r['ours_min']:>9.2f} {r['paper_median'] / r['ours_median']:>9.2f} | "
              f"{1e3 * r['paper_cpu_min']:>10.2f} {1e3 * r['ours_cpu_min']:>10.2f} "
              f"{r['paper_cpu_min'] / r['ours_cpu_min']:>6.2f} | "
              f"{r['max_scaled_difference']:>8.1e}", flush=True)
    print("ratio = paper / ours: above 1 means our configuration is faster; "
          "cpu = min process CPU time over the repeats; max diff = largest difference of the final "
          "states, scaled by max(|u|, 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
