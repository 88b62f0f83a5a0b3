"""What each part of the adaptive lane step costs, against the fixed step (issue 29; not a test).

    python -m benchmarks.variants.fused_parts                  # Lorenz Tsit5 float32, 1e-6, one thread
    python -m benchmarks.variants.fused_parts --rounds 40 --threads 2

The adaptive lane kernel is timed beside copies of itself with parts taken out, and beside the
fixed-step kernel, in interleaved rounds (every kernel once per round, so a host whose speed
drifts moves them alike). The copies are the generated module's source with one documented
edit each. They are **not valid solvers**: they exist to measure what a part costs.

- ``full``: the adaptive kernel as ``codegen`` generates it.
- ``no-log-exp``: the controller's log and exp taken out. The next step size is ``h * 1.2``
  after an accepted attempt and ``h * 0.5`` after a rejected one, the controller memory is kept,
  and LLVM drops the now-unused log/exp chain.
- ``no-log-exp-no-norm``: also no error norm. The attempt's error and scale lines are removed,
  and EEst² is ``3 * |yn_0 - y_0|``, enough to accept and reject at about the same rate.
  What is left is the two-pass skeleton: the stages, the state and record rows, the commit's
  selects and the status checks.
- ``fixed``: the fixed-step kernel at the problem's fixed step.

Each row gives ns per step taken (accepted + rejected, summed over trajectories: the edited
copies take a different number of steps, so per step is the comparable unit), the min and
the median over every sample, steps per trajectory, and the ratio to the fixed step.
Everything is compiled in this process from the current generator; the first call (compile)
is not timed.
"""
from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

import numba

from harness.measure.clock import time_repeats
from solvers.base import SolveSpec
from solvers.fused import codegen
from solvers.fused.backend import FusedBackend
from solvers.fused.build import import_file, kernel_args, make_outputs, spec_inputs

_CONTROL = re.compile(r"^(\s+)dta(__\d+)?, dtr(__\d+)?, lmn(__\d+)? = \(.*$")
_CONTROL_H = re.compile(r"\b(_control\d+)_h(__\d+)?\b")
_NORM_LINE = re.compile(r"^\s+_attempt\d+_(err|sc)\d+(__\d+)? = ")
_SSQ = re.compile(r"^(\s+)(_attempt\d+)_ssq(__\d+)? = .*$")


def _edit(source: str, name: str, fn) -> str:
    """Apply ``fn`` to each line; fail when it changed no line (the generator's output moved on)."""
    lines = source.split("\n")
    out = [v for line in lines for v in fn(line)]
    if out == lines:
        raise RuntimeError(f"fused_parts: edit {name!r} matched no line of the generated kernel "
                           "(the generator's output changed: update benchmarks/variants/fused_parts.py)")
    return "\n".join(out)


def without_log_exp(source: str) -> str:
    """The controller's step-size law replaced by x1.2 on accept, x0.5 on reject."""
    def fn(line: str) -> list[str]:
        m = _CONTROL.match(line)
        if not m:
            return [line]
        h = _CONTROL_H.search(line)
        if h is None:
            raise RuntimeError("fused_parts: the controller line names no step size")
        piece, suf = h.group(1), h.group(2) or ""
        ind, s = m.group(1), m.group(2) or ""
        return [f"{ind}dta{s}, dtr{s}, lmn{s} = ({piece}_h{suf} * _sel({piece}_ssq{suf} <= _NSTATES, "
                f"_T(1.2), _T(0.5)), {piece}_h{suf} * _T(0.5), {piece}_lm{suf})"]
    return _edit(source, "no-log-exp", fn)


def without_norm(source: str) -> str:
    """The attempt's error norm replaced by EEst^2 = 3 |yn_0 - y_0|."""
    def fn(line: str) -> list[str]:
        if _NORM_LINE.match(line):
            return []
        m = _SSQ.match(line)
        if not m:
            return [line]
        ind, p, suf = m.group(1), m.group(2), m.group(3) or ""
        return [f"{ind}{p}_ssq{suf} = abs({p}_yn0{suf} - {p}_y0{suf}) * _T(3.0)"]
    return _edit(source, "no-error-norm", fn)


EDITS = {
    "full": lambda s: s,
    "no-log-exp": without_log_exp,
    "no-log-exp-no-norm": lambda s: without_norm(without_log_exp(s)),
}


class _Kernel:
    """One generated lane kernel (edited or not) with its inputs and outputs, ready to time."""

    def __init__(self, name: str, source: str, spec: SolveSpec, folder: Path) -> None:
        self.name, self.samples = name, []
        path = folder / f"fused_parts_{name.replace('-', '_')}.py"
        path.write_text(source)
        self.mod = import_file(path)
        inputs = spec_inputs(spec)
        self.args = kernel_args(inputs, make_outputs(inputs))
        self.run()  # compiles
        stats = self.args[13]
        self.steps = float(stats[0].sum() + stats[1].sum())
        self.n = spec.n

    def run(self) -> None:
        self.mod.solve_lanes(*self.args)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--lanes", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-6, help="rtol = atol of the adaptive kernels")
    ap.add_argument("--threads", type=int, default=1, help="Numba threads (1: one core, the steadiest)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per kernel and round")
    ap.add_argument("--rounds", type=int, default=25)
    args = ap.parse_args(argv)
    if not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
        ap.error(f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}")
    if not 1 <= args.lanes <= 1024:
        ap.error("--lanes must be between 1 and 1024")
    for flag in ("n", "repeats", "rounds"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be at least 1")
    if not 0 < args.tol < 1:
        ap.error("--tol must be between 0 and 1")
    numba.set_num_threads(args.threads)

    backend = FusedBackend(lanes=args.lanes)
    base = dict(problem="lorenz", method="tsit5", dtype="float32", n=args.n)
    adaptive = SolveSpec(mode="adaptive", rtol=args.tol, atol=args.tol, **base)
    fixed = SolveSpec(mode="fixed", **base)
    source = codegen.generate_source(backend.kernel_key(adaptive))
    with tempfile.TemporaryDirectory() as tmp:
        kernels = [_Kernel(name, edit(source), adaptive, Path(tmp)) for name, edit in EDITS.items()]
        kernels.append(_Kernel("fixed", codegen.generate_source(backend.kernel_key(fixed)), fixed, Path(tmp)))
        for _ in range(args.rounds):
            for k in kernels:
                k.samples += time_repeats(k.run, args.repeats)
    fixed_min = min(kernels[-1].samples) / kernels[-1].steps
    print(f"# lorenz tsit5 float32, adaptive at rtol = atol = {args.tol:g}, N = {args.n}, {args.lanes} lanes, "
          f"{args.threads} thread(s), {args.rounds} interleaved rounds of {args.repeats} repeats")
    print(f"{'kernel':<22}{'ns/step min':>12}{'median':>9}{'steps/traj':>12}{'min / fixed':>13}")
    for k in kernels:
        lo, med = min(k.samples) / k.steps * 1e9, statistics.median(k.samples) / k.steps * 1e9
        print(f"{k.name:<22}{lo:>12.3f}{med:>9.3f}{k.steps / k.n:>12.1f}{lo / (fixed_min * 1e9):>12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
