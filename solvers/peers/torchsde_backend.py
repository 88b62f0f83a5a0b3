"""torchsde as its users batch an SDE ensemble: one (N, n_states) tensor, ``sdeint`` Euler.

Settings (all returned by ``settings()``):

* ``sdeint(sde, y0, ts=[t0, t1], bm=..., method="euler", dt=spec.step, adaptive=False)``: Euler-
  Maruyama for Ito SDEs (``sde_type="ito"``), the whole ensemble as one batch (torchsde's
  documented usage: y0 of shape (batch, state)). torchsde steps ``t`` in floating point from
  t0 by dt and clips the last step to t1.
* noise: ``noise_type="diagonal"`` (g returns (N, n_states)) or ``"general"`` (g returns
  (N, n_states, n_noise)), from the problem's ``noise``.
* Brownian motion (variants): ``""``: ``BrownianInterval(t0, t1, size=(N, n_noise), dt=dt,
  cache_size=None, entropy=seed)``: torchsde's default class with an unbounded cache (no
  recomputation of queried intervals) and the step hint ``dt``; ``"path"``: ``BrownianPath``
  (stores every increment; fastest for a single fixed-step forward pass on small problems).
* ``torch.no_grad()``; ``torch.cuda.synchronize()`` in ``sync`` on a GPU.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.availability import framework_available
from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec, Status


class TorchsdeBackend(Backend):
    name = "torchsde"
    devices = ("cpu", "gpu")
    kinds = {"sde": KindSupport({"em": ("fixed",)})}
    variants = ("", "path")

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        return framework_available("torch", device, "torchsde")

    def check_own(self, spec: SolveSpec) -> str | None:
        if spec.saveat is not None:
            return "torchsde cells save the final state only"
        return None

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        prob = spec.prob
        bm = ("BrownianPath(t0, w0=zeros(N, n_noise))" if spec.variant == "path" else
              "BrownianInterval(t0, t1, size=(N, n_noise), dt=dt, cache_size=None, entropy=seed)")
        return {"library": self.available(spec.device)[1], "step_control": "none",
                "method": 'sdeint(method="euler") (Euler-Maruyama, Ito)', "dt": spec.step,
                "n_steps": spec.n_steps, "adaptive": False, "ts": "[t0, t1]",
                "noise_type": "diagonal" if prob.noise == "diagonal" else "general",
                "brownian": bm, "batching": "one (N, n_states) tensor", "grad": "torch.no_grad()",
                "seed": spec.seed}

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return _TorchsdePrepared(spec)


class _TorchsdePrepared(Prepared):
    dispatch = "torch"

    def __init__(self, spec: SolveSpec) -> None:
        import torch  # optional (PyTorch stack): imported only when this backend runs

        self.spec = spec
        self.device = torch.device("cuda" if spec.device == "gpu" else "cpu")
        self.dtype = getattr(torch, spec.dtype)
        u0, p = spec.ensemble()
        self.u0 = torch.as_tensor(u0, device=self.device)
        self.p = torch.as_tensor(np.ascontiguousarray(p.T), device=self.device)  # (n_params, N)
        self.sde = _make_sde(spec.prob, tuple(self.p))

    def _brownian(self):
        import torch  # optional (PyTorch stack): imported only when this backend runs
        import torchsde

        prob, spec = self.spec.prob, self.spec
        t0, t1 = (float(x) for x in prob.tspan)
        size = (spec.n, prob.n_noise)
        if spec.variant == "path":
            torch.manual_seed(spec.seed)
            return torchsde.BrownianPath(t0=t0, w0=torch.zeros(size, dtype=self.dtype, device=self.device))
        return torchsde.BrownianInterval(t0=t0, t1=t1, size=size, dtype=self.dtype, device=self.device,
                                         entropy=spec.seed, dt=spec.step, cache_size=None)

    def run(self) -> Any:
        import torch  # optional (PyTorch stack): imported only when this backend runs
        import torchsde

        t0, t1 = (float(x) for x in self.spec.prob.tspan)
        ts = torch.tensor([t0, t1], dtype=self.dtype, device=self.device)
        with torch.no_grad():
            ys = torchsde.sdeint(self.sde, self.u0, ts, bm=self._brownian(), method="euler",
                                 dt=self.spec.step, adaptive=False)
        return ys[-1]

    def sync(self, out: Any) -> None:
        if self.device.type == "cuda":
            import torch  # optional (PyTorch stack): imported only when this backend runs

            torch.cuda.synchronize()

    def fetch(self, out: Any) -> SolveResult:
        u = out.detach().cpu().numpy()
        n = u.shape[0]
        steps = np.full(n, self.spec.n_steps, dtype=np.int64)
        status = np.where(np.isfinite(u).all(axis=1), int(Status.SUCCESS), int(Status.NONFINITE))
        return SolveResult(u_final=u, status=status, accepted=steps, rejected=np.zeros(n, dtype=np.int64),
                           rhs_evals=steps, notes={"increments": f"torchsde {self.spec.variant or 'BrownianInterval'}",
                                                   "steps_source": "n_steps (fixed grid; torchsde does not report steps)"})

    def close(self) -> None:
        self.u0 = self.p = self.sde = None


def _make_sde(prob, params: tuple):
    """A torchsde SDE object whose f and g are the problem's drift and diffusion on torch."""
    import torch  # optional (PyTorch stack): imported only when this backend runs

    drift, diffusion = prob.drift_for(torch), prob.diffusion_for(torch)
    n_states, noise = prob.n_states, prob.noise

    class _SDE(torch.nn.Module):
        noise_type = "diagonal" if noise == "diagonal" else "general"
        sde_type = "ito"

        def f(self, t, y):
            u = tuple(y[:, i] for i in range(n_states))
            return torch.stack(torch.broadcast_tensors(*drift(u, params, t)), dim=1)

        def g(self, t, y):
            u = tuple(y[:, i] for i in range(n_states))
            out = diffusion(u, params, t)
            if noise == "diagonal":
                return torch.stack(torch.broadcast_tensors(*out), dim=1)
            rows = [torch.stack(torch.broadcast_tensors(*row), dim=1) for row in out]  # (N, n_noise) each
            return torch.stack(rows, dim=1)  # (N, n_states, n_noise)

    return _SDE()
