"""CRF decoding: transition scores to bases, per-base qualities and a move table.

The network gives, per frame, ``4**(state_len+1)`` transition scores with a fixed
stay ("blank") score, or ``5 * 4**state_len`` scores whose stays are learned
(``blank_score=None``; layouts in ``crf_posteriors``). Decoding one chunk is: forward/backward to get the beam's
look-ahead and the state posteriors, a path search (dorado's beam search, or
Viterbi), then dorado's quality rule on the path. Every step is numba, compiled
once and cached on disk, and releases the GIL, so ``decode_batch`` spreads
chunks over threads.

Matches openfish's CPU decoder byte for byte on its conformance vector
(``shared/data/decode/openfish``; see ``tests/test_decode_crf.py``).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np
from numba import njit

from edgecall.errors import EdgecallError
from edgecall.runtime.decode.crf_posteriors import guides, split_stays, thread_workspace
from edgecall.runtime.decode.crf_search import beam_path, viterbi_path
from edgecall.runtime.read import DecodedChunk

MODES = ("beam", "viterbi")
_ALPHABET = np.frombuffer(b"ACGT", np.uint8)
_POWER = np.float32(0.4)  # dorado's "power fudge factor" on the path-state probability
_THIRD = np.float32(3.0)
_MINUS_TEN = np.float32(-10.0)
_Q_MIN = np.float32(1.0)
_Q_MAX = np.float32(50.0)
_PHRED_OFFSET = np.float32(33.5)  # '!' plus 0.5 so the cast to char rounds


@njit(cache=True, nogil=True, error_model="numpy")
def _frame_probs(states: np.ndarray, post: np.ndarray) -> np.ndarray:
    """(T,) float32: posterior mass of each frame's path state and its shifted neighbours.

    ``states`` (T,) int32 path states, ``post`` (T+1, S) float32. The neighbours are
    the k-mers one base behind or ahead of the path's, so a base called right but
    a frame early or late still counts; each distinct state counts once. Clamped to
    [0, 1], then ** 0.4 (dorado's rule, tuned on real reads).
    """
    frames = states.shape[0]
    num_states = post.shape[1]
    msb = num_states >> 2
    probs = np.empty(frames, np.float32)
    shifted = np.empty(8, np.int64)
    for t in range(frames):
        state = states[t]
        row = t + 1  # posterior at the boundary after frame t
        p = post[row, state]
        for b in range(4):
            shifted[2 * b] = (state >> 2) + msb * b
            shifted[2 * b + 1] = ((state << 2) % num_states) + b
        for i in range(8):
            cand = shifted[i]
            if cand == state:
                continue
            seen = False
            for k in range(i):
                if shifted[k] == cand:
                    seen = True
                    break
            if not seen:
                p += post[row, cand]
        p = min(max(p, np.float32(0.0)), np.float32(1.0))
        probs[t] = p**_POWER
    return probs


@njit(cache=True, nogil=True, error_model="numpy")
def _bases_and_quals(
    states: np.ndarray, moves: np.ndarray, probs: np.ndarray, qscale: float, qbias: float
) -> tuple[np.ndarray, np.ndarray]:
    """ASCII bases and phred+33 qualities, (moves.sum(),) uint8 each.

    A base's quality averages the frame probabilities of the frame that emitted it
    and the stays after it; the arithmetic follows dorado's ``generate_sequence``
    in float32 (including its "wrong base" mass) so the characters match exactly.
    """
    frames = states.shape[0]
    length = 0
    for t in range(frames):
        length += moves[t]
    base_probs = np.zeros(length, np.float32)
    total_probs = np.zeros(length, np.float32)
    seq = np.empty(length, np.uint8)
    qual = np.empty(length, np.uint8)
    pos = 0
    for t in range(frames):
        base = states[t] & 3
        at = pos if t == 0 else pos + moves[t] - 1
        p = probs[t]
        wrong = (np.float32(1.0) - p) / _THIRD
        base_probs[at] += p
        for k in range(4):
            total_probs[at] += p if k == base else wrong
        if t == 0 or moves[t]:
            seq[pos] = _ALPHABET[base]
            pos += 1
    scale = np.float32(qscale)
    bias = np.float32(qbias)
    for i in range(length):
        err = np.float32(1.0) - base_probs[i] / total_probs[i]
        q = _MINUS_TEN * np.log10(err) * scale + bias
        q = min(max(q, _Q_MIN), _Q_MAX)
        qual[i] = np.uint8(np.int32(_PHRED_OFFSET + q))
    return seq, qual


def _decode_chunk(
    scores: np.ndarray, n: int, beam: bool, beam_width: int, beam_cut: float, blank: float | None,
    qscale: float, qbias: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunk ``n`` of (T, N, C) float32 ``scores`` to (moves, bases, quals), all uint8.

    ``blank`` None: the scores carry learned stays, split off here. Plain Python
    on purpose: numba's disk cache does not notice edits to njit functions in
    other modules, so no cached function here calls across files. Each call
    below releases the GIL for all but a few microseconds.
    """
    if scores.shape[0] == 0:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    space = thread_workspace()
    stay: float | np.ndarray
    if blank is None:
        (scores, stay), n = split_stays(scores, n, space), 0
    else:
        stay = blank
    bwd, post = guides(scores, n, stay, space)
    if beam:
        states, moves, _ = beam_path(scores, n, bwd, beam_width, beam_cut, stay)
    else:
        states, moves, _ = viterbi_path(scores, n, stay)
    seq, qual = _bases_and_quals(states, moves, _frame_probs(states, post), qscale, qbias)
    return moves, seq, qual


def _as_batch(scores: np.ndarray, state_len: int, blank_score: float | None) -> np.ndarray:
    """Check shape against ``state_len`` and the stay kind; return (T, N, C) float32 whose chunks numba can take.

    Either C-contiguous, or chunk-major (each chunk's (T, C) block contiguous, as
    ``backends.chunk_major`` lays them out), which is kept: a chunk read as one
    block decodes faster than one whose rows sit N*C apart.
    """
    if state_len < 1:
        raise EdgecallError(f"CRF state_len must be at least 1, got {state_len}")
    fixed, learned = 4 ** (state_len + 1), 5 * 4**state_len
    if scores.ndim != 3:
        raise EdgecallError(f"CRF scores must be (frames, chunks, channels), got shape {scores.shape}")
    width = scores.shape[2]
    if width not in (fixed, learned):
        raise EdgecallError(
            f"CRF scores for state_len {state_len} need {fixed} channels (4^{state_len + 1}, fixed blank score) "
            f"or {learned} (5 x 4^{state_len}, learned stay scores), got shape {scores.shape}"
        )
    if blank_score is None and width == fixed:
        raise EdgecallError(
            f"CRF scores have {fixed} channels, state_len {state_len} with a fixed blank score, "
            f"but no blank_score was given (learned stay scores would be {learned} channels)"
        )
    if blank_score is not None and width == learned:
        raise EdgecallError(
            f"CRF scores have {learned} channels, state_len {state_len} with learned stay scores, "
            f"but a fixed blank_score {blank_score} was given (that needs {fixed} channels)"
        )
    batch = np.asarray(scores, dtype=np.float32)
    return batch if batch.flags.c_contiguous or _chunk_major(batch) else np.ascontiguousarray(batch)


def _chunk_major(batch: np.ndarray) -> bool:
    item = batch.itemsize
    return batch.strides[2] == item and (batch.shape[0] == 1 or batch.strides[0] == batch.shape[2] * item)


def _one_chunk(batch: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """(C-contiguous (T, N', C) array, index) of chunk ``n`` of an ``_as_batch`` result."""
    view = batch[:, n : n + 1]
    return (view, 0) if view.flags.c_contiguous else (batch, n)


def _check_search(beam_width: int, beam_cut: float) -> None:
    if beam_width < 1:
        raise EdgecallError(f"beam width must be at least 1, got {beam_width}")
    if 0.0 < beam_cut < 1.0:
        raise EdgecallError(f"beam cut must be >= 1 (or <= 0 for no cut), got {beam_cut}")


def _chunk(moves: np.ndarray, seq: np.ndarray, qual: np.ndarray) -> DecodedChunk:
    return DecodedChunk(moves=moves, sequence=seq.tobytes().decode("ascii"), qstring=qual.tobytes().decode("ascii"))


def _blank(blank_score: float | None) -> float | None:
    return None if blank_score is None else float(blank_score)


def _decode_one(
    scores: np.ndarray, state_len: int, beam: bool, beam_width: int, beam_cut: float, blank_score: float | None,
    qscale: float, qbias: float,
) -> DecodedChunk:
    if scores.ndim != 2:
        raise EdgecallError(f"CRF scores for one chunk must be (frames, channels), got {scores.shape}")
    batch = _as_batch(scores[:, None, :], state_len, blank_score)
    return _chunk(*_decode_chunk(
        *_one_chunk(batch, 0), beam, beam_width, beam_cut, _blank(blank_score), float(qscale), float(qbias)
    ))


def beam_search(
    scores: np.ndarray,
    *,
    state_len: int,
    beam_width: int = 32,
    beam_cut: float = 100.0,
    blank_score: float | None = 2.0,
    qscale: float = 1.0,
    qbias: float = 0.0,
) -> DecodedChunk:
    """Decode one chunk, ``scores`` (frames, C) float32, by dorado's beam search.

    C is 4**(state_len+1) with a fixed stay score ``blank_score``, or 5 * 4**state_len
    with ``blank_score=None``: each state's learned stay score, then its four
    steps (bonito's layout). ``beam_cut`` is a likelihood ratio: candidates
    scoring below best/beam_cut are dropped (<= 0 disables the cut). Qualities:
    Q = qscale * raw Q + qbias.
    """
    _check_search(beam_width, beam_cut)
    return _decode_one(scores, state_len, True, int(beam_width), float(beam_cut), blank_score, qscale, qbias)


def viterbi(
    scores: np.ndarray, *, state_len: int, blank_score: float | None = 2.0, qscale: float = 1.0, qbias: float = 0.0
) -> DecodedChunk:
    """Decode one chunk along its single best path; scores and qualities as for ``beam_search``."""
    return _decode_one(scores, state_len, False, 1, 0.0, blank_score, qscale, qbias)


def decode_batch(
    scores: np.ndarray,
    *,
    mode: str = "beam",
    threads: int | None = None,
    state_len: int,
    beam_width: int = 32,
    beam_cut: float = 100.0,
    blank_score: float | None = 2.0,
    qscale: float = 1.0,
    qbias: float = 0.0,
    cpu_seconds: list[float] | None = None,
    pool: Executor | None = None,
) -> list[DecodedChunk]:
    """Decode every chunk of ``scores`` (frames, N, C) float32, as the network emits them.

    C and ``blank_score`` as for ``beam_search`` (None: learned stay scores).

    ``mode`` is "beam" or "viterbi" (which ignores the beam options). Chunks run in
    parallel on at most ``threads`` threads (default: all CPUs). Results come in
    chunk order and equal decoding each chunk alone. ``cpu_seconds``, if given,
    gets each chunk's thread CPU time appended (wall time overstates it when
    decoding shares the cores with inference). A caller decoding many batches
    should pass one ``pool`` for all of them (``threads`` then does not apply): a
    thread keeps its scratch buffers, and fresh threads per batch would fault in
    new ones, which costs more than the scans (``Workspace``).
    """
    if mode not in MODES:
        raise EdgecallError(f"unknown CRF decode mode '{mode}' (known: {', '.join(MODES)})")
    beam = mode == "beam"
    if beam:
        _check_search(beam_width, beam_cut)
    batch = _as_batch(scores, state_len, blank_score)
    args = (
        beam, int(beam_width) if beam else 1, float(beam_cut) if beam else 0.0,
        _blank(blank_score), float(qscale), float(qbias),
    )

    def one(n: int) -> DecodedChunk:
        start = time.thread_time()
        decoded = _chunk(*_decode_chunk(*_one_chunk(batch, n), *args))
        if cpu_seconds is not None:
            cpu_seconds.append(time.thread_time() - start)
        return decoded

    count = batch.shape[1]
    if pool is not None:
        return list(pool.map(one, range(count)))
    workers = max(1, min(threads or os.cpu_count() or 1, count))
    if workers == 1:
        return [one(n) for n in range(count)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crf-decode") as own:
        return list(own.map(one, range(count)))


# phred -> error probability, as dorado's float32 lookup table
_ERROR_OF_CHAR = np.zeros(256, np.float32)
_ERROR_OF_CHAR[33:128] = np.power(np.float32(10.0), -np.arange(95, dtype=np.float32) / np.float32(10.0))


def mean_qscore(qstring: str, skip: int = 60) -> float:
    """A read's mean Q as dorado writes it in ``qs:f``.

    Averages error probabilities, not Q values, then converts back, clamped to
    [1, 50]. The first ``skip`` bases are left out unless the read is no longer
    than ``skip``, in which case the whole read counts; an empty read gives 0.
    """
    if not qstring:
        return 0.0
    if len(qstring) > skip:
        qstring = qstring[skip:]
    chars = np.frombuffer(qstring.encode("ascii"), np.uint8)
    total = np.cumsum(_ERROR_OF_CHAR[chars], dtype=np.float32)[-1]  # sequential float32 sum
    mean_error = total / np.float32(len(chars))
    q = np.float32(-10.0) * np.log10(mean_error)
    return float(np.clip(q, np.float32(1.0), np.float32(50.0)))
