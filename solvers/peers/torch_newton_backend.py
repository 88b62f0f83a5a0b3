"""Batched Newton in PyTorch, hand-written: the whole batch as one (N, d) tensor, the residual and
the SymPy-derived Jacobian evaluated on it as tensor expressions (N, d, d) (the same functions as
the array replica's; ``torch.func.vmap(jacfwd)`` does not trace under ``torch.compile`` here, and
is slower eagerly), one batched
``torch.linalg.solve`` per iteration, masked updates, a Python loop that stops when every system
is done (one ``.any()`` host sync per iteration).

Variants: ``""`` eager; ``"compiled"`` (default of the suite): the iteration body (residual,
Jacobian, solve, convergence test, masked update) is one ``torch.compile``d function
(``dynamic=False``); the first ``run`` compiles it (timed as compile time). Every ``run`` is under
``torch.inference_mode()``. Convergence test and statuses: problems.nonlinear_core.CONVERGENCE,
solvers.base.Status (``torch.linalg.solve_ex``: a singular batch member is reported FAILED
instead of raising for the whole batch).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from problems import derive
from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, SolveResult, SolveSpec, Status

_RUNNING = -1


class TorchNewtonPrepared:
    dispatch = "torch"

    def __init__(self, spec: SolveSpec) -> None:
        import torch  # optional (PyTorch stack): imported only when this backend runs

        self.spec = spec
        self.torch = torch
        self.device = torch.device("cuda" if spec.device == "gpu" else "cpu")
        dtype = torch.float32 if spec.dtype == "float32" else torch.float64
        x0, p = spec.prob.ensemble(spec.n, spec.dtype, spec.seed)
        self.x0 = torch.as_tensor(x0, device=self.device)
        self.p = torch.as_tensor(p, device=self.device)
        rtol, atol = spec.tol
        self.rtol = torch.tensor(rtol, dtype=dtype, device=self.device)
        self.atol = torch.tensor(atol, dtype=dtype, device=self.device)
        residual, jacobian = derive.derivatives(spec.prob).functions(torch, float)

        def full(e, like):
            return e if isinstance(e, torch.Tensor) else torch.full_like(like, e)

        def f_all(x, p):
            xs, ps = x.unbind(-1), p.unbind(-1)
            return torch.stack([full(e, xs[0]) for e in residual(xs, ps)], dim=-1)

        def jac(x, p):
            xs, ps = x.unbind(-1), p.unbind(-1)
            return torch.stack([torch.stack([full(e, xs[0]) for e in row], dim=-1)
                                for row in jacobian(xs, ps)], dim=-2)

        def iteration(x, p, code, rtol, atol):
            F = f_all(x, p)
            J = jac(x, p)
            dx, info = torch.linalg.solve_ex(J, -F)  # no exception for a singular batch member
            y = x + dx
            live = code == _RUNNING
            finite = torch.isfinite(y).all(dim=1) & torch.isfinite(F).all(dim=1)
            conv = (dx.abs() < atol + rtol * y.abs()).all(dim=1) & (F.abs() < atol).all(dim=1)
            new = torch.where(~torch.isfinite(F).all(dim=1), int(Status.NONFINITE), torch.where(
                info != 0, int(Status.FAILED), torch.where(
                    ~finite, int(Status.NONFINITE), torch.where(conv, int(Status.SUCCESS), _RUNNING))))
            x = torch.where(live[:, None], y, x)
            return x, torch.where(live, new, code), live

        self.iteration = torch.compile(iteration, dynamic=False) if spec.variant == "compiled" else iteration

    def run(self) -> Any:
        torch = self.torch
        with torch.inference_mode():
            x = self.x0.clone()
            code = torch.full((x.shape[0],), _RUNNING, dtype=torch.int64, device=self.device)
            iters = torch.zeros(x.shape[0], dtype=torch.int64, device=self.device)
            for _ in range(self.spec.max_steps):
                x, code, live = self.iteration(x, self.p, code, self.rtol, self.atol)
                iters += live
                if not bool((code == _RUNNING).any()):
                    break
            code = torch.where(code == _RUNNING, int(Status.NOT_CONVERGED), code)
        return x, code, iters

    def sync(self, out: Any) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def fetch(self, out: Any) -> SolveResult:
        x, code, iters = (v.cpu().numpy() for v in out)
        iters = iters.astype(np.int64)
        return SolveResult(u_final=x, status=code.astype(np.int64), accepted=iters, rejected=np.zeros_like(iters),
                           rhs_evals=iters, notes={"iterations": "per system, lockstep batch"})

    def close(self) -> None:
        self.x0 = self.p = None


class TorchNewtonBackend(Backend):
    name = "torch-newton"
    devices = ("cpu", "gpu")
    kinds = {"nonlinear": KindSupport({"newton": ("adaptive",)})}
    variants = ("", "compiled")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("torch", device)

    def step_control(self, spec: SolveSpec) -> str:
        return "lockstep"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        rtol, atol = spec.tol
        return {"step_control": "lockstep", "method": "Newton, full steps, batched",
                "jacobian": "SymPy-derived (problems.derive.derivatives(problem)), evaluated batched on tensors",
                "linear_solver": "torch.linalg.solve_ex on the (N, d, d) stack (LU, partial pivoting)",
                "compiled": spec.variant == "compiled", "torch_compile": "dynamic=False, iteration body" if spec.variant else "eager",
                "rtol": rtol, "atol": atol, "max_iterations": spec.max_steps, "inference_mode": True}

    def prepare_own(self, spec: SolveSpec) -> TorchNewtonPrepared:
        return TorchNewtonPrepared(spec)
