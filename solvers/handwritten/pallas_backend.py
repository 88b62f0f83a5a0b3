"""``pallas``: the fused one-thread-per-trajectory design written in JAX's kernel language.

One ``pallas_call`` solves the whole ensemble. The grid has one program per block of
``block`` trajectories (a (block,) vector per state component: on a GPU, Triton maps the
vector's lanes onto threads, so each thread owns one trajectory as in the Numba kernel). Each
program reads its parameters and initial states once, runs the whole time loop in registers
(``lax.fori_loop`` for fixed steps, ``lax.while_loop`` of DiffEqGPU's PI-controlled attempts
for adaptive steps, per-lane dt with masked updates) and writes its final states once. The
step arithmetic is ``solvers.handwritten.rk``, shared with the jax-/torch-handwritten backends.

Adaptive steps run in lockstep within a block: a block loops until its slowest lane is done
(a GPU warp does the same in the fused CUDA kernel); blocks are independent.

Inputs and outputs are structure-of-arrays: one (N_padded,) array per state component and per
parameter, because Triton block shapes must be powers of two (an (n_states, block) block with
n_states = 3 is not). N is padded up to a multiple of ``block`` with copies of the last
trajectory (which cannot lengthen any block's loop), and the padding is dropped on fetch.

Devices:
* "gpu": compiled through Pallas's Triton lowering (``jax.experimental.pallas.triton``,
  ``num_warps = block // 32``). Everything the kernel uses (``scf.while``/``scf.for``, ``pow``,
  ``sqrt``, ``is_finite``, ``select``, ``reduce_max``) has a Triton lowering rule in jax 0.10;
  the lowering to Triton IR is checked on a CPU by the tests (``jax.export`` for platform
  "cuda"), the compiled kernel has not been run here (no GPU on the build machine).
* "cpu": ``interpret=True``, i.e. the kernel body evaluated by XLA's CPU backend block by
  block. That is for correctness only (settings say so): it is not a performance peer.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from solvers.base import Backend, KindSupport, Prepared, SolveResult, SolveSpec
from solvers.handwritten.common import METHODS, adaptive_result, check_common, common_settings, fixed_result
from solvers.handwritten.jax_backend import jax_available, jax_device, x64_scope
from solvers.handwritten.ops import JaxOps
from solvers.handwritten.rk import StepConstants, adaptive_attempt, fixed_step, initial_state, step_constants

#: Trajectories per program (a power of two; 128 = 4 warps of 32 on a GPU).
BLOCK = 128
INTERPRET_NOTE = "interpret mode, for correctness only"


def block_size(spec: SolveSpec, block: int = BLOCK) -> int:
    """The block actually used: ``block``, or the next power of two >= N when N is smaller."""
    return min(block, 1 << max(spec.n - 1, 0).bit_length())


def build_kernel_call(spec: SolveSpec, K: StepConstants, block: int, interpret: bool,
                      debug: bool = False):
    """``solve(*u0_components, *p_components) -> outputs`` as one ``pallas_call``.

    Each argument is a (N_padded,) array (N_padded a multiple of ``block``). Outputs: the
    n_states final components, then (adaptive only) accepted, rejected, status (int32).
    ``interpret``: evaluate the kernel with XLA (CPU) instead of lowering it to Triton;
    ``debug``: Pallas prints the kernel jaxpr and, when lowering to Triton, the Triton module.
    """
    # jax is optional: this backend reports itself unavailable without it
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.experimental import pallas as pl

    f = spec.prob.rhs_for(jnp)
    ops = JaxOps()
    n_states, n_params = spec.prob.n_states, spec.prob.n_params
    dtype = jnp.dtype(spec.dtype)
    adaptive = spec.mode == "adaptive"

    def kernel(*refs):
        u_refs, p_refs = refs[:n_states], refs[n_states:n_states + n_params]
        out_refs = refs[n_states + n_params:]
        u0 = tuple(r[...] for r in u_refs)
        p = tuple(r[...] for r in p_refs)
        if not adaptive:
            h = jnp.asarray(K.dt, dtype=dtype)

            def body(i, u):
                return fixed_step(f, u, p, K.t0 + i.astype(dtype) * h, h, K)

            for r, x in zip(out_refs, lax.fori_loop(0, K.n_steps, body, u0)):
                r[...] = x
            return

        def block_unfinished(s):
            # A scalar for the loop condition: reduce_max has a Triton lowering, reduce_or not.
            return jnp.max(s.active.astype(jnp.int32)) > 0

        s = lax.while_loop(block_unfinished, lambda s: adaptive_attempt(f, p, s, K, ops),
                           initial_state(f, u0, p, K, ops))
        for r, x in zip(out_refs, (*s.u, s.accepted, s.rejected, s.status)):
            r[...] = x

    def solve(*arrays):
        n_pad = arrays[0].shape[0]
        spec_1d = pl.BlockSpec((block,), lambda i: (i,))
        out_shape = [jax.ShapeDtypeStruct((n_pad,), dtype)] * n_states
        if adaptive:
            out_shape += [jax.ShapeDtypeStruct((n_pad,), jnp.int32)] * 3
        kwargs = {}
        if not interpret:
            from jax.experimental.pallas import triton as plt  # optional: the Triton lowering, needed only off the interpreter

            kwargs["compiler_params"] = plt.CompilerParams(num_warps=max(block // 32, 1), num_stages=1)
        return pl.pallas_call(
            kernel, out_shape=tuple(out_shape), grid=(n_pad // block,),
            in_specs=[spec_1d] * (n_states + n_params), out_specs=tuple([spec_1d] * len(out_shape)),
            interpret=interpret, debug=debug, name=f"{spec.method}_{spec.mode}_{spec.problem}", **kwargs,
        )(*arrays)

    return solve


def padded_inputs(spec: SolveSpec, block: int) -> list[np.ndarray]:
    """u0 and p as one contiguous (N_padded,) array per component, padded with the last row."""
    u0, p = spec.ensemble()
    n_pad = -(-spec.n // block) * block
    rows = np.concatenate([u0, p], axis=1)
    if n_pad > spec.n:
        rows = np.concatenate([rows, np.repeat(rows[-1:], n_pad - spec.n, axis=0)])
    return [np.ascontiguousarray(rows[:, j]) for j in range(rows.shape[1])]


class PallasPrepared(Prepared):
    """A jitted ``pallas_call`` with its inputs on the device.

    Attributes:
        fn: the jitted solve; ``fn(*inputs)`` is the timed call.
        inputs: the per-component (N_padded,) arrays on the device.
        block: trajectories per program; interpret: True on a CPU.
    """

    dispatch = "jax"

    def __init__(self, spec: SolveSpec, block: int = BLOCK) -> None:
        import jax  # jax is optional: imported only when this backend prepares a solve

        self.spec = spec
        self.constants = step_constants(spec)
        self.block = block_size(spec, block)
        self.interpret = spec.device == "cpu"
        with x64_scope(spec.dtype):
            self.inputs = jax.device_put(padded_inputs(spec, self.block), jax_device(spec.device))
            self.fn = jax.jit(build_kernel_call(spec, self.constants, self.block, self.interpret))

    def run(self) -> Any:
        with x64_scope(self.spec.dtype):
            return self.fn(*self.inputs)

    def sync(self, out: Any) -> None:
        import jax  # jax is optional: imported only when this backend runs

        jax.block_until_ready(out)

    def fetch(self, out: Any) -> SolveResult:
        n, n_states = self.spec.n, self.spec.prob.n_states
        host = [np.asarray(x)[:n] for x in out]
        u_final = np.stack(host[:n_states], axis=1)
        notes = {"block": self.block, "interpret": self.interpret}
        if self.spec.mode == "fixed":
            return fixed_result(u_final, self.constants, notes)
        accepted, rejected, status = host[n_states:]
        return adaptive_result(u_final, accepted, rejected, status, self.constants, notes)

    def close(self) -> None:
        self.inputs = None
        self.fn = None


class PallasBackend(Backend):
    """The fused design in Pallas (see the module docstring)."""

    compilers = {"cpu": "xla"}
    name = "pallas"
    devices = ("cpu", "gpu")
    kinds = {"ode": KindSupport(METHODS)}
    variants = ("",)

    def available(self, device: str = "cpu") -> tuple[bool, str]:
        ok, why = jax_available(device)
        if not ok:
            return ok, why
        try:
            from jax.experimental import pallas  # noqa: F401
            if device == "gpu":
                from jax.experimental.pallas import triton  # noqa: F401
        except ImportError as exc:
            return False, f"jax.experimental.pallas is not importable: {exc}"
        return True, why + (f" ({INTERPRET_NOTE})" if device == "cpu" else " (Triton lowering)")

    def check_own(self, spec: SolveSpec) -> str | None:
        reason = check_common(spec)
        if reason is None and getattr(spec.prob, "rhs_array", None) is not None:
            reason = "pallas kernels take the component form only (a vectorised-form problem, e.g. Lorenz-96)"
        return reason

    def step_control(self, spec: SolveSpec) -> str:
        return "none" if spec.mode == "fixed" else "lockstep"

    def settings_own(self, spec: SolveSpec) -> dict[str, Any]:
        import jax  # jax is optional: imported only for this backend's settings

        b = block_size(spec)
        s = common_settings(spec, step_constants(spec))
        s.update(
            step_control=self.step_control(spec),
            step_control_scope="lockstep within a block of trajectories; blocks independent",
            library=f"jax {jax.__version__} pallas",
            block=b,
            n_padded=-(-spec.n // b) * b,
            layout="structure-of-arrays: one (N_padded,) array per state component and parameter",
            loop="lax.fori_loop inside the kernel" if spec.mode == "fixed" else
                 "lax.while_loop inside the kernel until the block's last lane is done",
            x64="scoped jax.enable_x64(True)" if spec.dtype == "float64" else "off (scoped)",
            device=spec.device,
        )
        if spec.device == "cpu":
            s.update(interpret=True, note=INTERPRET_NOTE)
        else:
            s.update(interpret=False, lowering="triton", num_warps=max(b // 32, 1), num_stages=1)
        return s

    def prepare_own(self, spec: SolveSpec) -> Prepared:
        return PallasPrepared(spec)
