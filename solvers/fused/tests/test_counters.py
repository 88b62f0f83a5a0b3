"""The kernel's work counters against an independent count.

The kernels count accepted steps and right-hand-side evaluations by increments where the work
happens. Here the generated serial kernel is rebuilt with a counting right-hand side (and
Jacobian): each call leaves the compiled code for a moment (``numba.objmode``) to record the
trajectory (its swept parameter is unique) and the time it was called at. Evaluations must
equal the kernel's ``rhs_evals``; for Rosenbrock methods, which evaluate the Jacobian once per
step or attempt at its start, Jacobian calls must equal accepted + rejected and their
distinct times the accepted steps.
"""
import importlib.util
import sys
from collections import defaultdict

import numpy as np
import pytest

from problems.registry import get_problem
from solvers.base import SolveSpec
from solvers.fused.build import collect, kernel_args, make_inputs, make_outputs
from solvers.fused.codegen import KernelKey, generate_source

N = 6

_WRAP = '''
{raw} = {orig}


@_jit
def {name}(u, p, t):
    with numba.objmode():
        _record({name!r}, p, t)
    return {raw}(u, p, t)
'''


def _counting_module(tmp_path, key: KernelKey, calls: dict):
    src = generate_source(key)
    rhs_line = f"rhs = _jit(get_problem({key.problem!r}).rhs_for(math))"
    assert src.count(rhs_line) == 1
    src = src.replace(rhs_line, _WRAP.format(raw="_raw_rhs", orig=rhs_line.split(" = ", 1)[1], name="rhs"))
    if "jac = _jit(jac)" in src:
        src = src.replace("jac = _jit(jac)", _WRAP.format(raw="_raw_jac", orig="_jit(jac)", name="jac"))
    # one thread, no disk cache: the recorder is a plain Python function
    src = src.replace("parallel=True", "parallel=False").replace("cache=True", "cache=False")
    sweep = get_problem(key.problem).sweep_index

    def record(what, p, t):
        calls[what][float(p[sweep])].append(float(t))

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"counting_{key.problem}_{key.method}_{key.mode}_{id(calls)}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    mod._record = record
    sys.modules[path.stem] = mod  # object mode finds the recorder through the module's name
    spec.loader.exec_module(mod)
    return mod


CASES = [
    ("lorenz", "tsit5", "fixed", dict(dt=0.01)),
    ("lorenz", "tsit5", "adaptive", dict(rtol=1e-6, atol=1e-6)),
    ("lorenz", "rk4", "fixed", dict(dt=0.01)),
    ("robertson", "rosenbrock23", "adaptive", dict(rtol=1e-6, atol=1e-6)),
    ("robertson", "rodas5p", "adaptive", dict(rtol=1e-6, atol=1e-6)),
    ("prothero_robinson", "rodas4", "adaptive", dict(rtol=1e-6, atol=1e-6)),
    ("prothero_robinson", "rodas4", "fixed", dict(dt=0.05)),
]


#: Lane kernels that `make test` skips (each compiles a counting lane kernel, 5-10 s cold): the
#: serial kernel of the same case and the lane kernels of the other methods stay in it. Rodas5P
#: (the slowest kernel to compile) is counted in the slow set only; Rodas4 shares its code path.
SLOW_LANES = {("robertson", "rodas5p", "adaptive"), ("prothero_robinson", "rodas4", "adaptive"),
              ("prothero_robinson", "rodas4", "fixed"), ("lorenz", "tsit5", "fixed")}


def _params():
    for variant in ("serial", "lanes"):
        for problem, method, mode, kw in CASES:
            slow = variant == "lanes" and (problem, method, mode) in SLOW_LANES or method == "rodas5p"
            yield pytest.param(problem, method, mode, kw, variant, marks=[pytest.mark.slow] if slow else [],
                               id=f"{variant}-{problem}-{method}-{mode}-{kw}")


@pytest.mark.parametrize("problem, method, mode, kw, variant", list(_params()))
def test_counters_equal_an_independent_count(tmp_path, problem, method, mode, kw, variant):
    spec = SolveSpec(problem=problem, method=method, mode=mode, dtype="float64", n=N, **kw)
    key = KernelKey(problem, method, mode, "float64", lanes=4)
    calls = {"rhs": defaultdict(list), "jac": defaultdict(list)}
    mod = _counting_module(tmp_path, key, calls)
    u0, p = spec.ensemble()
    fixed = mode == "fixed"
    inputs = make_inputs(u0, p, spec.prob.tspan, "float64", mode=mode, dt=spec.step,
                         n_steps=spec.n_steps if fixed else 0, rtol=spec.tol[0], atol=spec.tol[1],
                         max_steps=spec.max_steps)
    outputs = make_outputs(inputs)
    (mod.solve_serial if variant == "serial" else mod.solve_lanes)(*kernel_args(inputs, outputs))
    out = collect(outputs, False)
    if variant == "lanes":
        # every lane computes every pass (masked): its calls bound the counted work from above
        total = sum(len(v) for v in calls["rhs"].values())
        assert out.rhs_evals.sum() <= total
        serial = _counting_module(tmp_path / "s", key, {"rhs": defaultdict(list), "jac": defaultdict(list)})
        outputs_s = make_outputs(inputs)
        serial.solve_serial(*kernel_args(inputs, outputs_s))
        ref = collect(outputs_s, False)
        for name in ("accepted", "rejected", "rhs_evals"):
            np.testing.assert_array_equal(getattr(out, name), getattr(ref, name), err_msg=name)
        return
    sweep = p[:, spec.prob.sweep_index]
    for i in range(N):
        rhs_calls = calls["rhs"][float(sweep[i])]
        assert out.rhs_evals[i] == len(rhs_calls), f"trajectory {i}"
        if fixed:
            assert out.rejected[i] == 0
        if calls["jac"]:
            jac_times = calls["jac"][float(sweep[i])]
            assert out.accepted[i] + out.rejected[i] == len(jac_times)
            assert out.accepted[i] == len(set(jac_times))
        elif fixed:
            # an explicit fixed step calls f at its start first: t0 + s*dt, one per step
            grid = {float(spec.prob.tspan[0] + s * spec.step) for s in range(spec.n_steps)}
            assert out.accepted[i] == spec.n_steps == len(grid & set(rhs_calls))
    assert out.accepted.min() > 0
