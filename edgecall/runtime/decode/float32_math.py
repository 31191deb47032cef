"""Cephes's float32 ``expf`` and ``logf`` cores, written so LLVM vectorises the loops they sit in.

libm's ``expf``/``log1pf`` are scalar calls, which stop a loop from vectorising.
These are polynomials around a power-of-two split done on the float bits, about
1 ulp. The decoder (``crf_posteriors``) and the training loss's target lattice
(``edgecall.train.crf_loss``) share them; numba inlines the functions, so each
caller's loop keeps its own contraction flags.
"""

from __future__ import annotations

import numpy as np
from numba import njit

F32 = np.float32
LOG2E = F32(1.44269504088896341)
LN2_HI = F32(0.693359375)
LN2_LO = F32(-2.12194440e-4)
E0, E1, E2 = F32(1.9875691500e-4), F32(1.3981999507e-3), F32(8.3334519073e-3)
E3, E4, E5 = F32(4.1665795894e-2), F32(1.6666665459e-1), F32(5.0000001201e-1)
L0, L1, L2 = F32(7.0376836292e-2), F32(-1.1514610310e-1), F32(1.1676998740e-1)
L3, L4, L5 = F32(-1.2420140846e-1), F32(1.4249322787e-1), F32(-1.6668057665e-1)
L6, L7, L8 = F32(2.0000714765e-1), F32(-2.4999993993e-1), F32(3.3333331174e-1)
SQRT_HALF = F32(0.707106781186547524)
HALF = F32(0.5)
ONE = F32(1.0)
_SQRT2_MINUS_ONE = F32(0.41421356237309515)


@njit(inline="always", error_model="numpy")
def exp_core(v: np.float32) -> np.float32:
    """exp(v) for float32 ``v`` the caller has kept within [-87, 88] (normal results, no overflow)."""
    k = np.floor(v * LOG2E + HALF)
    r = v - k * LN2_HI - k * LN2_LO
    p = ((((E0 * r + E1) * r + E2) * r + E3) * r + E4) * r + E5
    two_k = np.int32((np.int32(k) + 127) << 23).view(np.float32)
    return (p * r * r + r + ONE) * two_k


@njit(inline="always", error_model="numpy")
def log1p_core(e: np.float32) -> np.float32:
    """log(1 + e) for float32 ``e`` in [0, 1], as logf of 1 + e without forming it: below sqrt(2) - 1 the
    polynomial takes ``e`` itself, above it (1 + e) / 2 - 1 and adds ln 2, both exact, so no bits of ``e`` are lost.
    The caller keeps ``e`` at least ~1e-11 (or 0), where the squares stay normal: denormals cost ~100x."""
    upper = e >= _SQRT2_MINUS_ONE
    m = (e - ONE) * HALF if upper else e
    z = m * m
    y = ((((((((L0 * m + L1) * m + L2) * m + L3) * m + L4) * m + L5) * m + L6) * m + L7) * m + L8) * m * z
    y = y - HALF * z
    return (m + y + LN2_LO + LN2_HI) if upper else (m + y)
