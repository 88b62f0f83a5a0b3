"""Exact float helpers for the step controller's log/exp: mantissa, exponent, 2^n, floor.

The step controller needs ``eest ** beta1`` and ``qold ** beta2`` on every step. A libm
``powf`` call cannot be vectorised by LLVM here (no SVML) and costs more than a whole Tsit5
step of a lane block, so the generated kernels compute the power with their own log and exp
(``solvers.fused.codegen``), built on four exact operations, each returning a float of the
kernel dtype:

``_mant(x)``  the significand of a positive normal x, in [1, 2);
``_expo(x)``  its unbiased binary exponent (x = _mant(x) * 2**_expo(x));
``_pow2(n)``  2**n for an integer-valued n in the normal range;
``_floor(x)`` floor(x).

One implementation per target, bit-identical results on all of them:

* CPU: LLVM intrinsics below (integer ops in the float's own width, so a float32 lane loop
  stays 16 lanes wide, and ``llvm.floor`` instead of a libm call);
* CUDA: the same bit operations written as source in the generated module, on libdevice's
  ``__float_as_int`` family and ``floorf`` (``cuda_bitcasts``);
* the CUDA simulator (plain Python): the same source on NumPy views.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core import config as _numba_config
from numba.core.extending import intrinsic
from numba.core.imputils import impl_ret_borrowed

# (int bits, float type, shift, exponent bias, mantissa mask, bits of 1.0, exponent mask)
_FORMATS = {
    "float32": (32, np.float32, 23, 127, (1 << 23) - 1, 0x3F800000, 0xFF),
    "float64": (64, np.float64, 52, 1023, (1 << 52) - 1, 0x3FF0000000000000, 0x7FF),
}


def _fmt(x):
    return _FORMATS["float32" if x == types.float32 else "float64"]


def _llvm_types(x):
    bits = _fmt(x)[0]
    return ir.IntType(bits), (ir.FloatType() if bits == 32 else ir.DoubleType())


@intrinsic
def cpu_mant(typingctx, x):
    """Significand of a positive normal float, in [1, 2)."""
    if x not in (types.float32, types.float64):
        return None
    _, _, _, _, mant, one, _ = _fmt(x)

    def codegen(context, builder, signature, args):
        it, ft = _llvm_types(signature.args[0])
        b = builder.bitcast(args[0], it)
        b = builder.or_(builder.and_(b, ir.Constant(it, mant)), ir.Constant(it, one))
        return builder.bitcast(b, ft)

    return x(x), codegen


@intrinsic
def cpu_expo(typingctx, x):
    """Unbiased binary exponent of a positive normal float, as a float."""
    if x not in (types.float32, types.float64):
        return None
    _, _, shift, bias, _, _, emask = _fmt(x)

    def codegen(context, builder, signature, args):
        it, ft = _llvm_types(signature.args[0])
        b = builder.bitcast(args[0], it)
        e = builder.and_(builder.lshr(b, ir.Constant(it, shift)), ir.Constant(it, emask))
        e = builder.sub(e, ir.Constant(it, bias))
        return builder.sitofp(e, ft)

    return x(x), codegen


@intrinsic
def cpu_pow2(typingctx, n):
    """2**n for an integer-valued float n in the normal exponent range."""
    if n not in (types.float32, types.float64):
        return None
    _, _, shift, bias, _, _, _ = _fmt(n)

    def codegen(context, builder, signature, args):
        it, ft = _llvm_types(signature.args[0])
        k = builder.fptosi(args[0], it)
        k = builder.shl(builder.add(k, ir.Constant(it, bias)), ir.Constant(it, shift))
        return builder.bitcast(k, ft)

    return n(n), codegen


@intrinsic
def cpu_floor(typingctx, x):
    """floor(x) through ``llvm.floor`` (vectorises; Numba's math.floor calls libm)."""
    if x not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        _, ft = _llvm_types(signature.args[0])
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ft, [ft]),
                                            f"llvm.floor.{'f32' if ft == ir.FloatType() else 'f64'}")
        return builder.call(fn, [args[0]])

    return x(x), codegen


@intrinsic
def aligned_frame(typingctx, x):
    """``x``, unchanged; the calling function's stack frame becomes 64-byte aligned.

    Why: a CPU lane block of an adaptive kernel spills tens of 64-byte vectors (constants and
    stage values) to its frame on every attempt. The ABI aligns the stack to 16 bytes only,
    so where the frame lands (the thread's stack, the caller's depth) decides whether every
    spill slot straddles two cache lines: the same kernel then ran up to 15% slower in three
    processes out of four (Zen 4, issue 29). A 64-byte-aligned slot whose address an empty
    inline-asm statement takes makes LLVM realign the frame (``and rsp, -64``) and place its
    vector spill slots on their natural alignment. Nothing is computed or stored.
    """
    def codegen(context, builder, signature, args):
        with builder.goto_entry_block():
            slot = builder.alloca(ir.IntType(64), name="frame_align64")
        slot.align = 64
        builder.asm(ir.FunctionType(ir.VoidType(), [slot.type]), "", "r", [slot], side_effect=True, name="")
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])  # a new reference

    return x(x), codegen


def cpu_helpers(dtype: str):
    """(_mant, _expo, _pow2, _floor) for CPU kernels (the intrinsics dispatch on the dtype)."""
    return cpu_mant, cpu_expo, cpu_pow2, cpu_floor


# ---- CUDA and its simulator -------------------------------------------------------------------

def cuda_simulated() -> bool:
    """True when Numba's CUDA simulator replaces the CUDA target (NUMBA_ENABLE_CUDASIM=1)."""
    try:
        # numba-cuda's own config: optional, and importing numba.cuda sets up the CUDA target
        from numba.cuda.core import config
    except ImportError:  # pragma: no cover - Numba's built-in CUDA target
        config = _numba_config
    return bool(config.ENABLE_CUDASIM)


def _sim_bitcasts(dtype: str):
    ft, it = (np.float32, np.int32) if dtype == "float32" else (np.float64, np.int64)

    def f2i(x):
        return np.array(x, dtype=ft).view(it)[()]

    def i2f(i):
        return np.array(i, dtype=np.int64).astype(it).view(ft)[()]

    return f2i, i2f


def cuda_bitcasts(dtype: str):
    """(float -> int bits, int bits -> float, floor) for CUDA kernels of ``dtype``.

    libdevice's ``__float_as_int`` family and ``floorf`` on a real device, NumPy under the
    simulator (which has no libdevice). The generated CUDA module builds ``_mant``,
    ``_expo``, ``_pow2`` and ``_floor`` from them as source (see ``codegen``).
    """
    if cuda_simulated():
        f2i, i2f = _sim_bitcasts(dtype)
        return f2i, i2f, np.floor
    from numba.cuda import libdevice  # optional (numba-cuda): CUDA kernels only, not under the simulator

    if dtype == "float32":
        return libdevice.float_as_int, libdevice.int_as_float, libdevice.floorf
    return libdevice.double_as_longlong, libdevice.longlong_as_double, libdevice.floor


def bit_format(dtype: str) -> tuple:
    """(int bits, shift, exponent bias, mantissa mask, bits of 1.0, exponent mask) of ``dtype``."""
    bits, _, shift, bias, mant, one, emask = _FORMATS[dtype]
    return bits, shift, bias, mant, one, emask
