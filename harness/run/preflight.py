"""``python -m harness preflight``: quick checks (aimed at <= 20 s) before a GPU session spends its
minutes, written to ``preflight.json``; ``run --preflight preflight.json`` then runs only the
backends that passed (harness.run.gates.Preflight), the others get rows with the reason.

Checks: imports (required ones fail the pre-flight; optional ones fail the backends that need
them), then on a GPU: the real fused CUDA kernel at N = 8 against the CPU kernel, CuPy
elementwise and ``linalg.solve``, torch on the device, a JAX float32/float64 jit, a tiny Pallas
kernel, launch counting; and the shipped references for every cell of the suite. Without a GPU
every GPU-only check is "skipped" with its reason. Each check records its seconds.

Exit code: 0 when no required import is missing (failed optional checks are data), 1 otherwise.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from importlib import util
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.errors import UsageError
from harness.measure.environment import gpu_info
from harness.measure.launches import count_launches
from harness.packages import OPTIONAL, REQUIRED
from harness.refs import missing
from harness.run.suites import load_suite
from solvers.base import SolveSpec
from solvers.fused.backend import FusedBackend

#: Backend -> imports and GPU checks it depends on.
NEEDS = {
    "fused": (("numba",), ("fused-cuda-kernel",)),
    "array": (("numpy",), ("cupy",)),
    "diffrax": (("jax", "diffrax", "equinox"), ("jax",)),
    "jax-handwritten": (("jax",), ("jax",)),
    "pallas": (("jax",), ("jax", "pallas")),
    "torch-handwritten": (("torch",), ("torch",)),
    "torchdiffeq": (("torch", "torchdiffeq"), ("torch",)),
    "torchode": (("torch", "torchode"), ("torch",)),
}
#: The limit of one GPU check (SIGALRM; native code that ignores signals can overrun it).
CHECK_LIMIT_S = 10.0
#: The whole pre-flight's aim: a check that would start later is skipped (not failed: its
#: backends still run, and fail on their own if they must).
TOTAL_LIMIT_S = 20.0


class _CheckTimeout(BaseException):
    pass


def _timed(fn: Callable[[], str], limit_s: float = CHECK_LIMIT_S) -> dict[str, Any]:
    """Run one check: {"status": ok|failed, "reason": ..., "seconds": ...}."""
    start = time.monotonic()

    def on_alarm(signum, frame):
        raise _CheckTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    try:
        status, reason = "ok", fn()
    except _CheckTimeout:
        status, reason = "failed", f"exceeded the check's limit of {limit_s:g} s"
    except Exception as exc:  # noqa: BLE001 - a failing check is a result
        status, reason = "failed", " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return {"status": status, "reason": reason, "seconds": round(time.monotonic() - start, 2)}


# ---- GPU checks: each returns a short note or raises ---------------------------------------

def check_fused_cuda() -> str:
    b = FusedBackend()
    res = {}
    for device in ("gpu", "cpu"):
        prep = b.prepare(SolveSpec(problem="lorenz", method="tsit5", mode="fixed", dtype="float32",
                                   n=8, device=device))
        out = prep.run()
        prep.sync(out)
        res[device] = prep.fetch(out)
        prep.close()
    g, c = res["gpu"].u_final.astype(np.float64), res["cpu"].u_final.astype(np.float64)
    rel = float(np.max(np.abs(g - c)) / np.max(np.abs(c)))
    if not rel <= 1e-4 or not np.array_equal(res["gpu"].status, res["cpu"].status):
        raise AssertionError(f"CUDA kernel differs from the CPU kernel: max rel diff {rel:.3g}")
    return f"N=8 Tsit5 fixed float32: max rel diff to the CPU kernel {rel:.2g}"


def check_cupy() -> str:
    import cupy as cp  # cupy is optional: this check fails, as data, without it

    x = cp.arange(8, dtype=cp.float64)
    y = cp.ElementwiseKernel("float64 x", "float64 y", "y = x * x + 1", "pf_sq")(x)
    a = cp.eye(3, dtype=cp.float64)[None].repeat(4, axis=0) * 2
    s = cp.linalg.solve(a, cp.ones((4, 3, 1)))
    cp.cuda.Device().synchronize()
    assert np.allclose(cp.asnumpy(y), np.arange(8) ** 2 + 1) and np.allclose(cp.asnumpy(s), 0.5)
    return f"cupy {cp.__version__}: elementwise and batched linalg.solve ok"


def check_torch() -> str:
    import torch  # torch is optional: this check fails, as data, without it

    if not torch.cuda.is_available():
        raise RuntimeError(f"torch {torch.__version__} (CUDA build {torch.version.cuda}): cuda not available")
    x = torch.arange(8.0, device="cuda")
    assert float((x * x).sum()) == 140.0
    return f"torch {torch.__version__} on {torch.cuda.get_device_name()}"


def check_jax() -> str:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # jax is optional: this check fails, as data, without it (and sets its memory flag first)
    import jax
    import jax.numpy as jnp

    dev = jax.devices("gpu")[0]
    with jax.enable_x64(True):
        for dt in (jnp.float32, jnp.float64):
            v = jax.jit(lambda x: (x * x).sum())(jax.device_put(jnp.arange(8, dtype=dt), dev))
            assert float(v) == 140.0 and v.dtype == dt
    return f"jax {jax.__version__} on {dev}: float32 and float64 jit ok"


def check_pallas() -> str:
    # jax is optional: this check fails, as data, without it
    import jax
    import jax.numpy as jnp
    from jax.experimental import pallas as pl

    def kernel(x_ref, o_ref):
        o_ref[...] = x_ref[...] * 2.0

    x = jnp.arange(128, dtype=jnp.float32)
    y = pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype))(x)
    assert float(y[5]) == 10.0
    return "pallas_call doubled a vector"


def check_launch_counting() -> str:
    prep = FusedBackend().prepare(SolveSpec(problem="lorenz", method="tsit5", mode="fixed",
                                            dtype="float32", n=8, device="gpu"))
    try:
        count, how = count_launches(prep, "gpu")
    finally:
        prep.close()
    if count != 1:
        raise AssertionError(f"counted {count} launches of the fused kernel ({how}), expected 1")
    return f"fused kernel: 1 launch ({how})"


GPU_CHECKS = {"fused-cuda-kernel": check_fused_cuda, "cupy": check_cupy, "torch": check_torch,
              "jax": check_jax, "pallas": check_pallas, "launch-counting": check_launch_counting}


def _gpu_present() -> tuple[bool, str]:
    gpus = gpu_info()["gpus"]
    if not gpus:
        return False, "no GPU on this machine (nvidia-smi found none)"
    return True, gpus[0]["name"]


def run_preflight(suite: str, device: str | None) -> dict[str, Any]:
    """All checks; the dict written to preflight.json."""
    started = time.monotonic()
    imports = {}
    for name in REQUIRED:
        imports[name] = {"required": True, "found": util.find_spec(name) is not None, "for": REQUIRED[name]}
    for name, what in OPTIONAL.items():
        imports[name] = {"required": False, "found": util.find_spec(name) is not None, "for": what}

    s = load_suite(suite)
    device = device or s.device
    gpu, gpu_what = _gpu_present() if device == "gpu" else (False, "the run is on the CPU (--device cpu)")
    checks: dict[str, dict] = {}
    for name, fn in GPU_CHECKS.items():
        left = TOTAL_LIMIT_S - (time.monotonic() - started)
        if not gpu:
            checks[name] = {"status": "skipped", "reason": f"GPU-only check: {gpu_what}", "seconds": 0.0}
        elif left < 1.0:
            checks[name] = {"status": "skipped", "seconds": 0.0,
                            "reason": f"the pre-flight's {TOTAL_LIMIT_S:g} s were spent before this check"}
        else:
            checks[name] = _timed(fn, min(CHECK_LIMIT_S, left))

    t = time.monotonic()
    cells = [dataclasses.replace(c, spec=dataclasses.replace(c.spec, device=device)) for c in s.cells]
    absent = missing(cells)
    checks["references"] = {
        "status": "ok" if not absent else "failed",
        "reason": (f"all {len(cells)} cells of {s.name} have shipped references" if not absent
                   else f"{len(absent)} references not shipped (accuracy stays empty for them): "
                        + "; ".join(absent)),
        "seconds": round(time.monotonic() - t, 2)}

    backends = {}
    for b, (mods, gpu_checks) in NEEDS.items():
        why = [f"{m} not importable" for m in mods if not imports[m]["found"]]
        if device == "gpu":
            why += [f"{c}: {checks[c]['reason']}" for c in gpu_checks if checks[c]["status"] == "failed"]
        backends[b] = {"ok": not why, "reason": "; ".join(why)}
    return {"suite": s.name, "device": device, "gpu": gpu_what if gpu else None,
            "imports": imports, "checks": checks, "backends": backends,
            "required_missing": [m for m in REQUIRED if not imports[m]["found"]],
            "seconds": round(time.monotonic() - started, 2)}


def cmd_preflight(args) -> int:
    result = run_preflight(args.suite, args.device)
    out: Path = args.out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    for name, c in result["checks"].items():
        print(f"{c['status']:>7}  {name:<18} {c['seconds']:5.1f} s  {c['reason']}", file=sys.stderr)
    for name, v in result["backends"].items():
        # a backend whose optional package is not installed is unavailable here (its cells get
        # "unavailable" rows with the reason), not a failure of this machine
        absent = not v["ok"] and all(w.endswith(" not importable") for w in v["reason"].split("; "))
        label = "ok" if v["ok"] else "absent" if absent else "FAILED"
        print(f"{label:>7}  backend {name}{'' if v['ok'] else ': ' + v['reason']}", file=sys.stderr)
    missing_req = result["required_missing"]
    if missing_req:
        print(f"error: required packages missing: {', '.join(missing_req)}", file=sys.stderr)
    print(f"pre-flight: {result['seconds']:.1f} s -> {out}", file=sys.stderr)
    return 1 if missing_req else 0
