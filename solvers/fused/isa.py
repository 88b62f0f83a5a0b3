"""Where a lane kernel's time goes, per ISA: its assembly and instructions per lane-step.

The CPU lane kernel (``_block`` of a generated module) is compiled for this machine or for
another LLVM CPU (``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` in a child process: it is only
compiled there, never run, so AVX-512 code can be read on an AVX2 machine) and its assembly
is split into loops. The vectorised lane loops are the innermost loops inside the block's
time loop; for each, the instructions of one iteration are counted by kind and divided by
the lanes one iteration serves, so the sum over the loops is the instructions one lane
spends on one step (fixed) or one step attempt (adaptive), comparable across ISAs. Where LLVM
unrolled a block's lane loops away (e.g. 32 lanes interleaved in pairs of 16-lane AVX-512
vectors: one iteration each), the time loop is the body, one iteration serving all lanes.

    python -m solvers.fused.isa                          # host, Lorenz Tsit5 float32 adaptive
    python -m solvers.fused.isa --cpu znver4 --mode fixed --lanes 64
    python -m solvers.fused.isa --cpu host --mca     # + llvm-mca's cycles (if on PATH)
    python -m solvers.fused.isa --cpu znver4 znver3 --mode fixed adaptive --mca   # both ISAs

``--mca`` feeds each lane loop to ``llvm-mca`` (LLVM's machine-code analyser, for the same
CPU model) for the cycles per lane-step the execution ports allow (a floor, no dependencies)
and its estimate with dependencies (lane loops: the steady state of independent iterations;
a time loop: one attempt alone, since the next waits on it through memory, which llvm-mca
does not model): the floor of a kernel on that ISA, in
cycles; divide by the clock (``solvers.fused.peak``: the measured FMA peak over the FMA
ports' lanes) for nanoseconds.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numba

from solvers.fused.build import load_module
from solvers.fused.codegen import KernelKey, pass_interleave
from solvers.fused.peak import cpu_isa
from solvers.fused.purity import sample_args

#: LLVM CPUs worth comparing: the features to force (empty: the CPU's defaults) and the
#: adaptive lane layout ``KernelKey.lane_layout="auto"`` picks on such a machine.
TARGETS = {"znver3": ("", "two-pass"), "znver4": ("+avx512f", "one-pass"),
           "skylake-avx512": ("+avx512f", "one-pass")}

_KINDS = [  # (kind, pattern on the mnemonic), first match wins
    ("fma", r"^vf(n)?m(add|sub)"),
    ("mul", r"^vmul[ps][sd]$"),
    ("add/sub", r"^v(add|sub)[ps][sd]$"),
    ("div/sqrt", r"^v(div|sqrt)[ps][sd]$"),
    ("min/max", r"^v(min|max)[ps][sd]$"),
    ("compare", r"^v(p?cmp|ucomis|comis)"),
    ("blend/select", r"^v(p?blend|pternlog)"),
    ("masked store", r"^v(p?maskmov)"),
    ("gather", r"^v(p?gather)"),
    ("logic", r"^v(p?and|p?or|p?xor|p?andn)"),
    ("convert/round", r"^v(cvt|round|rndscale)"),
    ("int vector", r"^vp(add|sub|sll|srl|sra|slld|srld|srad|mov[sz]x|pack|shuf|broadcast)"),
    ("shuffle/extract", r"^v(extract|insert|perm|shuf|unpck|broadcast|movsh|movsl)"),
    ("call", r"^call"),
]


def _block_asm_here(key: KernelKey) -> str:
    mod = load_module(key)
    args = (0,) + sample_args(key)
    sig = tuple(numba.typeof(a) for a in args)
    mod._block.compile(sig)
    return mod._block.inspect_asm(sig)


def block_asm(key: KernelKey, cpu: str | None = None) -> str:
    """Assembly of ``key``'s lane-block function for LLVM CPU ``cpu`` (None: this machine)."""
    if key.target != "cpu":
        raise ValueError("block_asm needs a cpu key")
    if cpu is None:
        return _block_asm_here(key)
    env = dict(os.environ)
    env["NUMBA_CPU_NAME"] = cpu
    env["NUMBA_CPU_FEATURES"] = TARGETS.get(cpu, ("",))[0] or "+sse2"
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        env["NUMBA_CACHE_DIR"] = tmp  # never mix cross-compiled objects into the real cache
        code = ("import sys; from solvers.fused.codegen import KernelKey; "
                "from solvers.fused.isa import _block_asm_here; "
                f"sys.stdout.write(_block_asm_here(KernelKey(**{key.__dict__!r})))")
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             cwd=root, timeout=900)
    if out.returncode:
        raise RuntimeError(f"compiling for {cpu} failed: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout


def _instructions(asm: str) -> tuple[list[str], dict[str, int]]:
    """Instruction lines of the first function (the compiled ``_block``) and label positions."""
    lines, labels = [], {}
    started = False
    for raw in asm.splitlines():
        s = raw.strip()
        if not s or s.startswith(("#", ".p2align", ".cfi", ".section", ".globl", ".type", ".text")):
            continue
        m = re.match(r"^(\.?[\w.$]+):", s)
        if m:
            if not m.group(1).startswith(".L"):  # a function symbol
                if started:
                    break  # the next function
                started = True
            if started:
                labels[m.group(1)] = len(lines)
            continue
        if started and not s.startswith("."):
            lines.append(s)
    return lines, labels


def _operands(ops: str) -> list[str]:
    """AT&T operands split at top-level commas (not inside ``disp(base,index)``)."""
    out, depth, cur = [], 0, ""
    for ch in ops:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return out + [cur.strip()]


def classify(mnemonic: str, operands: str) -> str:
    """Kind of one instruction; for moves ``operands`` is the destination only."""
    for kind, pat in _KINDS:
        if re.search(pat, mnemonic):
            return kind
    if mnemonic.startswith(("vmov", "vbroadcast")):
        return "store" if "(" in operands else "load or move"
    return "scalar/other"


def loop_profile(asm: str) -> list[dict]:
    """The loops of the first function in ``asm``: [start, end) instruction ranges, counts by
    kind (memory operands of arithmetic counted as loads too), stack (spill) traffic, the
    widest vector register used, nesting depth."""
    ins, labels = _instructions(asm)
    loops = []
    for i, s in enumerate(ins):
        m = re.match(r"^j\w+\s+(\.L\w+)", s)
        if m and m.group(1) in labels and labels[m.group(1)] <= i:
            loops.append((labels[m.group(1)], i + 1))
    merged: dict[int, int] = {}
    for a, b in loops:  # one loop per header: its furthest back edge
        merged[a] = max(b, merged.get(a, 0))
    out = []
    for a, b in sorted(merged.items()):
        body = ins[a:b]
        kinds, loads, stores, stack_ld, stack_st = Counter(), 0, 0, 0, 0
        for s in body:
            parts = s.split(None, 1)
            mn, ops = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            dst = _operands(ops)[-1] if ops else ""
            k = classify(mn, dst if mn.startswith(("vmov", "vbroadcast")) else ops)
            if k == "store" and "{%k" in dst:
                k = "masked store"  # AVX-512: vmovups %zmm, mem {%k}
            elif k == "load or move" and "{%k" in dst and "(" not in ops:
                k = "blend/select"  # AVX-512: vmovaps %zmm, %zmm {%k}
            kinds[k] += 1
            if k in ("store", "masked store"):
                stores += 1
                stack_st += "(%rsp)" in dst
            elif "(" in ops:
                loads += 1
                stack_ld += "(%rsp)" in ops
        width = 512 if any("zmm" in s for s in body) else 256 if any("ymm" in s for s in body) else 128
        out.append({"start": a, "end": b, "instructions": len(body), "kinds": dict(kinds), "loads": loads,
                    "stores": stores, "stack_loads": stack_ld, "stack_stores": stack_st, "vector_bits": width})
    for lp in out:
        lp["depth"] = sum(1 for o in out if o is not lp and o["start"] <= lp["start"] and lp["end"] <= o["end"])
        lp["inner"] = not any(o is not lp and lp["start"] <= o["start"] and o["end"] <= lp["end"] for o in out)
    return out


def per_lane_step(key: KernelKey, asm: str, interleave: int | None = None) -> dict:
    """Instructions one lane spends per step (attempt) in ``key``'s block, from ``asm``.

    The lane loops are the innermost loops with at least 30 vector instructions nested in
    another loop (the time loop); one iteration serves vector_lanes * interleave lanes
    (``interleave``: lanes interleaved per iteration, for every loop; None: the generator's
    rule, ``codegen.pass_interleave``, loop by loop in program order). Where LLVM unrolled
    the lane loops away (one iteration each: e.g. 32 lanes interleaved in pairs of 16-lane
    vectors), the time loop is itself the innermost loop and its one iteration serves all
    ``key.lanes`` lanes: that body is analysed. Where it unrolled some of them only, the
    lanes per iteration of the rest are not known: ValueError.
    """
    itemsize = 4 if key.dtype == "float32" else 8
    profile = loop_profile(asm)
    vector_loops = [lp for lp in profile if lp["inner"] and sum(v for k, v in lp["kinds"].items()
                                                                if k not in ("scalar/other",)) >= 30]
    lanes_loops = [lp for lp in vector_loops if lp["depth"] >= 1]
    unrolled = not lanes_loops
    if unrolled:  # the time loop, its lane loops unrolled into straight-line code: of the loops
        # not nested in another, the one with the widest vectors (the set-up and output loops that
        # gather and scatter one trajectory per lane are narrower), the longest of those
        lanes_loops = sorted(vector_loops, key=lambda lp: (-lp["vector_bits"], -lp["instructions"]))[:1]
    factors = [interleave] * len(lanes_loops) if interleave is not None else list(pass_interleave(key))
    if not unrolled and len(factors) != len(lanes_loops):
        raise ValueError(f"{len(lanes_loops)} lane loops found in the assembly of {key.module_name()}, "
                         f"{len(factors)} generated: some were unrolled (choose more lanes, or --interleave)")
    total, kinds = 0.0, Counter()
    extra = Counter()
    for lp, factor in zip(lanes_loops, factors if not unrolled else [1] * len(lanes_loops)):
        lp["time_loop"] = unrolled
        lp["lanes_per_iteration"] = key.lanes if unrolled else lp["vector_bits"] // (8 * itemsize) * factor
        w = 1.0 / lp["lanes_per_iteration"]
        total += lp["instructions"] * w
        for k, v in lp["kinds"].items():
            kinds[k] += v * w
        for k in ("loads", "stores", "stack_loads", "stack_stores"):
            extra[k] += lp[k] * w
    return {"lane_loops": len(lanes_loops), "loops": lanes_loops, "instructions_per_lane_step": round(total, 2),
            "vector_bits": max((lp["vector_bits"] for lp in lanes_loops), default=0),
            "lanes_per_iteration": [lp["lanes_per_iteration"] for lp in lanes_loops],
            "by_kind": {k: round(v, 2) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
            **{k: round(v, 2) for k, v in extra.items()}}


#: llvm-mca executables tried in order: the newest LLVM first (LLVM 14, Debian 12's default,
#: has no znver4 model; Debian's llvm-19 package brings ``llvm-mca-19``, which has).
MCA_NAMES = tuple(f"llvm-mca-{v}" for v in range(21, 14, -1)) + ("llvm-mca",)


@functools.lru_cache(maxsize=None)
def mca_exe(mcpu: str) -> str | None:
    """The first llvm-mca on PATH (``MCA_NAMES``) whose LLVM knows CPU ``mcpu``; None if none."""
    for name in MCA_NAMES:
        exe = shutil.which(name)
        if exe is None:
            continue
        out = subprocess.run([exe, "-mtriple=x86_64", "-mcpu=help"], capture_output=True, text=True, timeout=60)
        if re.search(rf"^\s*{re.escape(mcpu)}\s", out.stdout + out.stderr, re.M):
            return exe
    return None


def mca_cycles(asm: str, lp: dict, mcpu: str, iterations: int = 100) -> dict | None:
    """llvm-mca's model of one iteration of loop ``lp`` (from ``loop_profile(asm)``) on LLVM
    CPU ``mcpu``: ``block_rthroughput`` (cycles if only the execution ports limited it: the
    port-pressure floor) and ``cycles`` (its estimate with dependencies: the steady state of
    ``iterations`` iterations back to back, per iteration; 1: one iteration alone, its latency).
    None when ``llvm-mca`` is not on PATH or does not know ``mcpu``.
    Branches are dropped (their targets are not in the snippet)."""
    exe = mca_exe(mcpu)
    if exe is None:
        return None
    ins, _ = _instructions(asm)
    body = "\n".join(s for s in ins[lp["start"]:lp["end"]] if not re.match(r"^j\w+\s", s)) + "\n"
    out = subprocess.run([exe, f"-mcpu={mcpu}", f"-iterations={iterations}"], input=body, capture_output=True,
                         text=True, timeout=120)
    rt = re.search(r"Block RThroughput:\s+([\d.]+)", out.stdout)
    cyc = re.search(r"Total Cycles:\s+(\d+)", out.stdout)
    if out.returncode or rt is None or cyc is None or "not a recognized processor" in out.stderr:
        return None
    return {"block_rthroughput": float(rt.group(1)), "cycles": int(cyc.group(1)) / iterations}


def mca_per_lane_step(key: KernelKey, asm: str, mcpu: str, interleave: int | None = None) -> dict | None:
    """Cycles per lane-step (attempt) from llvm-mca over the lane loops of ``per_lane_step``:
    ``floor_cycles`` (port pressure only) and ``model_cycles`` (with dependencies)."""
    r = per_lane_step(key, asm, interleave)
    floor = model = 0.0
    for lp in r["loops"]:
        # A lane loop's iterations are independent lanes: llvm-mca's back-to-back steady state.
        # A time loop's (lane loops unrolled) are consecutive attempts, each waiting on the last
        # through the lane state in memory, which llvm-mca does not model: one iteration alone.
        m = mca_cycles(asm, lp, mcpu, iterations=1 if lp["time_loop"] else 100)
        if m is None:
            return None
        floor += m["block_rthroughput"] / lp["lanes_per_iteration"]
        model += m["cycles"] / lp["lanes_per_iteration"]
    return {"mcpu": mcpu, "floor_cycles": round(floor, 2), "model_cycles": round(model, 2)}


#: Instruction kinds that occupy an FMA unit on every x86 core we run on (multiplies share the
#: FMA pipes; adds do on Intel but not on Zen, so they are left out: a lower bound on the work).
FMA_KINDS = ("fma", "mul")


def fma_lane_ops(profile: dict, dtype: str) -> float:
    """Lane-FMA-equivalent operations one lane spends per step in a ``per_lane_step`` profile:
    the FMA and multiply instructions per lane-step times the lanes each instruction serves,
    the numerator of the FMA-bound floor (divide by ``peak.fma_peak``'s lanes per ns)."""
    width = 32 if dtype == "float32" else 64
    return round(sum(lp["kinds"].get(k, 0) * (lp["vector_bits"] // width) / lp["lanes_per_iteration"]
                     for lp in profile["loops"] for k in FMA_KINDS), 2)


def kernel_cost(key: KernelKey, cpu: str | None = None) -> dict:
    """``key``'s lane block on LLVM CPU ``cpu`` (None: this machine): instructions per
    lane-step, lane-FMA operations per lane-step (``fma_lane_ops``) and llvm-mca's cycles
    (``mca``: None when no llvm-mca on PATH knows that CPU, with ``mca_missing`` saying so)."""
    asm = block_asm(key, cpu)
    prof = per_lane_step(key, asm)  # the kernel as timed, lane loops unrolled or not
    mcpu = cpu or cpu_isa()["cpu_name"]
    mca = mca_per_lane_step(key, asm, mcpu)
    out = {"cpu": mcpu, "lanes_analysed": key.lanes, "lane_layout": key.lane_layout if key.mode == "adaptive" else "",
           "vector_bits": prof["vector_bits"], "instructions_per_lane_step": prof["instructions_per_lane_step"],
           "fma_lane_ops_per_step": fma_lane_ops(prof, key.dtype), "mca": mca}
    if mca is None:
        out["mca_missing"] = f"no llvm-mca on PATH that knows {mcpu} (tried {', '.join(MCA_NAMES)})"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", default="lorenz")
    ap.add_argument("--method", default="tsit5")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--mode", nargs="+", default=["fixed", "adaptive"], choices=("fixed", "adaptive"))
    ap.add_argument("--lanes", type=int, default=64, help="lanes per block (64: every lane loop iterates)")
    ap.add_argument("--cpu", nargs="+", default=["host", "znver4"], help="LLVM CPU names, or 'host'")
    ap.add_argument("--asm-dir", help="also write each assembly listing here")
    ap.add_argument("--asm-in", help="read listings written by --asm-dir instead of compiling")
    ap.add_argument("--layout", choices=("one-pass", "two-pass"),
                    help="lane layout (default: what 'auto' picks on that CPU); for a fixed-step "
                    "kernel, two-pass interleaves its lane loop (four ways or pairs: codegen.lane_ways)")
    ap.add_argument("--interleave", type=int, help="lanes loops interleaved in this many groups "
                    "(default: the generator's rule; 1 for kernels generated before interleaving)")
    ap.add_argument("--mca", action="store_true", help="also llvm-mca's cycles per lane-step (port-"
                    "pressure floor and dependency model) for the same CPU ('host': this one)")
    args = ap.parse_args(argv)
    rows = []
    for cpu in args.cpu:
        for mode in args.mode:
            layout = args.layout or ("auto" if cpu == "host" else TARGETS.get(cpu, ("", "two-pass"))[1])
            key = KernelKey(args.problem, args.method, mode, args.dtype, lanes=args.lanes, lane_layout=layout)
            name = f"{key.problem}_{key.method}_{mode}_{key.dtype}_L{key.lanes}_{cpu}_{key.lane_layout}.s"
            try:
                asm = (Path(args.asm_in, name).read_text() if args.asm_in
                       else block_asm(key, None if cpu == "host" else cpu))
            except Exception as exc:  # a target this LLVM does not know: a row with its reason
                print(f"{cpu:>15} {mode:<9} failed: {exc}")
                continue
            if args.asm_dir:
                Path(args.asm_dir).mkdir(parents=True, exist_ok=True)
                (Path(args.asm_dir) / name).write_text(asm)
            r = per_lane_step(key, asm, args.interleave)
            r.pop("loops")
            if args.mca:
                mcpu = cpu
                if cpu == "host":
                    mcpu = cpu_isa()["cpu_name"]
                r["mca"] = mca_per_lane_step(key, asm, mcpu, args.interleave)
            rows.append({"cpu": cpu, "mode": mode, "lane_layout": key.lane_layout, **r})
            print(f"{cpu:>15} {mode:<9}{'' if mode == 'fixed' else ' ' + key.lane_layout:<9} {r['vector_bits']:>4}-bit lanes/iter {r['lanes_per_iteration']}: "
                  f"{r['instructions_per_lane_step']:7.2f} instructions per lane-step "
                  f"(loads {r.get('loads', 0):.1f}, stores {r.get('stores', 0):.1f}, "
                  f"stack {r.get('stack_loads', 0):.1f}/{r.get('stack_stores', 0):.1f})")
            print("      " + ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()))
            if args.mca:
                m = r["mca"]
                print(f"      llvm-mca ({m['mcpu']}): {m['floor_cycles']} cycles per lane-step at the ports' "
                      f"throughput, {m['model_cycles']} with dependencies" if m else
                      "      llvm-mca: not available for this CPU (not on PATH, or unknown to its LLVM)")
    if len({r["mode"] for r in rows}) == 2:
        for cpu in args.cpu:
            f = [r for r in rows if r["cpu"] == cpu and r["mode"] == "fixed"]
            a = [r for r in rows if r["cpu"] == cpu and r["mode"] == "adaptive"]
            if f and a and f[0]["instructions_per_lane_step"]:
                print(f"{cpu:>15} adaptive/fixed instructions per lane-step: "
                      f"{a[0]['instructions_per_lane_step'] / f[0]['instructions_per_lane_step']:.2f}")
                if f[0].get("mca") and a[0].get("mca"):
                    print(f"{cpu:>15} adaptive/fixed llvm-mca cycles per lane-step: "
                          f"{a[0]['mca']['floor_cycles'] / f[0]['mca']['floor_cycles']:.2f} (ports), "
                          f"{a[0]['mca']['model_cycles'] / f[0]['mca']['model_cycles']:.2f} (with dependencies)")
    print(json.dumps(rows) if os.environ.get("ISA_JSON") else "", end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
