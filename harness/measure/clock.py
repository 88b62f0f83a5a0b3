"""The clock: the one place where solves are timed.

For one prepared solve (``Prepared`` from a backend):

1. the first call, ``run()`` + ``sync()``, is timed on its own -> ``first_call_s``. It includes
   whatever the library compiles or traces on first use (Numba, XLA, CUDA module loading);
2. ``warmups`` more calls, untimed, continued (up to ``MAX_WARMUP_CALLS``) until they have
   taken at least ``MIN_WARMUP_S``: thread pools and frequency governors settle on a time
   scale, not a call count (seen: Numba's OpenMP pool ran ~8 ms per call for its first
   ~100 ms in a process, then 0.05 ms); then continued until two consecutive warm calls agree
   within ``STABLE_TOL`` (10%), as long as the warm-up has lasted less than ``max_warmup_s``
   (seen: in 40 of 54 fused cells of a 1-warm-up run the first timed repeat was the slowest);
3. up to ``repeats`` timed calls, each ``t0 = perf_counter(); out = run(); sync(out);
   t = perf_counter() - t0``; every sample is kept. On a GPU each repeat is also timed with CUDA
   events (``device_time_s``): a start event recorded on the current stream just before the
   host clock starts, an end event recorded after ``sync`` returned, so the interval bounds the
   device work whatever stream the library used (its difference from ``time_s`` is host-side
   overhead around the solve, not launch overhead inside it);
   With a ``repeat_budget_s`` the repeats stop early once they have taken that long in total
   and at least ``min_repeats`` were made (a time box for large N); the count is recorded.
   The process's CPU time (all threads) over the repeats, divided by their wall time, is
   ``cpu_util``: 1.0 means one core busy, 2.0 two (NaN when the repeats took less than
   ``MIN_CPU_UTIL_WALL_S`` together: too short for the process clock);
4. ``compile_s = max(0, first_call_s - median(repeats))``: the first call's extra cost over a
   warm call. It is an estimate (the first call also runs the solve once); floored at 0 because
   noise can make a warm-ish first call faster than the median.

The garbage collector is paused during the timed repeats (as ``timeit`` does) so that a
collection triggered by earlier allocations does not land in one sample.

``time_repeats(fn, repeats)`` times any callable under the same rules (a sharded solve's
dispatch and gather, harness.run.shards; the developer scripts in benchmarks/variants/). ``measure_overhead``
times a solve that does nothing: what the clock itself adds to a sample
(``python -m harness overhead``).
"""
from __future__ import annotations

import gc
import math
import statistics
from dataclasses import dataclass, field
from time import perf_counter, process_time
from typing import Any, Callable


@dataclass
class Timing:
    """What the clock measured for one cell.

    first_call_s: wall time of the first run+sync.
    samples: wall time of each timed repeat (run+sync), seconds.
    device_samples: CUDA-event time of each repeat, seconds (NaN without a device timer).
    compile_s: first_call_s minus the median sample, floored at 0.
    output: the handle returned by the last timed run (for an untimed fetch).
    device_timer: how device_samples were taken ("cupy events", "torch events", "none: ...").
    cpu_util: process CPU time (all threads) / wall time over the timed repeats (NaN when they
        took less than MIN_CPU_UTIL_WALL_S together).
    warmup_calls: untimed calls made after the first; warmup_stable: whether the last two agreed
        within STABLE_TOL (False: the warm-up time bound ended it first).
    """

    first_call_s: float
    samples: list[float]
    device_samples: list[float]
    compile_s: float
    output: Any = field(repr=False, default=None)
    device_timer: str = "none"
    cpu_util: float = math.nan
    warmup_calls: int = 0
    warmup_stable: bool = False


class EventTimer:
    """CUDA-event interval on the current stream, through cupy or torch (whichever imports).

    ``start()`` records the start event; ``stop()`` records the end event, waits for it and
    returns the elapsed seconds.
    """

    def __init__(self) -> None:
        try:
            import cupy  # cupy is optional: the GPU clock uses whichever of cupy and torch imports

            self._start, self._end = cupy.cuda.Event(), cupy.cuda.Event()
            self._elapsed_ms = lambda: cupy.cuda.get_elapsed_time(self._start, self._end)
            self.name = "cupy events"
            return
        except Exception as cupy_exc:  # noqa: BLE001 - missing or unusable: try torch
            reason = f"cupy: {type(cupy_exc).__name__}"
        try:
            import torch  # torch is optional: the GPU clock uses whichever of cupy and torch imports

            if not torch.cuda.is_available():
                raise RuntimeError("torch.cuda is not available")
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)
            self._elapsed_ms = lambda: self._start.elapsed_time(self._end)
            self.name = "torch events"
        except Exception as torch_exc:  # noqa: BLE001
            raise RuntimeError(f"no CUDA event timer ({reason}; torch: {type(torch_exc).__name__}: {torch_exc})") from None

    def start(self) -> None:
        self._start.record()

    def stop(self) -> float:
        self._end.record()
        self._end.synchronize()
        return self._elapsed_ms() / 1e3


def make_device_timer(device: str) -> tuple[EventTimer | None, str]:
    """(timer, description): an EventTimer on "gpu" when one can be built, else (None, why)."""
    if device != "gpu":
        return None, "none: cpu"
    try:
        timer = EventTimer()
    except RuntimeError as exc:
        return None, f"none: {exc}"
    return timer, timer.name


#: Untimed warm-up continues until it has lasted this long (or MAX_WARMUP_CALLS were made).
MIN_WARMUP_S = 0.25
MAX_WARMUP_CALLS = 200
#: Warm-up goes on until two consecutive calls agree within this fraction ...
STABLE_TOL = 0.10
#: ... unless it has already lasted this long (a slow cell settles in its first warm call).
MAX_WARMUP_S = 1.0
#: Calls this close agree whatever their ratio: below ~0.1 ms the clock's own jitter dominates.
STABLE_ABS_S = 1e-4
#: ``cpu_util`` needs the repeats to last this long together, else it is NaN: Linux adds a
#: thread running on another core to the process's CPU time at scheduler ticks (4 ms at
#: 250 Hz), so over a shorter wall the ratio is noise (measured: 10.0 on 2 threads for a fused
#: N = 8 cell whose 7 repeats took 0.4 ms; every cell with 50 ms or more stayed <= 2.03).
MIN_CPU_UTIL_WALL_S = 0.02


def _agree(a: float, b: float, tol: float = STABLE_TOL) -> bool:
    return abs(a - b) <= tol * min(a, b) + STABLE_ABS_S


def time_call(run: Callable[[], Any], sync: Callable[[Any], None]) -> tuple[float, Any]:
    """(seconds, output) of one ``out = run(); sync(out)``: the timed region of every call."""
    t0 = perf_counter()
    out = run()
    sync(out)
    return perf_counter() - t0, out


def time_solve(prepared: Any, repeats: int, warmups: int, device_timer: EventTimer | None = None,
               on_phase: Callable[[str], None] | None = None,
               min_warmup_s: float = MIN_WARMUP_S, max_warmup_s: float = MAX_WARMUP_S,
               min_repeats: int | None = None, repeat_budget_s: float | None = None) -> Timing:
    """Time ``prepared.run()`` + ``prepared.sync(out)`` as described in the module docstring.

    Args:
        prepared: a ``solvers.base.Prepared`` (anything with ``run()`` and ``sync(out)``).
        repeats: number of timed repeats (>= 1), the most made.
        warmups: untimed calls between the first call and the repeats (>= 0); more are made
            while the warm-up has lasted less than ``min_warmup_s``, and then until two
            consecutive calls agree within STABLE_TOL while it has lasted less than
            ``max_warmup_s`` (at most MAX_WARMUP_CALLS in all).
        min_repeats, repeat_budget_s: stop the repeats once they have taken ``repeat_budget_s``
            seconds in total, but not before ``min_repeats`` (default: ``repeats``, no box).
        device_timer: an EventTimer for device time on a GPU, or None.
        on_phase: called with "first call", "warm-up", "repeats" as each phase starts (the
            runner reports it if the cell runs out of time).
    """
    if repeats < 1 or warmups < 0:
        raise ValueError(f"need repeats >= 1 and warmups >= 0, got {repeats}, {warmups}")
    min_repeats = repeats if min_repeats is None else max(1, min(min_repeats, repeats))
    phase = on_phase or (lambda name: None)
    run, sync = prepared.run, prepared.sync

    phase("first call")
    first, out = time_call(run, sync)

    phase("warm-up")
    calls, w0, warm = 0, perf_counter(), []
    while calls < MAX_WARMUP_CALLS:
        elapsed = perf_counter() - w0
        stable = len(warm) >= 2 and _agree(warm[-1], warm[-2])
        if calls >= warmups and elapsed >= min_warmup_s and (stable or elapsed >= max_warmup_s):
            break
        out = None  # drop the previous output first: no two results alive on the device
        seconds, out = time_call(run, sync)
        warm.append(seconds)
        calls += 1
    stable = len(warm) >= 2 and _agree(warm[-1], warm[-2])

    phase("repeats")
    samples: list[float] = []
    device_samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        wall0, cpu0 = perf_counter(), process_time()
        for i in range(repeats):
            if i >= min_repeats and repeat_budget_s is not None and sum(samples) >= repeat_budget_s:
                break
            out = None
            if device_timer is not None:
                device_timer.start()
            t0 = perf_counter()
            out = run()
            sync(out)
            samples.append(perf_counter() - t0)
            device_samples.append(device_timer.stop() if device_timer is not None else math.nan)
        wall, cpu = perf_counter() - wall0, process_time() - cpu0
    finally:
        if gc_was_enabled:
            gc.enable()
    compile_s = max(0.0, first - statistics.median(samples))
    return Timing(first_call_s=first, samples=samples, device_samples=device_samples,
                  compile_s=compile_s, output=out,
                  device_timer=device_timer.name if device_timer is not None else "none",
                  cpu_util=cpu / wall if wall >= MIN_CPU_UTIL_WALL_S else math.nan,
                  warmup_calls=calls, warmup_stable=stable)


class _Call:
    """A callable as a prepared solve: ``run()`` calls it, ``sync`` has nothing to wait for."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.run = fn

    def sync(self, out: Any) -> None:
        return None


def time_repeats(fn: Callable[[], Any], repeats: int, warmups: int = 0,
                 on_phase: Callable[[str], None] | None = None) -> list[float]:
    """Seconds of each of ``repeats`` timed calls of ``fn()``, after the clock's untimed first
    call and warm-up, with the garbage collector paused: ``time_solve``'s rules for a callable
    that returns when its work is done (``fn`` does its own sync)."""
    return time_solve(_Call(fn), repeats, warmups, on_phase=on_phase).samples


def measure_overhead(repeats: int = 10_000, trials: int = 7) -> dict[str, float]:
    """What the clock adds per repeat, in seconds (median over ``trials`` runs of ``repeats``):

    * ``in_region_s``: the median sample of a no-op ``run()`` + ``sync()``: the bias of every
      reported time (two ``perf_counter`` calls and two method calls);
    * ``loop_s``: the wall time of the whole timed loop (the clock, list stores, the gc pause)
      per call: the harness's full cost per repeat, inside and outside the timed region.
    """
    in_region, loop = [], []
    noop = _Call(lambda: None)
    for _ in range(trials):
        t0 = perf_counter()
        timing = time_solve(noop, repeats=repeats, warmups=0)
        elapsed = perf_counter() - t0
        in_region.append(statistics.median(timing.samples))
        loop.append(elapsed / (repeats + 1))  # + the first call
    return {"in_region_s": statistics.median(in_region), "loop_s": statistics.median(loop)}
