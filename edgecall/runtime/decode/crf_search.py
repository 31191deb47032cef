"""Path search over CRF scores: dorado's beam search and a plain Viterbi.

Both return the state after every frame and a move per frame (1 = step, 0 = stay),
with the first move forced to 1 as dorado does, so frame 0 always emits the base
of its state. The beam search follows dorado ``beam_search.cpp`` and openfish
``beam_search.c`` rule for rule, in float32: same candidate order, CRC32C
sequence hashes, stay/step folding, beam cut and binary-searched cut-off, and
traceback. Given the same look-ahead it makes their choices; ours comes from
``crf_posteriors``'s linear-space scans, not their float32 log-space ones, so
near-ties can still fall the other way.

``stay`` is the fixed stay (blank) score, or the chunk's (T, S) float32 learned
stay scores (``crf_posteriors.split_stays``); numba compiles each kind apart, so
the fixed-blank code is unchanged by the learned kind.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_LOWEST = np.float32(np.finfo(np.float32).min)  # C++ numeric_limits<float>::lowest()
_HALF = np.float32(0.5)
_FOLD_LIMIT = np.float32(17.0)  # log_sum_exp ignores the smaller term beyond this gap
_CRC_SEED = 0x12345678
_CRC_POLY = 0x82F63B78  # CRC32C, reversed polynomial
_HASH_BITS = 4096  # buckets for finding the steps a stay may fold into
_MAX_GUESSES = 10  # binary-search steps for the beam cut-off
_AHEAD = 2  # frames ahead whose score and look-ahead rows are prefetched
_LINE_FLOATS = 16  # float32 values per 64-byte cache line


@intrinsic
def _prefetch(typingctx, array, index):  # noqa: ANN001, ANN202, ARG001 - numba's intrinsic signature
    """Hint that ``array[index]`` (1-D) will soon be read: llvm.prefetch, which never
    faults and changes no result."""
    if not isinstance(array, types.Array) or array.ndim != 1 or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        arytype = signature.args[0]
        ary = context.make_array(arytype)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, arytype, ary, [args[1]])
        if getattr(ptr.type, "is_opaque", False):
            name = "llvm.prefetch.p0"
        else:  # typed pointers: the i8* overload
            ptr, name = builder.bitcast(ptr, ir.IntType(8).as_pointer()), "llvm.prefetch.p0i8"
        i32 = ir.IntType(32)
        signature_ = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, signature_, name)
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in every cache level, data
        return context.get_dummy_value()

    return types.void(array, index), codegen


@njit(cache=True, nogil=True)
def _prefetch_row(row: np.ndarray) -> None:
    """Prefetch every cache line of a contiguous 1-D row."""
    for c in range(0, row.shape[0], _LINE_FLOATS):
        _prefetch(row, c)
    if row.shape[0]:
        _prefetch(row, row.shape[0] - 1)  # the last line, when the row starts mid-line


@njit(cache=True, nogil=True)
def _crc32c(crc: int, bits: int, num_bits: int) -> int:
    """Fold ``num_bits`` low bits of ``bits`` into a CRC32C; kept in int64, < 2**32."""
    for _ in range(num_bits):
        b = (bits ^ crc) & 1
        crc >>= 1
        if b:
            crc ^= _CRC_POLY
        bits >>= 1
    return crc


@njit(cache=True, nogil=True, error_model="numpy")
def _log_sum_exp(x: np.float32, y: np.float32) -> np.float32:
    diff = abs(x - y)
    m = max(x, y)
    if diff < _FOLD_LIMIT:
        return m + np.log1p(np.exp(-diff))
    return m


@njit(cache=True, nogil=True, error_model="numpy")
def _count_above(scores: np.ndarray, count: int, cutoff: np.float32) -> int:
    kept = 0
    for i in range(count):
        if scores[i] >= cutoff:
            kept += 1
    return kept


@njit(cache=True, nogil=True, error_model="numpy")
def beam_path(
    scores: np.ndarray, n: int, bwd: np.ndarray, beam_width: int, beam_cut: float, stay,  # noqa: ANN001
    ahead: int = _AHEAD,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best path of chunk ``n`` by dorado's beam search, guided by ``bwd`` (T+1, S) float32.

    ``scores``: (T, N, C) float32; ``stay``: float or (T, S) float32. Returns ``states`` (T,) int32, ``moves`` (T,) uint8
    and the winning hypothesis' forward log-score (stays and steps of the same
    sequence summed). Needs T >= 1. ``ahead``: how many frames ahead the score and
    look-ahead rows are prefetched (0: none; bench/decode.py times both).
    """
    frames = scores.shape[0]
    num_states = bwd.shape[1]
    mask = num_states - 1
    state_bits = 0
    while (1 << state_bits) < num_states:
        state_bits += 1
    fixed_stay = np.float32(stay if isinstance(stay, float) else 0.0)
    log_cut = np.float32(np.log(np.float32(beam_cut))) if beam_cut > 0.0 else -_LOWEST
    width = beam_width
    candidates = width * 5

    # Whole-beam history: (T+1, width), row 0 is the seed states.
    hist_state = np.zeros((frames + 1, width), np.int32)
    hist_prev = np.zeros((frames + 1, width), np.int32)
    hist_stay = np.zeros((frames + 1, width), np.bool_)
    # The previous front (survivors) and the current candidates.
    prev_hash = np.zeros(candidates, np.int64)
    prev_state = np.zeros(candidates, np.int32)
    prev_scores = np.zeros(candidates, np.float32)
    cur_hash = np.zeros(candidates, np.int64)
    cur_state = np.zeros(candidates, np.int32)
    cur_prev = np.zeros(candidates, np.int32)
    cur_stay = np.zeros(candidates, np.bool_)
    cur_scores = np.zeros(candidates, np.float32)
    # Steps by hash bucket, so a stay finds the steps that may spell its sequence without
    # comparing against every step: the newest step per bucket, and the one before it.
    bucket_last = np.full(_HASH_BITS, -1, np.int32)
    bucket_prev = np.empty(candidates, np.int32)
    matches = np.empty(width, np.int32)

    # Seed the beam with the states whose look-ahead makes the top `width`, in state order.
    threshold = _LOWEST
    if width < num_states:
        threshold = np.sort(bwd[0])[num_states - width]
    beam = 0
    for s in range(num_states):
        if beam >= width:
            break
        if bwd[0, s] >= threshold:
            prev_hash[beam] = _crc32c(_CRC_SEED, s, 32)
            prev_state[beam] = s
            prev_scores[beam] = 0.0
            hist_state[0, beam] = s
            beam += 1
    beam = min(width, num_states)

    for t in range(frames):
        max_score = _LOWEST
        count = 0
        if ahead > 0 and t + ahead < frames:  # the candidates' loads are scattered, beyond the hardware's guess
            _prefetch_row(scores[t + ahead, n])
            _prefetch_row(bwd[t + 1 + ahead])
        # Steps: candidate prev*4 + base.
        for p in range(beam):
            shifted = (prev_state[p] << 2) & mask
            action = (prev_state[p] << 2) >> state_bits  # the base that falls off
            for base in range(4):
                new_state = shifted | base
                score = prev_scores[p] + scores[t, n, new_state * 4 + action] + bwd[t + 1, new_state]
                h = _crc32c(prev_hash[p], base, 2)
                bucket = h & (_HASH_BITS - 1)
                bucket_prev[count] = bucket_last[bucket]
                bucket_last[bucket] = count
                cur_hash[count] = h
                cur_state[count] = new_state
                cur_prev[count] = p
                cur_stay[count] = False
                cur_scores[count] = score
                if score > max_score:
                    max_score = score
                count += 1
        # Stays: candidate beam*4 + prev; fold into a step that spells the same sequence.
        for p in range(beam):
            stay_score = fixed_stay if isinstance(stay, float) else stay[t, prev_state[p]]
            score = prev_scores[p] + stay_score + bwd[t + 1, prev_state[p]]
            stay_idx = count
            cur_hash[stay_idx] = prev_hash[p]
            cur_state[stay_idx] = prev_state[p]
            cur_prev[stay_idx] = p
            cur_stay[stay_idx] = True
            cur_scores[stay_idx] = score
            if score > max_score:
                max_score = score
            # Steps with this stay's base and hash, newest first; folded oldest first (dorado's order).
            last_base = prev_state[p] & 3
            found = 0
            i = bucket_last[prev_hash[p] & (_HASH_BITS - 1)]
            while i >= 0:
                if (i & 3) == last_base and cur_hash[i] == prev_hash[p]:
                    matches[found] = i
                    found += 1
                i = bucket_prev[i]
            for k in range(found - 1, -1, -1):
                step_idx = matches[k]
                folded = _log_sum_exp(cur_scores[stay_idx], cur_scores[step_idx])
                if cur_scores[stay_idx] > cur_scores[step_idx]:
                    cur_scores[stay_idx] = folded
                    cur_scores[step_idx] = _LOWEST
                else:
                    cur_scores[step_idx] = folded
                    cur_scores[stay_idx] = _LOWEST
                if folded > max_score:
                    max_score = folded
            count += 1
        for i in range(beam * 4):
            bucket_last[cur_hash[i] & (_HASH_BITS - 1)] = -1

        # Cut-off: beam_cut below the best, raised by binary search while too many pass.
        cutoff = max_score - log_cut
        kept = _count_above(cur_scores, count, cutoff)
        if kept > width:
            min_width = (width * 8) // 10
            low = cutoff
            high = max_score
            guesses = 1
            while (kept > width or kept < min_width) and guesses < _MAX_GUESSES:
                if kept > width:
                    low = cutoff
                    cutoff = (cutoff + high) * _HALF
                else:
                    high = cutoff
                    cutoff = (cutoff + low) * _HALF
                kept = _count_above(cur_scores, count, cutoff)
                guesses += 1
            if guesses == _MAX_GUESSES:
                cutoff = high
                kept = _count_above(cur_scores, count, cutoff)
            kept = min(kept, width)
        if kept == 0:  # only with NaN scores: keep one element rather than lose the path
            cutoff = _LOWEST
            kept = 1

        w = 0
        for i in range(count):
            if cur_scores[i] >= cutoff:
                if w >= width:
                    break
                prev_hash[w] = cur_hash[i]
                prev_state[w] = cur_state[i]
                prev_scores[w] = cur_scores[i]
                hist_prev[t + 1, w] = cur_prev[i]
                hist_stay[t + 1, w] = cur_stay[i]
                w += 1

        if t == frames - 1:  # the best element goes to slot 0 for the traceback
            best = 0
            best_score = _LOWEST
            for i in range(kept):
                if prev_scores[i] > best_score:
                    best_score = prev_scores[i]
                    best = i
            prev_hash[0], prev_hash[best] = prev_hash[best], prev_hash[0]
            prev_state[0], prev_state[best] = prev_state[best], prev_state[0]
            prev_scores[0], prev_scores[best] = prev_scores[best], prev_scores[0]
            hist_prev[t + 1, 0], hist_prev[t + 1, best] = hist_prev[t + 1, best], hist_prev[t + 1, 0]
            hist_stay[t + 1, 0], hist_stay[t + 1, best] = hist_stay[t + 1, best], hist_stay[t + 1, 0]

        for i in range(kept):
            prev_scores[i] -= bwd[t + 1, prev_state[i]]  # keep the forward part only
            hist_state[t + 1, i] = prev_state[i]
        beam = kept

    states = np.empty(frames, np.int32)
    moves = np.empty(frames, np.uint8)
    elem = 0
    for t in range(frames, 0, -1):
        states[t - 1] = hist_state[t, elem]
        moves[t - 1] = 0 if hist_stay[t, elem] else 1
        elem = hist_prev[t, elem]
    moves[0] = 1
    return states, moves, float(prev_scores[0])


@njit(cache=True, nogil=True, error_model="numpy")
def viterbi_path(scores: np.ndarray, n: int, stay) -> tuple[np.ndarray, np.ndarray, float]:  # noqa: ANN001
    """Single best path of chunk ``n`` (every state may start and end it).

    ``scores``: (T, N, C) float32; ``stay``: float or (T, S) float32. Returns ``states`` (T,) int32, ``moves`` (T,) uint8
    and the path's log-score (float64 sums). Ties prefer the stay, then the lowest
    predecessor, then the lowest final state. Needs T >= 1.
    """
    frames = scores.shape[0]
    num_states = scores.shape[2] // 4
    msb = num_states // 4
    # back[t, s]: -1 for a stay into s at frame t, else j of the step from (s>>2) + j*msb.
    back = np.empty((frames, num_states), np.int8)
    cur = np.zeros(num_states, np.float64)
    nxt = np.empty(num_states, np.float64)
    for t in range(frames):
        row = scores[t, n]
        if not isinstance(stay, float):
            # Each state's stayed score, staged in nxt (read, then overwritten, below): with the
            # stay loaded in the loop instead, LLVM turned its selects into branches, 6x slower.
            for s in range(num_states):
                nxt[s] = cur[s] + np.float64(stay[t, s])
        for q in range(msb):  # states q*4 + b share predecessors q + j*msb
            a0, a1, a2, a3 = cur[q], cur[q + msb], cur[q + 2 * msb], cur[q + 3 * msb]
            for b in range(4):
                s = q * 4 + b
                best = (cur[s] + stay) if isinstance(stay, float) else nxt[s]
                arg = -1
                v = a0 + np.float64(row[s * 4])
                arg = 0 if v > best else arg
                best = max(v, best)
                v = a1 + np.float64(row[s * 4 + 1])
                arg = 1 if v > best else arg
                best = max(v, best)
                v = a2 + np.float64(row[s * 4 + 2])
                arg = 2 if v > best else arg
                best = max(v, best)
                v = a3 + np.float64(row[s * 4 + 3])
                arg = 3 if v > best else arg
                best = max(v, best)
                nxt[s] = best
                back[t, s] = arg
        cur, nxt = nxt, cur
    state = 0
    for s in range(num_states):
        if cur[s] > cur[state]:
            state = s
    final = cur[state]
    states = np.empty(frames, np.int32)
    moves = np.empty(frames, np.uint8)
    for t in range(frames - 1, -1, -1):
        states[t] = state
        j = back[t, state]
        moves[t] = 0 if j < 0 else 1
        if j >= 0:
            state = (state >> 2) + j * msb
    moves[0] = 1
    return states, moves, final
