"""The Brownian paths of an SDE ensemble, defined by a counter-based generator.

Trajectory ``i`` of an ensemble solved with seed ``s`` sees, at step ``k``, the standard normals
``normals(s, i, k)``: Philox-4x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy
as 1, 2, 3") keyed by ``(i, s)`` with the counter ``(k, block, 0, 0)``, turned into normals by
Box-Muller. No generator state lives in memory: any kernel, lane, thread or shard computes the
numbers of any (seed, trajectory, step) on its own, so results do not depend on N, on how the
ensemble is split, or on the device. This module is the one definition: the fused kernels
(Numba CPU and CUDA), the array-style replica (NumPy/CuPy) and the float64 reference paths all
call these functions.

The functions are written once on 64-bit unsigned integers holding 32-bit words (products of two
32-bit words fit in 64 bits, so mulhilo needs no 128-bit type): the same source runs on Python
scalars typed ``np.uint64``, inside Numba CPU and CUDA kernels, and elementwise on NumPy/CuPy
``uint64`` arrays. Constants are ``np.uint64`` so Numba never mixes signed and unsigned (which
it would type as float64).

Box-Muller rather than the polar method or a ziggurat: it is branch-free (no rejection loop, so
no divergence between GPU threads or SIMD lanes), makes exactly two normals from two uniforms
(one Philox call gives the four normals of four Wiener processes), and it is what CUDA.jl's
device RNG and cuRAND's ``curand_normal`` use. Its tails are bounded by the 32-bit uniform
(|z| <= sqrt(-2 ln 2^-33) ~ 6.8), irrelevant for the weak and strong checks here.
"""
from __future__ import annotations

import math

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
#: 2**-32: maps a 32-bit word to [0, 1).
_TWO_M32 = 2.3283064365386963e-10
_TWO_PI = 6.283185307179586

#: How the increments are named in results (SolveResult.notes["increments"]).
GENERATOR = "philox4x32-10 key=(trajectory, seed) counter=(step, block, 0, 0), Box-Muller"


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 of counter (c0..c3) and key (k0, k1); every argument and result a
    32-bit word held in a uint64 (scalar or array)."""
    for _ in range(10):
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        hi0 = p0 >> _S32
        lo0 = p0 & _M32
        hi1 = p1 >> _S32
        lo1 = p1 & _M32
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = (k0 + _PHILOX_W0) & _M32
        k1 = (k1 + _PHILOX_W1) & _M32
    return c0, c1, c2, c3


def box_muller_for(T):
    """``box_muller(r0, r1)``: two independent standard normals of dtype ``T`` (np.float32 or
    np.float64) from two 32-bit words; its constants are built with ``T`` (no float64 literal
    reaches a float32 kernel).

    u1 = (r0 + 1/2) 2^-32 lies in (0, 1] (never 0: log is finite); u2 = r1 2^-32 in [0, 1).
    """
    half, scale, minus_two, two_pi = T(0.5), T(_TWO_M32), T(-2.0), T(_TWO_PI)

    def box_muller(r0, r1):
        u1 = (T(r0) + half) * scale
        u2 = T(r1) * scale
        rad = math.sqrt(minus_two * math.log(u1))
        ang = two_pi * u2
        return rad * math.cos(ang), rad * math.sin(ang)

    return box_muller


def uniforms_words(seed: int, traj, step, block):
    """The four 32-bit words of (seed, trajectory, step, block), elementwise over NumPy arrays."""
    traj = np.asarray(traj, dtype=np.uint64)
    step = np.asarray(step, dtype=np.uint64)
    block = np.asarray(block, dtype=np.uint64)
    zero = np.zeros(np.broadcast(traj, step, block).shape, dtype=np.uint64)
    return philox4x32_10(step + zero, block + zero, zero, zero, traj + zero, np.uint64(seed) + zero)


def normals(seed: int, traj, step, n_noise: int, dtype="float64", xp=np) -> np.ndarray:
    """Standard normals shaped broadcast(traj, step) + (n_noise,), vectorised (NumPy or CuPy).

    Noise j comes from Philox block j // 4, word pair (0, 1) -> normals 0, 1 and (2, 3) -> 2, 3
    of the block, exactly as the kernels draw them.
    """
    T = xp.dtype(dtype).type
    out = []
    for block in range((n_noise + 3) // 4):
        w = uniforms_words(seed, traj, step, block) if xp is np else _words_xp(xp, seed, traj, step, block)
        for a, b in ((w[0], w[1]), (w[2], w[3])):
            u1 = (a.astype(T) + T(0.5)) * T(_TWO_M32)
            u2 = b.astype(T) * T(_TWO_M32)
            rad = xp.sqrt(T(-2.0) * xp.log(u1))
            ang = T(_TWO_PI) * u2
            out += [rad * xp.cos(ang), rad * xp.sin(ang)]
    return xp.stack(out[:n_noise], axis=-1)


def _words_xp(xp, seed, traj, step, block):
    traj = xp.asarray(traj, dtype=xp.uint64)
    step = xp.asarray(step, dtype=xp.uint64)
    zero = xp.zeros(xp.broadcast(traj, step).shape, dtype=xp.uint64)
    return philox4x32_10(step + zero, zero + np.uint64(block), zero, zero, traj + zero, zero + np.uint64(seed))


def increments(seed: int, traj, step, n_noise: int, dt: float, refine: int = 1, dtype="float64",
               xp=np) -> np.ndarray:
    """Wiener increments over coarse step ``step`` of size ``dt``: the sum of the ``refine`` fine
    normals of steps ``step*refine .. step*refine + refine-1``, times sqrt(dt / refine).

    With refine = 2^j the path at dt is exactly the path at dt / 2^j summed (consistent
    refinement, for strong-order tests)."""
    step = xp.asarray(step, dtype=xp.uint64)
    acc = None
    for r in range(refine):
        z = normals(seed, traj, step * np.uint64(refine) + np.uint64(r), n_noise, dtype, xp)
        acc = z if acc is None else acc + z
    T = xp.dtype(dtype).type
    return acc * T(math.sqrt(dt / refine))
