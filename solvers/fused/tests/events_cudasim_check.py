"""Run the fused event CUDA kernel under Numba's CUDA simulator; print JSON comparing it with the
CPU kernels (run as its own process with NUMBA_ENABLE_CUDASIM=1: see test_events_cudasim.py)."""
import json
import os
import subprocess
import sys

import numpy as np

#: name -> (problem, n)
CASES = {"bouncing_ball": ("bouncing_ball", 4), "lorenz_plane": ("lorenz_plane", 4), "pk_doses": ("pk_doses", 3)}


def cpu_results() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import json; from solvers.fused.tests.events_cudasim_check import CASES, cpu_case; "
            "print(json.dumps({k: cpu_case(*c) for k, c in CASES.items()}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _inputs(problem, n):
    from problems.registry import get_problem

    prob = get_problem(problem)
    u0, p = prob.ensemble(16, "float64")
    idx = np.linspace(0, 15, n).astype(int)
    return prob, u0[idx].copy(), p[idx].copy(), tuple(np.linspace(*prob.tspan, 5))


def _pack(r):
    return {"u": r.u_final.tolist(), "saved": np.nan_to_num(r.saved, nan=-1e300).tolist(),
            "evt": np.nan_to_num(r.event_t, nan=-1e300).tolist(), "events": r.events.tolist()}


def cpu_case(problem, n):
    from solvers.fused.events import run_cpu

    prob, u0, p, saveat = _inputs(problem, n)
    return {v: _pack(run_cpu(problem, u0, p, saveat=saveat, variant=v)) for v in ("lanes", "serial")}


def main() -> None:
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"
    from numba import cuda

    from solvers.fused.events import EventKernelKey, load_module, make_args, to_result

    cpu = cpu_results()
    report = {}
    for name, (problem, n) in CASES.items():
        prob, u0, p, saveat = _inputs(problem, n)
        mod = load_module(EventKernelKey(problem, "float64", "cuda"))
        args, outs = make_args(prob, u0, p, "float64", prob.dt0, prob.rtol, prob.atol, 100_000, saveat, xp=cuda)
        mod.solve_kernel[1, 32](*args)
        gpu = _pack(to_result(outs, True, {}))
        lanes, serial = cpu[name]["lanes"], cpu[name]["serial"]
        diff = max(float(np.max(np.abs(np.asarray(gpu[k]) - np.asarray(lanes[k])))) for k in ("u", "saved", "evt"))
        report[name] = {"lanes_equal_serial": lanes == serial, "gpu_equal_cpu": gpu == lanes,
                        "events_equal": gpu["events"] == lanes["events"], "max_abs_gpu_vs_cpu": diff}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
