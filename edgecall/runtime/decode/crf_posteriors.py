"""Forward/backward over CRF transition scores: the beam's guide and per-state posteriors.

Score layout (DESIGN.md "CRF decoding"): frame ``t`` has ``C = 4**(L+1)`` scores;
``scores[t, s*4 + j]`` is the step into state ``s`` (a k-mer, newest base in the
low 2 bits) from ``(s >> 2) + j * 4**(L-1)``. A stay keeps ``s`` and scores
``stay``: one fixed number (the model's blank score), or, for a head that learns
its stays, a (T, S) float32 array of per-frame, per-state scores. Such a head
emits ``5 * 4**L`` scores per frame, each state's stay followed by its four steps
(bonito's ``CTC_CRF`` layout); ``split_stays`` takes them apart into the two.
The kernels tell the two kinds of ``stay`` apart by type when numba compiles
them, so the fixed-blank code is what it was before learned stays existed. Both
scans start from 0 in every state, as dorado and openfish do.

Dorado and openfish run the scans in log space: five exps and a log per state and
frame. Here they run in linear space, in float32, rescaled every frame, so each
score is exponentiated once (by a vectorisable exp) and the scans are
multiply-adds over contiguous runs of weights stored in scan order. Results agree
with a float64 log-space reference to float32 rounding (tests check this) at a
fraction of the cost.
"""

from __future__ import annotations

import threading

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from edgecall.devices.precision import cpu_flags
from edgecall.runtime.decode.float32_math import E0 as _E0, E1 as _E1, E2 as _E2, E3 as _E3, E4 as _E4, E5 as _E5
from edgecall.runtime.decode.float32_math import HALF as _HALF, LN2_HI as _LN2_HI, LN2_LO as _LN2_LO, LOG2E as _LOG2E
from edgecall.runtime.decode.float32_math import L0 as _L0, L1 as _L1, L2 as _L2, L3 as _L3, L4 as _L4, L5 as _L5
from edgecall.runtime.decode.float32_math import L6 as _L6, L7 as _L7, L8 as _L8, ONE as _ONE, SQRT_HALF as _SQRT_HALF
from edgecall.runtime.decode.float32_math import exp_core

_F = np.float32
_EXP_FLOOR = _F(-87.0)  # below this exp underflows float32 normals: treat as 0
_EXP_CEIL = _F(80.0)  # above this, rescale the frame by its max instead of blank
_EXP_CEIL_BITS = np.int32(_EXP_CEIL.view(np.int32))
_ZERO = _F(0.0)
_LOWEST = _F(np.finfo(np.float32).min)
_LOG_FLOOR = 1e-30  # beta floor before the log: unreachable states sit 69 nats down, not at -inf


# FMA contraction throughout; the scans also let LLVM reorder their sums so the
# per-frame reductions vectorise. Neither set assumes away NaN or infinity.
_FMA = {"contract"}
_FMA_REORDER = {"contract", "reassoc", "nsz", "arcp"}


def _zip_masks(width: int) -> tuple[ir.Constant, ir.Constant]:
    """shufflevector masks that interleave two ``width``-float vectors' low (high) halves: a0 b0 a1 b1 ..."""
    mask = ir.VectorType(ir.IntType(32), width)
    return (ir.Constant(mask, [i // 2 + width * (i % 2) for i in range(width)]),
            ir.Constant(mask, [width // 2 + i // 2 + width * (i % 2) for i in range(width)]))


def _make_exp_transpose(width: int):  # noqa: ANN202 - a numba intrinsic
    """An intrinsic ``f(src, start, shift, dst, offset, stride) -> int32``:
    dst[offset + k*stride + i] = exp(src[start + 16*i + k] - shift) for i < ``width``, k < 16, in registers.

    The exponentials are :func:`_exp_row`'s, operation for operation with the same
    contraction flags, so every value is the same bit for bit (tests check), but on
    whole ``width``-float vectors: numba compiles ``_exp_row`` at the width LLVM
    prefers (256 bits on Intel's AVX-512 CPUs), and the exponentials then went
    through a row in memory before the transpose. Returns the largest float
    bits of ``src - shift`` over the block (``_exp_row``'s overflow test).

    Each run of ``width`` k's is loaded as ``width`` vectors (one per i),
    exponentiated, zipped log2(width) times (a perfect shuffle transposes the
    square), and stored as ``width`` vectors. As a loop of scalar copies the same
    transpose cost more than the exponentials themselves. ``width`` is the CPU's
    float32 vector: 16 fills AVX-512; on AVX2 the 16-wide shuffles split into
    cross-lane permutes that cost as much as the exponentials, where 8 x 8
    squares cost a third of that (bench/RESULTS.md, issue 19). No bounds checks:
    the caller keeps both blocks in range.
    """
    f32, i32 = ir.FloatType(), ir.IntType(32)
    vector, bits_vector = ir.VectorType(f32, width), ir.VectorType(i32, width)
    zips = _zip_masks(width)
    stages = width.bit_length() - 1
    contract = ("contract",)

    def splat(value: float) -> ir.Constant:
        return ir.Constant(vector, [float(value)] * width)

    @intrinsic
    def exp_transpose(typingctx, src, start, shift, dst, offset, stride):  # noqa: ANN001, ANN202, ARG001 - numba's signature
        floats = (src, dst)
        if not all(
            isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == types.float32 for a in floats
        ):  # contiguous float32 rows: the block moves as whole vectors
            return None
        if not all(isinstance(i, types.Integer) for i in (start, offset, stride)) or shift != types.float32:
            return None

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            src_type, dst_type = signature.args[0], signature.args[3]
            src_ary = context.make_array(src_type)(context, builder, args[0])
            dst_ary = context.make_array(dst_type)(context, builder, args[3])
            start_, offset_, stride_ = (
                context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 4, 5)
            )
            intp = context.get_value_type(types.intp)
            module = builder.module
            floor = cgutils.get_or_insert_function(module, ir.FunctionType(vector, [vector]), f"llvm.floor.v{width}f32")
            largest = cgutils.get_or_insert_function(
                module, ir.FunctionType(i32, [bits_vector]), f"llvm.vector.reduce.smax.v{width}i32")
            one_shift = builder.insert_element(ir.Constant(vector, ir.Undefined), args[2], i32(0))
            shift_ = builder.shuffle_vector(one_shift, one_shift, ir.Constant(bits_vector, [0] * width))
            top = ir.Constant(bits_vector, [-2147483647] * width)

            def vector_at(arytype, ary, index):  # noqa: ANN001, ANN202
                ptr = cgutils.get_item_pointer(context, builder, arytype, ary, [index])
                return builder.bitcast(ptr, vector.as_pointer())

            def fma(a, b, c):  # noqa: ANN001, ANN202 - a*b + c as _exp_row writes it; LLVM fuses it alike
                return builder.fadd(builder.fmul(a, b, flags=contract), c, flags=contract)

            def exp(x):  # noqa: ANN001, ANN202 - _exp_row's body on one vector
                nonlocal top
                d = builder.fsub(x, shift_, flags=contract)
                v = builder.select(builder.fcmp_ordered(">", d, splat(_EXP_CEIL), flags=contract), splat(_EXP_CEIL), d)
                k = builder.call(floor, [fma(v, splat(_LOG2E), splat(_HALF))])
                r = fma(k, splat(-_LN2_LO), builder.fsub(v, builder.fmul(k, splat(_LN2_HI), flags=contract), flags=contract))
                p = fma(r, splat(_E0), splat(_E1))
                for c in (_E2, _E3, _E4, _E5):
                    p = fma(r, p, splat(c))
                exponent = builder.shl(builder.fptosi(k, bits_vector), ir.Constant(bits_vector, [23] * width))
                two_k = builder.bitcast(builder.add(exponent, ir.Constant(bits_vector, [127 << 23] * width)), vector)
                r_p = builder.fmul(r, builder.fmul(r, p, flags=contract), flags=contract)
                e = builder.fmul(builder.fadd(builder.fadd(r, r_p, flags=contract), splat(_ONE), flags=contract), two_k,
                                 flags=contract)
                d_bits = builder.bitcast(d, bits_vector)
                top = builder.select(builder.icmp_signed(">", d_bits, top), d_bits, top)
                live = builder.fcmp_ordered(">", d, splat(_EXP_FLOOR), flags=contract)
                return builder.select(live, e, ir.Constant(vector, None))

            half = width // 2
            for first in range(0, 16, width):  # k = first .. first + width - 1
                rows = [exp(builder.load(vector_at(src_type, src_ary, builder.add(start_, intp(16 * i + first))), align=4))
                        for i in range(width)]
                for _ in range(stages):
                    rows = [builder.shuffle_vector(rows[i], rows[i + half], mask) for i in range(half) for mask in zips]
                for k in range(width):
                    place = builder.add(offset_, builder.mul(stride_, intp(first + k)))
                    builder.store(rows[k], vector_at(dst_type, dst_ary, place), align=4)
            return builder.call(largest, [top])

        return types.int32(src, start, shift, dst, offset, stride), codegen

    return exp_transpose


_BLOCK = 16 if "avx512f" in cpu_flags() else 8  # float32 lanes of the CPU's widest vector (AVX2 and NEON: 8 or fewer)
_exp_transpose_block = _make_exp_transpose(_BLOCK)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FMA)
def _exp_row(x: np.ndarray, shift: np.float32, out: np.ndarray) -> bool:
    """out[:] = exp(x - shift) in float32 (about 1 ulp), written so LLVM vectorises it.

    libm's expf is scalar and was half the decoder's time. Returns whether some x
    exceeds shift + 80, where the result would overflow: the caller then retries
    with a larger shift. That test is an integer max over the float bits (for
    floats >= 0 the orders agree), which vectorises where a float max or a count
    of a comparison did not: it halved this loop.
    """
    top = np.int32(-2147483647)
    for c in range(x.shape[0]):
        d = x[c] - shift
        out[c] = exp_core(min(max(d, _EXP_FLOOR), _EXP_CEIL)) if d > _EXP_FLOOR else _ZERO
        top = max(top, np.float32(d).view(np.int32))
    return top > _EXP_CEIL_BITS


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FMA)
def _log_row(x: np.ndarray, offset: float, out: np.ndarray, mant: np.ndarray) -> None:
    """out[:] = float32(log(max(x, 1e-30)) + offset) for (S,) float32 ``x``, vectorised.

    ``mant`` (S,) int32 is scratch. The log's own error (about 1 ulp) is far below
    the float32 rounding of the large offset.
    """
    floor = _F(_LOG_FLOOR)
    for s in range(x.shape[0]):
        mant[s] = np.float32(max(x[s], floor)).view(np.int32)
    for s in range(x.shape[0]):
        xi = mant[s]
        e = _F(((xi >> 23) & 0xFF) - 126)
        m = np.int32((xi & 0x007FFFFF) | 0x3F000000).view(np.float32)  # mantissa in [0.5, 1)
        small = m < _SQRT_HALF
        e = e - _ONE if small else e
        m = (m + m - _ONE) if small else (m - _ONE)
        z = m * m
        y = ((((((((_L0 * m + _L1) * m + _L2) * m + _L3) * m + _L4) * m + _L5) * m + _L6) * m + _L7) * m + _L8) * m * z
        y = y + _LN2_LO * e - _HALF * z
        out[s] = _F(np.float64(m + y + _LN2_HI * e) + offset)


@njit(cache=True, nogil=True, error_model="numpy")
def _exp_blocks(row: np.ndarray, shift: np.float32, out: np.ndarray, msb: int) -> bool:
    """``_exp_row`` of a whole row, written straight into scan order block by block; the same overflow test."""
    top = np.int32(-2147483647)
    for q in range(0, msb, _BLOCK):
        top = max(top, _exp_transpose_block(row, 16 * q, shift, out, q, msb))
    return top > _EXP_CEIL_BITS


@njit(cache=True, nogil=True, error_model="numpy")
def _highest(row: np.ndarray, floor: np.float32) -> np.float32:
    """The larger of ``floor`` and the row's best score; NaN never raises it."""
    for c in range(row.shape[0]):
        if row[c] > floor:
            floor = row[c]
    return floor


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FMA)
def _weights(scores: np.ndarray, n: int, stay, weights: np.ndarray, stay_w: np.ndarray, shift: np.ndarray) -> None:  # noqa: ANN001 - float | (T, S) array
    """exp(scores - shift) per frame, the shift chosen so nothing overflows, stored in scan order.

    The shift is the frame's stay score (the highest, for learned stays), so the
    best stay weighs 1, unless a score sits more than 80 above it; then it is the
    frame's best score. Fills ``weights`` (T, C) float32, ``stay_w`` = exp(stay -
    shift), (T,) float32 for a fixed stay or (T, S) for learned ones, and ``shift``
    (T,) float64. Scan order: score ``16q + k`` of a frame goes to ``k * C/16 + q``,
    so both scans read the 16 weights of a state group as contiguous runs over q
    and vectorise.
    """
    frames, _, width = scores.shape
    msb = width // 16
    in_registers = msb % _BLOCK == 0  # state_len >= 3: C/16 = 4**(L-1) groups fill whole blocks
    row_exp = np.empty(0 if in_registers else width, np.float32)
    for t in range(frames):
        row = scores[t, n]
        m = _F(stay) if isinstance(stay, float) else _highest(stay[t], _LOWEST)
        out = weights[t]
        if in_registers:
            if _exp_blocks(row, m, out, msb):
                m = _highest(row, m)
                _exp_blocks(row, m, out, msb)
        else:
            if _exp_row(row, m, row_exp):
                m = _highest(row, m)
                _exp_row(row, m, row_exp)
            for k in range(16):
                for q in range(msb):
                    out[k * msb + q] = row_exp[16 * q + k]
        shift[t] = m
        if isinstance(stay, float):
            stay_w[t] = np.exp(stay - np.float64(m))
        else:
            _exp_row(stay[t], m, stay_w[t])


@njit(cache=True, nogil=True, error_model="numpy")
def _split_stays(scores: np.ndarray, n: int, steps: np.ndarray, stays: np.ndarray) -> None:
    """Chunk ``n`` of (T, N, 5S) learned-stay scores into ``steps`` (T, 1, 4S) and ``stays`` (T, S)."""
    frames, _, width = scores.shape
    for t in range(frames):
        row, out, stay = scores[t, n], steps[t, 0], stays[t]
        for s in range(width // 5):
            stay[s] = row[5 * s]
            for j in range(4):
                out[4 * s + j] = row[5 * s + 1 + j]


class Workspace:
    """Buffers one thread reuses from chunk to chunk.

    A chunk's scans need ~6 MB of scratch; allocated per chunk, glibc hands such
    sizes out as fresh mmapped pages, and faulting them in cost more than the
    scans themselves (4.4 vs 1.6 ms per chunk, bench/decode.py). Not thread-safe:
    one per thread.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """An uninitialised array of ``shape``, valid until the next ``take`` of ``name``."""
        size = 1
        for dim in shape:
            size *= dim
        buf = self._buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != np.dtype(dtype):
            buf = self._buffers[name] = np.empty(size, dtype)
        return buf[:size].reshape(shape)


_THREAD = threading.local()


def thread_workspace() -> Workspace:
    """The calling thread's own workspace."""
    space = getattr(_THREAD, "workspace", None)
    if space is None:
        space = _THREAD.workspace = Workspace()
    return space


def split_stays(scores: np.ndarray, n: int, workspace: Workspace | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ``n`` of learned-stay scores, (T, N, 5 * 4**L) float32, as (steps, stays).

    ``steps`` (T, 1, 4**(L+1)) holds the transitions in the fixed-blank layout
    (bonito's column ``5s + 1 + j`` is the step into ``s`` from ``(s >> 2) + j *
    4**(L-1)``, our ``4s + j``), ``stays`` (T, 4**L) the stay scores (column
    ``5s``), both float32 and C-contiguous, ready for ``guides`` and the searches.
    With a ``workspace`` both live in it until its next use.
    """
    space = workspace or Workspace()
    frames, _, width = scores.shape
    num_states = width // 5
    steps = space.take("steps", (frames, 1, 4 * num_states), np.float32)
    stays = space.take("stays", (frames, num_states), np.float32)
    _split_stays(scores, n, steps, stays)
    return steps, stays


def guides(
    scores: np.ndarray, n: int, stay: float | np.ndarray, workspace: Workspace | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Backward log-scores and state posteriors for chunk ``n`` of ``scores``.

    ``scores``: (T, N, C) float32; ``stay``: the fixed stay score, or the (T, S)
    float32 learned ones of this chunk (``split_stays``). Returns ``bwd`` and
    ``post``, both (T+1, S) float32 with S = C // 4: ``bwd[t, s]`` is the log-sum
    of all paths from state ``s`` at frame boundary ``t`` to the end (the beam's
    look-ahead); ``post[t, s]`` is the probability of being in ``s`` at boundary
    ``t``. With a ``workspace`` both live in it and are overwritten by its next use.
    """
    space = workspace or Workspace()
    frames, _, width = scores.shape
    rows = (frames + 1, width // 4)
    if isinstance(stay, np.ndarray):
        if stay.shape != (frames, width // 4) or stay.dtype != np.float32 or not stay.flags.c_contiguous:
            raise ValueError(f"learned stay scores must be C-contiguous float32 {(frames, width // 4)}, got {stay.shape}")
        stay_rows: tuple[int, ...] = (frames, width // 4)
    else:
        stay, stay_rows = float(stay), (frames,)
    bwd, post = space.take("bwd", rows, np.float32), space.take("post", rows, np.float32)
    _scan(
        scores, n, stay, space.take("weights", (frames, width), np.float32),
        space.take("stay", stay_rows, np.float32), space.take("shift", (frames,), np.float64),
        space.take("beta", rows, np.float32), bwd, post,
    )
    return bwd, post


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FMA_REORDER)
def _scan(
    scores: np.ndarray, n: int, stay, w: np.ndarray, stay_w: np.ndarray, shift: np.ndarray,  # noqa: ANN001
    beta: np.ndarray, bwd: np.ndarray, post: np.ndarray,
) -> None:
    """The scans behind :func:`guides`; the other arrays are its scratch and outputs.

    Each frame's vector is rescaled to sum 1, so float32 keeps its relative
    precision over any chunk length; what was divided out is summed in float64.
    """
    frames = scores.shape[0]
    num_states = scores.shape[2] // 4
    msb = num_states // 4
    _weights(scores, n, stay, w, stay_w, shift)

    # Backward: state top*msb + q steps to q*4 + b, weight w[t, (4b + top)*msb + q].
    beta[frames, :] = _ONE / num_states
    bwd[frames, :] = 0.0
    log_scale = np.log(np.float64(num_states))
    mant = np.empty(num_states, np.int32)
    for t in range(frames - 1, -1, -1):
        nxt, cur, wt, st = beta[t + 1], beta[t], w[t], stay_w[t]
        for q in range(msb):  # q outermost: the four successors' beta are gathered once, not per top
            n0, n1, n2, n3 = nxt[q * 4], nxt[q * 4 + 1], nxt[q * 4 + 2], nxt[q * 4 + 3]
            for top in range(4):
                o = top * msb + q
                cur[o] = (
                    (st if isinstance(stay, float) else st[o]) * nxt[o]
                    + n0 * wt[o] + n1 * wt[o + 4 * msb] + n2 * wt[o + 8 * msb] + n3 * wt[o + 12 * msb]
                )
        total = _ZERO
        for s in range(num_states):
            total += cur[s]
        inv = _ONE / total
        for s in range(num_states):
            cur[s] *= inv
        log_scale += shift[t] + np.log(np.float64(total))
        _log_row(cur, log_scale, bwd[t], mant)

    # Forward, with each boundary's posterior as soon as alpha is known there.
    # State q*4 + b comes from q + j*msb, weight w[t, (4b + j)*msb + q].
    alpha = np.ones(num_states, np.float32)
    nxt_alpha = np.empty(num_states, np.float32)
    for t in range(frames + 1):
        here = beta[t]
        total = _ZERO
        for s in range(num_states):
            total += alpha[s] * here[s]
        inv = _ONE / total
        for s in range(num_states):
            post[t, s] = alpha[s] * here[s] * inv
        if t == frames:
            break
        wt, st = w[t], stay_w[t]
        for q in range(msb):
            a0, a1, a2, a3 = alpha[q], alpha[q + msb], alpha[q + 2 * msb], alpha[q + 3 * msb]
            for b in range(4):
                o = 4 * b * msb + q
                s = q * 4 + b
                nxt_alpha[s] = (
                    (st if isinstance(stay, float) else st[s]) * alpha[s]
                    + a0 * wt[o] + a1 * wt[o + msb] + a2 * wt[o + 2 * msb] + a3 * wt[o + 3 * msb]
                )
        total = _ZERO
        for s in range(num_states):
            total += nxt_alpha[s]
        inv = _ONE / total
        for s in range(num_states):
            alpha[s] = nxt_alpha[s] * inv
