"""Was the machine busy while a cell ran? The load it ran under, recorded beside its time.

A busy machine does not slow every backend alike: peers that synchronise their threads every step
suffer far more than the fused kernel's one parallel region (on 2 loaded cores the 2-thread fused
kernel took 15.9 ms against 69.5 us at 1 thread), so contended timings can flip a verdict. Every
row therefore carries the load measured just before and just after its timed repeats, and a cell is
marked ``contended`` when other processes had more runnable threads than the cores the cell left
free.

Other processes' runnable threads are counted from /proc (state ``R`` of every task outside this
process): unlike the load average, that count is immediate and excludes the cell's own threads
(which may still spin in their pool after a parallel region). The 1-minute load average is kept as
well because a reader knows it. Off Linux the counts are NaN and nothing is marked.

A virtual machine is also slowed by what it cannot see: other guests on the host's cores. The
hypervisor reports that time as *steal* (/proc/stat), the time this machine's vCPUs wanted to run
and did not; a cell is also ``contended`` when steal took at least ``STEAL_LIMIT`` of the CPU time
during its timed repeats. Measured on the 2-core Zen 4 VM of issue 29: steal stays at 0 ticks while
the fused fixed Lorenz kernel runs at its usual 0.98 ns per step, and was 5-15% of the CPU time
whenever the same kernel ran 1.5-2.1x slower, which no count of this machine's own processes shows.
"""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from harness.measure.threads import cpu_count

#: Samples per measurement, and the pause between them: a busy loop is runnable at every sample,
#: a short-lived process at few, and the median keeps the latter from marking a cell.
SAMPLES = 3
INTERVAL_S = 0.01


#: Steal (host time given to other guests) from this fraction of the CPU time up marks a cell.
STEAL_LIMIT = 0.02


@dataclass(frozen=True)
class CpuTicks:
    """All cores' CPU-time counters at one moment (/proc/stat, USER_HZ ticks)."""
    total: float  # user + nice + system + idle + iowait + irq + softirq + steal
    steal: float  # time the vCPUs were ready to run while the hypervisor ran another guest


@dataclass(frozen=True)
class Load:
    load1: float           # 1-minute load average
    others_runnable: float  # median runnable threads of other processes
    ticks: CpuTicks | None = None  # the CPU counters when it was measured (None off Linux)


def cpu_ticks(stat: Path = Path("/proc/stat")) -> CpuTicks | None:
    """The machine's CPU-time counters now (the first, all-cores line of ``stat``); None
    without /proc or with a line this does not know."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    try:
        vals = [float(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    except ValueError:
        return None
    return CpuTicks(total=sum(vals), steal=vals[7])


def steal_fraction(before: CpuTicks | None, after: CpuTicks | None) -> float:
    """The fraction of all cores' CPU time between two readings that the host stole (NaN when
    either is missing or no tick passed between them: too short to tell)."""
    if before is None or after is None or after.total <= before.total:
        return math.nan
    return max(0.0, after.steal - before.steal) / (after.total - before.total)


def _runnable_tasks_of_others(proc: Path = Path("/proc")) -> float:
    """Threads in state R that belong to processes other than this one (NaN without /proc)."""
    me = str(os.getpid())
    count = 0
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit() and p != me]
    except OSError:
        return math.nan
    for pid in pids:
        try:
            tasks = os.listdir(proc / pid / "task")
        except OSError:  # the process ended while we looked
            continue
        for tid in tasks:
            try:
                stat = (proc / pid / "task" / tid / "stat").read_text()
            except OSError:
                continue
            # the state follows the command name, which is in parentheses and may hold spaces
            if stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "R":
                count += 1
    return float(count)


def measure(samples: int = SAMPLES, interval_s: float = INTERVAL_S) -> Load:
    """The machine's load now: the 1-minute load average and the median of ``samples`` counts of
    other processes' runnable threads."""
    counts = []
    for i in range(samples):
        if i:
            time.sleep(interval_s)
        counts.append(_runnable_tasks_of_others())
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = math.nan
    return Load(load1, statistics.median(counts), cpu_ticks())


def is_contended(before: Load, after: Load, threads: int, cores: int | None = None) -> bool:
    """Whether other processes wanted more cores than the cell left free, before or after it,
    or the host stole at least ``STEAL_LIMIT`` of the CPU time between the two readings."""
    cores = cores if cores is not None else cpu_count()
    free = max(0, cores - threads)
    others = max((x.others_runnable for x in (before, after) if not math.isnan(x.others_runnable)),
                 default=math.nan)
    steal = steal_fraction(before.ticks, after.ticks)
    return bool((not math.isnan(others) and others > free) or (not math.isnan(steal) and steal >= STEAL_LIMIT))


def columns(before: Load, after: Load, threads: int) -> dict[str, object]:
    """The results columns of one cell's load (harness.results.schema)."""
    others = max(before.others_runnable, after.others_runnable)
    return {"load_before": before.load1, "load_after": after.load1, "others_runnable": others,
            "steal": steal_fraction(before.ticks, after.ticks), "contended": is_contended(before, after, threads)}


def busy_warning(threads: int | None = None) -> str | None:
    """One line for the start of a run when the machine is already busy, else None."""
    load = measure()
    cores = cpu_count()
    threads = threads if threads is not None else cores
    if not is_contended(load, load, threads, cores):
        return None
    return (f"warning: this machine is busy ({load.others_runnable:.0f} runnable threads of other "
            f"processes, load average {load.load1:.1f} on {cores} cores): timings will be "
            "contended; such cells are marked `contended` in results.csv and in the report")
