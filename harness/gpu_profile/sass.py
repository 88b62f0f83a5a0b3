"""Read what the CUDA tools say about a kernel: ``ptxas -v`` resources, the SASS instruction
mix of its main loop, and the occupancy that follows. Works on any cubin (Numba's PTX or a
hand-written CUDA C++ kernel alike).

**How "per step" is found.** A time-stepping kernel runs its step in a loop, which in SASS is a
*backward branch*: a ``BRA`` whose target label lies at or before the branch. The time loop is
the backward branch with the largest span (it encloses any inner loop, such as a save loop);
a branch to itself (the ``BRA`` trap ptxas appends after ``EXIT``) is not a loop. Its body is
every instruction from the target label to the branch, inclusive, ``NOP`` padding excluded.
These are *static* counts of one iteration: straight-line code (the fixed step, the adaptive
attempt, which the generator writes with selects) executes each once per iteration; a forward
branch inside the body (an early ``break``, a division's slow path is a ``CALL`` outside the
loop) makes the count an upper bound of what a typical iteration executes. The generated loops
are not unrolled (one time-loop backward branch per kernel, checked by ``loop_count``), so one
iteration is one step (fixed) or one attempt (adaptive).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

# ---- ptxas -v -------------------------------------------------------------------------------------

_RE_FUNC = re.compile(r"(?:Compiling entry function|Function properties for) '?([^'\s]+)'?")
_RE_REGS = re.compile(r"Used (\d+) registers")
_RE_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RE_LMEM = re.compile(r"(\d+) bytes lmem")


@dataclass(frozen=True)
class Resources:
    """Per-thread resources of one kernel, from ``ptxas -v``."""

    registers: int
    stack_bytes: int
    spill_store_bytes: int
    spill_load_bytes: int
    local_bytes: int


def parse_ptxas(log: str) -> dict[str, Resources]:
    """Function name -> resources, for every entry function ``ptxas -v`` reported."""
    out: dict[str, dict] = {}
    current = None
    for line in log.splitlines():
        m = _RE_FUNC.search(line)
        if m:
            current = m.group(1)
            out.setdefault(current, {})
        if current is None:
            continue
        d = out[current]
        if (m := _RE_SPILL.search(line)):
            d.update(stack=int(m.group(1)), st=int(m.group(2)), ld=int(m.group(3)))
        if (m := _RE_REGS.search(line)):
            d["regs"] = int(m.group(1))
        if (m := _RE_LMEM.search(line)):
            d["lmem"] = int(m.group(1))
    return {name: Resources(d.get("regs", 0), d.get("stack", 0), d.get("st", 0), d.get("ld", 0),
                            d.get("lmem", 0) + d.get("stack", 0))
            for name, d in out.items() if "regs" in d}


# ---- SASS -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instr:
    addr: int
    opcode: str   # full opcode with modifiers, e.g. "FFMA", "MUFU.RCP", "DADD", "LDG.E.64"
    text: str     # operands


_RE_INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:\{\s*)?(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_RE_LABEL = re.compile(r"^\s*(\.L_x_\d+|\.L_\w+):")
_RE_SECTION = re.compile(r"^\s*\.section\s+\.text\.([^,\s]+)")
_RE_TARGET = re.compile(r"`\((\.L_\w+)\)")


def split_functions(sass: str) -> dict[str, list[str]]:
    """Function name -> its SASS lines (nvdisasm ``-c`` output may hold several functions)."""
    funcs: dict[str, list[str]] = {}
    current = None
    for line in sass.splitlines():
        m = _RE_SECTION.match(line)
        if m:
            current = m.group(1)
            funcs[current] = []
        elif current is not None:
            funcs[current].append(line)
    return funcs


def parse_sass(lines: list[str]) -> tuple[list[Instr], dict[str, int]]:
    """(instructions in address order, label -> address of the instruction it precedes)."""
    instrs: list[Instr] = []
    labels: dict[str, int] = {}
    pending: list[str] = []
    for line in lines:
        lm = _RE_LABEL.match(line)
        if lm:
            pending.append(lm.group(1))
            continue
        m = _RE_INSTR.search(line)
        if m:
            ins = Instr(int(m.group(1), 16), m.group(3), m.group(4))
            for name in pending:
                labels[name] = ins.addr
            pending = []
            instrs.append(ins)
    return instrs, labels


@dataclass(frozen=True)
class Loop:
    start: int  # address of the first instruction of the body
    end: int    # address of the backward branch


def backward_branches(instrs: list[Instr], labels: dict[str, int]) -> list[Loop]:
    """Every loop (backward branch to an earlier label; self-branches excluded)."""
    loops = []
    for ins in instrs:
        if not ins.opcode.startswith("BRA"):
            continue
        m = _RE_TARGET.search(ins.text)
        if m and m.group(1) in labels and labels[m.group(1)] < ins.addr:
            loops.append(Loop(labels[m.group(1)], ins.addr))
    return loops


def main_loop(instrs: list[Instr], labels: dict[str, int]) -> tuple[Loop | None, int]:
    """(the outermost loop: the backward branch of largest span, number of loops)."""
    loops = backward_branches(instrs, labels)
    if not loops:
        return None, 0
    return max(loops, key=lambda lp: (lp.end - lp.start, -lp.start)), len(loops)


#: Instruction classes, in the order of the profile's columns.
CLASSES = ("ffma", "fmul", "fadd", "fp32_other", "fp64", "mufu", "conversion", "integer",
           "control", "global_load", "global_store", "local_mem", "shared_mem", "other")

_FP32_OTHER = {"FMNMX", "FSETP", "FSEL", "FSET", "FCHK", "FSWZADD", "FRND", "FMNMX3", "FADD32I",
               "FMUL32I", "FFMA32I", "FTZ"}
_FP64 = {"DFMA", "DMUL", "DADD", "DSETP", "DMNMX", "DSET", "DMMA"}
_CONV = {"F2F", "F2I", "I2F", "I2I", "F2FP", "I2FP", "F2IP", "FRND"}
_INT = {"IMAD", "IADD3", "IADD", "IADD32I", "LOP3", "LOP", "SHF", "SHL", "SHR", "ISETP", "LEA",
        "IMNMX", "SEL", "PRMT", "POPC", "FLO", "BREV", "IABS", "IMUL", "LEA", "PLOP3", "P2R",
        "R2P", "ICMP", "ISCADD", "BMSK", "VIADD", "VIMNMX", "IMAD32I", "LOP32I", "MOV", "MOV32I",
        "CS2R", "S2R", "S2UR", "R2UR", "SGXT", "IDP", "I2IP", "VABSDIFF"}
_CONTROL = {"BRA", "EXIT", "BSSY", "BSYNC", "WARPSYNC", "CALL", "RET", "JMP", "JMX", "BRX", "BAR",
            "BPT", "YIELD", "BREAK", "SSY", "SYNC", "PBK", "KILL", "ACQBULK", "ELECT", "VOTE", "VOTEU"}


def classify(opcode: str) -> str:
    """The class (one of :data:`CLASSES`) of a SASS opcode with its modifiers."""
    parts = opcode.split(".")
    base = parts[0]
    mods = set(parts[1:])
    if base == "FFMA":
        return "ffma"
    if base == "FMUL":
        return "fmul"
    if base == "FADD":
        return "fadd"
    if base in _FP64 or (base in _CONV and "F64" in mods):
        return "fp64"
    if base == "MUFU":
        return "mufu"
    if base in _FP32_OTHER:
        return "fp32_other"
    if base in _CONV:
        return "conversion"
    if base in ("LDG", "LD") or (base == "ATOMG"):
        return "global_load"
    if base in ("STG", "ST", "RED", "ATOM", "REDG"):
        return "global_store"
    if base in ("LDL", "STL"):
        return "local_mem"
    if base in ("LDS", "STS", "LDSM", "ATOMS"):
        return "shared_mem"
    if base in _CONTROL:
        return "control"
    if base in _INT or (base.startswith("U") and base[1:] in _INT | {"LDC", "MOV", "SEL"}):
        return "integer"
    return "other"


def count_classes(instrs: list[Instr]) -> Counter:
    """Instruction count per class (NOPs excluded)."""
    return Counter(classify(i.opcode) for i in instrs if not i.opcode.startswith("NOP"))


@dataclass
class LoopProfile:
    """The instruction mix of a kernel's main loop (one iteration), and of the whole kernel."""

    found: bool
    loop_count: int
    per_iteration: dict[str, int] = field(default_factory=dict)
    total_in_loop: int = 0
    kernel_instructions: int = 0
    opcodes: dict[str, int] = field(default_factory=dict)
    unroll: int = 1   # time steps per iteration of the loop (see unroll_factor)


_FP32_CLASSES = ("ffma", "fmul", "fadd")


def unroll_factor(real: list[Instr], labels: dict[str, int], loop: Loop) -> int:
    """Steps per iteration of ``loop`` when the compiler unrolled it by k with one step peeled.

    LLVM's runtime unrolling by 2 (seen: NVVM on Numba's RK4 loop, nvcc on the C++ RK4 loop)
    puts one copy of the body in a block skipped by a forward branch: just before the loop's
    head (prologue) or just after its back-branch (epilogue). When such a block exists and the
    loop holds exactly k >= 2 times its FFMA, FMUL and FADD counts, the loop does k steps per
    iteration; otherwise 1.
    """
    body = count_classes([i for i in real if loop.start <= i.addr <= loop.end])

    def target(ins):
        m = _RE_TARGET.search(ins.text) if ins.opcode.startswith("BRA") else None
        return labels.get(m.group(1)) if m else None

    # Every block outside the loop that a forward branch skips: the peeled step may sit right
    # before the head, right after the back-branch, or further out (seen once the kernels count
    # their steps by increments: the counters' code moves the peeled block).
    blocks = []
    for ins in real:
        t = target(ins)
        if t is None or t <= ins.addr or (loop.start <= ins.addr <= loop.end):
            continue
        if t <= loop.start or ins.addr > loop.end:
            blocks.append((ins.addr, t))
    for lo, hi in blocks:
        block = count_classes([i for i in real if lo < i.addr < hi])
        if block["ffma"] == 0 or body["ffma"] % block["ffma"]:
            continue
        k = body["ffma"] // block["ffma"]
        if k >= 2 and all(body[c] == k * block[c] for c in _FP32_CLASSES):
            return k
    return 1


def loop_profile(lines: list[str]) -> LoopProfile:
    """Profile the main loop of one function's SASS lines: counts per time step (per iteration,
    divided by the steps an unrolled iteration holds, ``unroll``)."""
    instrs, labels = parse_sass(lines)
    real = [i for i in instrs if not i.opcode.startswith("NOP")]
    loop, n_loops = main_loop(instrs, labels)
    if loop is None:
        return LoopProfile(False, 0, {c: 0 for c in CLASSES}, 0, len(real), {})
    body = [i for i in real if loop.start <= i.addr <= loop.end]
    counts = count_classes(body)
    ops = Counter(i.opcode.split(".")[0] for i in body)
    # Per time step: an unrolled loop's iteration divided by its steps (the FP32 classes divide
    # exactly by construction; integer and control counts are rounded).
    k = unroll_factor(real, labels, loop)
    return LoopProfile(True, n_loops, {c: int(round(counts.get(c, 0) / k)) for c in CLASSES},
                       int(round(len(body) / k)), len(real), dict(sorted(ops.items())), k)


# ---- occupancy --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SMLimits:
    """Per-SM limits of a compute capability (CUDA C Programming Guide, "Technical
    Specifications per Compute Capability" table)."""

    registers: int = 65536
    max_regs_per_thread: int = 255
    max_warps: int = 64
    max_blocks: int = 32
    max_threads_per_block: int = 1024
    reg_alloc_unit: int = 256   # registers are allocated per warp in units of 256
    schedulers: int = 4


SM_LIMITS = {
    "sm_70": SMLimits(max_warps=64, max_blocks=32),
    "sm_75": SMLimits(max_warps=32, max_blocks=16),
    "sm_80": SMLimits(max_warps=64, max_blocks=32),
    "sm_86": SMLimits(max_warps=48, max_blocks=16),
    "sm_89": SMLimits(max_warps=48, max_blocks=24),
    "sm_90": SMLimits(max_warps=64, max_blocks=32),
}


def limits(arch: str) -> SMLimits:
    """The SM limits of ``arch`` (the common Volta-to-Hopper values for one not listed)."""
    return SM_LIMITS.get(arch, SMLimits())


def regs_per_warp(regs: int, lim: SMLimits) -> int:
    return math.ceil(max(regs, 1) * 32 / lim.reg_alloc_unit) * lim.reg_alloc_unit


def max_threads_per_block(regs: int, lim: SMLimits) -> int:
    """The largest launchable block (a multiple of 32) given the registers per thread."""
    warps = lim.registers // regs_per_warp(regs, lim)
    return int(min(lim.max_threads_per_block, warps * 32))


def occupancy(regs: int, block: int, arch: str) -> tuple[int, float]:
    """(resident warps per SM, theoretical occupancy) at ``block`` threads per block
    (registers the only other limit: the fused kernels use no shared memory)."""
    lim = limits(arch)
    warps_per_block = math.ceil(block / 32)
    by_regs = lim.registers // (regs_per_warp(regs, lim) * warps_per_block)
    by_warps = lim.max_warps // warps_per_block
    blocks = min(by_regs, by_warps, lim.max_blocks)
    warps = blocks * warps_per_block
    return warps, warps / lim.max_warps
