"""The clock: the one place where solves are timed.

For one prepared solve (``Prepared`` from a backend):

1. the first call, ``run()`` + ``sync()``, is timed on its own -> ``first_call_s``. It includes
   whatever the library compiles or traces on first use (Numba, XLA, CUDA module loading);
2. ``warmups`` more calls, untimed, continued (up to ``MAX_WARMUP_CALLS``) until they have
   taken at least ``MIN_WARMUP_S``: thread pools and frequency governors settle on a time
   scale, not a call count (seen: Numba's OpenMP pool ran ~8 ms per call for its first
   ~100 ms in a process, then 0.05 ms);
3. ``repeats`` timed calls, each ``t0 = perf_counter(); out = run(); sync(out);
   t = perf_counter() - t0``; every sample is kept. On a GPU each repeat is also timed with CUDA
   events (``device_time_s``): a start event recorded on the current stream just before the
   host clock starts, an end event recorded after ``sync`` returned, so the interval bounds the
   device work whatever stream the library used (its difference from ``time_s`` is host-side
   overhead around the solve, not launch overhead inside it);
4. ``compile_s = max(0, first_call_s - median(repeats))``: the first call's extra cost over a
   warm call. It is an estimate (the first call also runs the solve once); floored at 0 because
   noise can make a warm-ish first call faster than the median.

The garbage collector is paused during the timed repeats (as ``timeit`` does) so that a
collection triggered by earlier allocations does not land in one sample.
"""
from __future__ import annotations

import gc
import math
import statistics
from dataclasses import dataclass, field
from time import perf_counter
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
    """

    first_call_s: float
    samples: list[float]
    device_samples: list[float]
    compile_s: float
    output: Any = field(repr=False, default=None)
    device_timer: str = "none"


class EventTimer:
    """CUDA-event interval on the current stream, through cupy or torch (whichever imports).

    ``start()`` records the start event; ``stop()`` records the end event, waits for it and
    returns the elapsed seconds.
    """

    def __init__(self) -> None:
        try:
            import cupy

            self._start, self._end = cupy.cuda.Event(), cupy.cuda.Event()
            self._elapsed_ms = lambda: cupy.cuda.get_elapsed_time(self._start, self._end)
            self.name = "cupy events"
            return
        except Exception as cupy_exc:  # noqa: BLE001 - missing or unusable: try torch
            reason = f"cupy: {type(cupy_exc).__name__}"
        try:
            import torch

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


def time_solve(prepared: Any, repeats: int, warmups: int, device_timer: EventTimer | None = None,
               on_phase: Callable[[str], None] | None = None,
               min_warmup_s: float = MIN_WARMUP_S) -> Timing:
    """Time ``prepared.run()`` + ``prepared.sync(out)`` as described in the module docstring.

    Args:
        prepared: a ``solvers.base.Prepared`` (anything with ``run()`` and ``sync(out)``).
        repeats: number of timed repeats (>= 1).
        warmups: untimed calls between the first call and the repeats (>= 0); more are made
            while the warm-up has lasted less than ``min_warmup_s`` (at most MAX_WARMUP_CALLS).
        device_timer: an EventTimer for device time on a GPU, or None.
        on_phase: called with "first call", "warm-up", "repeats" as each phase starts (the
            runner reports it if the cell runs out of time).
    """
    if repeats < 1 or warmups < 0:
        raise ValueError(f"need repeats >= 1 and warmups >= 0, got {repeats}, {warmups}")
    phase = on_phase or (lambda name: None)
    run, sync = prepared.run, prepared.sync

    phase("first call")
    t0 = perf_counter()
    out = run()
    sync(out)
    first = perf_counter() - t0

    phase("warm-up")
    calls, w0 = 0, perf_counter()
    while calls < warmups or (perf_counter() - w0 < min_warmup_s and calls < MAX_WARMUP_CALLS):
        out = None  # drop the previous output first: no two results alive on the device
        out = run()
        sync(out)
        calls += 1

    phase("repeats")
    samples = [math.nan] * repeats
    device_samples = [math.nan] * repeats
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            out = None
            if device_timer is not None:
                device_timer.start()
            t0 = perf_counter()
            out = run()
            sync(out)
            samples[i] = perf_counter() - t0
            if device_timer is not None:
                device_samples[i] = device_timer.stop()
    finally:
        if gc_was_enabled:
            gc.enable()
    compile_s = max(0.0, first - statistics.median(samples))
    return Timing(first_call_s=first, samples=samples, device_samples=device_samples,
                  compile_s=compile_s, output=out,
                  device_timer=device_timer.name if device_timer is not None else "none")
