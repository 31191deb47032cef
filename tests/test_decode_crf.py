"""CRF decoder: openfish conformance, exhaustive references on tiny cases, invariants."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgecall.errors import EdgecallError
from edgecall.runtime.backends import chunk_major
from edgecall.runtime.decode.crf import beam_search, decode_batch, mean_qscore, viterbi
from edgecall.runtime.decode.crf_posteriors import _EXP_CEIL_BITS, _exp_row, _make_exp_transpose, guides
from edgecall.runtime.decode.crf_search import beam_path, viterbi_path

def crf_scores(rng: np.random.Generator, frames: int, state_len: int, peak: float = 1.5) -> np.ndarray:
    """(frames, 4**(state_len+1)) float32 scores shaped like a CRF head's: 5 * tanh(x)."""
    return (5.0 * np.tanh(peak * rng.standard_normal((frames, 4 ** (state_len + 1))))).astype(np.float32)


# ---- references: written from the layout definition, not from the decoder --------------------


def transitions(state_len: int) -> list[tuple[int, int, int]]:
    """(from, to, score index) of every step: into s from (s >> 2) + j * 4**(L-1), index s*4 + j."""
    num_states = 4**state_len
    return [((s >> 2) + j * num_states // 4, s, s * 4 + j) for s in range(num_states) for j in range(4)]


def frame_matrices(scores: np.ndarray, state_len: int, blank: float) -> np.ndarray:
    """(T, S, S) float64 log-weight of moving from state a to state b in each frame."""
    num_states = 4**state_len
    m = np.full((scores.shape[0], num_states, num_states), -np.inf)
    m[:, np.arange(num_states), np.arange(num_states)] = blank
    for a, b, idx in transitions(state_len):
        m[:, a, b] = np.logaddexp(m[:, a, b], scores[:, idx].astype(np.float64))
    return m


def reference_scans(scores: np.ndarray, state_len: int, blank: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Log-space forward/backward in float64: (bwd, post), each (T+1, S)."""
    m = frame_matrices(scores, state_len, blank)
    frames, num_states = scores.shape[0], 4**state_len
    fwd = np.zeros((frames + 1, num_states))
    bwd = np.zeros((frames + 1, num_states))
    for t in range(frames):
        fwd[t + 1] = np.logaddexp.reduce(fwd[t][:, None] + m[t], axis=0)
    for t in range(frames - 1, -1, -1):
        bwd[t] = np.logaddexp.reduce(m[t] + bwd[t + 1][None, :], axis=1)
    joint = fwd + bwd
    post = np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))
    return bwd, post


def all_paths(scores: np.ndarray, state_len: int, blank: float = 2.0):
    """Every (start state, per-frame action) path: yields (score, states, steps).

    ``steps[t]`` is the new base of a step at frame t, or None for a stay.
    """
    num_states = 4**state_len
    mask = num_states - 1
    for start in range(num_states):
        for actions in itertools.product((None, 0, 1, 2, 3), repeat=scores.shape[0]):
            state, score, states = start, 0.0, []
            for t, base in enumerate(actions):
                if base is None:
                    score += blank
                else:
                    new = ((state << 2) & mask) | base
                    score += float(scores[t, new * 4 + (state >> (2 * state_len - 2))])
                    state = new
                states.append(state)
            yield score, start, states, actions


def spelled(states: list[int], steps: list[bool]) -> str:
    """The call dorado makes from a path: frame 0 always emits, later frames emit on a step."""
    return "".join("ACGT"[s & 3] for t, (s, step) in enumerate(zip(states, steps)) if t == 0 or step)


# ---- conformance ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openfish_vector(shared_data: Path) -> dict[str, bytes | np.ndarray]:
    """openfish's test vector: scores float32 [T=1666][N=1][C=256] (state_len 3, q 0.97/-1.8)."""
    folder = shared_data / "decode" / "openfish"
    vector: dict[str, bytes | np.ndarray] = {
        name: (folder / f"{name}.blob").read_bytes() for name in ("moves", "sequence", "qstring")
    }
    vector["scores"] = np.fromfile(folder / "scores.blob", np.float32).reshape(1666, 1, 256)
    return vector


def test_openfish_vector_byte_exact(openfish_vector: dict) -> None:
    """openfish writes N*T bytes per output: moves, then sequence/qstring NUL-padded to T."""
    scores = openfish_vector["scores"]
    frames = scores.shape[0]
    for call in (
        beam_search(scores[:, 0], state_len=3, qscale=0.97, qbias=-1.8),
        decode_batch(scores, state_len=3, qscale=0.97, qbias=-1.8)[0],
    ):
        assert call.moves.tobytes() == openfish_vector["moves"]
        assert call.sequence.encode().ljust(frames, b"\0") == openfish_vector["sequence"]
        assert call.qstring.encode().ljust(frames, b"\0") == openfish_vector["qstring"]


# ---- forward/backward -------------------------------------------------------------------------


@pytest.mark.parametrize("state_len", [1, 2, 3, 4])
def test_scans_match_log_space_reference(state_len: int) -> None:
    """state_len 1-2 lay out their weights by the scalar loop, 3-4 by 16 x 16 blocks (one, four)."""
    scores = crf_scores(np.random.default_rng(state_len), 40, state_len)
    bwd, post = guides(scores[:, None, :], 0, 2.0)
    ref_bwd, ref_post = reference_scans(scores, state_len)
    np.testing.assert_allclose(post, ref_post, atol=2e-6)
    np.testing.assert_allclose(bwd, ref_bwd, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-5)


def test_posteriors_survive_extreme_scores() -> None:
    """Scores far above blank take the rescaling fallback; -inf and -1e4 are impossible steps."""
    scores = crf_scores(np.random.default_rng(7), 30, 2)
    scores[3, 5] = 300.0
    scores[10, :] = -1e4
    scores[12, 7] = -np.inf
    bwd, post = guides(scores[:, None, :], 0, 2.0)
    ref_bwd, ref_post = reference_scans(scores, 2)
    assert np.isfinite(bwd).all() and np.isfinite(post).all()
    np.testing.assert_allclose(post, ref_post, atol=2e-6)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-5)


# ---- path searches against exhaustive enumeration --------------------------------------------


@pytest.mark.parametrize("state_len,frames,seed", [(1, 5, s) for s in range(6)] + [(2, 4, s) for s in range(3)])
def test_viterbi_is_the_best_single_path(state_len: int, frames: int, seed: int) -> None:
    scores = crf_scores(np.random.default_rng(100 + seed), frames, state_len)
    score, _, states, actions = max(all_paths(scores, state_len), key=lambda p: p[0])
    steps = [a is not None for a in actions]
    states_v, moves_v, score_v = viterbi_path(scores[:, None, :], 0, 2.0)
    assert score_v == pytest.approx(score, abs=1e-4)
    assert list(states_v) == states
    assert list(moves_v[1:]) == steps[1:] and moves_v[0] == 1
    assert viterbi(scores, state_len=state_len).sequence == spelled(states, steps)


def best_sequence(scores: np.ndarray, state_len: int) -> tuple[int, tuple[int, ...], float]:
    """Exhaustively: the start state and step bases whose paths have the largest summed score."""
    groups: dict[tuple, float] = {}
    for score, start, _, actions in all_paths(scores, state_len):
        key = (start, tuple(a for a in actions if a is not None))
        groups[key] = np.logaddexp(groups.get(key, -np.inf), score)
    (start, bases), best = max(groups.items(), key=lambda kv: kv[1])
    return start, bases, best


def spells(states: np.ndarray, moves: np.ndarray, start: int, bases: tuple[int, ...], state_len: int) -> bool:
    """Does the beam's traceback spell start + bases? (Frame 0's real action is hidden by its
    forced move, so accept either a stay on the start state or a step to bases[0].)"""
    later = [int(states[t]) & 3 for t in range(1, len(states)) if moves[t]]
    if states[0] == start and later == list(bases):
        return True
    first = ((start << 2) & (4**state_len - 1)) | bases[0] if bases else -1
    return bool(bases) and states[0] == first and later == list(bases[1:])


@pytest.mark.parametrize("state_len,frames,seed", [(1, 5, s) for s in range(6)] + [(2, 3, s) for s in range(3)])
def test_unpruned_beam_finds_the_best_sequence(state_len: int, frames: int, seed: int) -> None:
    """The beam sums the alignments (stays vs steps) of a sequence. Wide enough to keep every
    hypothesis, its pick and score are the exhaustive best over start state + step bases."""
    scores = crf_scores(np.random.default_rng(200 + seed), frames, state_len, peak=0.7)
    start, bases, best = best_sequence(scores, state_len)
    bwd, _ = guides(scores[:, None, :], 0, 2.0)
    states, moves, score = beam_path(scores[:, None, :], 0, bwd, 4096, 1e30, 2.0)
    assert score == pytest.approx(best, abs=1e-4)
    assert spells(states, moves, start, bases, state_len)


@pytest.mark.parametrize("seed", range(6))
def test_default_beam_finds_the_best_sequence(seed: int) -> None:
    """With dorado's settings (width 32, cut 100) the pruned beam still picks the exhaustive best."""
    scores = crf_scores(np.random.default_rng(300 + seed), 6, 1)
    start, bases, best = best_sequence(scores, 1)
    bwd, _ = guides(scores[:, None, :], 0, 2.0)
    states, moves, score = beam_path(scores[:, None, :], 0, bwd, 32, 100.0, 2.0)
    assert spells(states, moves, start, bases, 1)
    assert score == pytest.approx(best, abs=1e-2)  # pruned alignments may cost a little mass


@pytest.mark.parametrize("ahead", [1, 2, 7])
def test_beam_prefetch_changes_no_result(ahead: int) -> None:
    """Prefetching rows ahead (into the chunk's last frames too) is only a hint: the same
    path and score as without it, on a chunk of a wider batch."""
    rng = np.random.default_rng(17)
    batch = np.stack([crf_scores(rng, 60, 3, peak=0.5) for _ in range(3)], axis=1)
    bwd, _ = guides(batch, 1, 2.0)
    plain = beam_path(batch, 1, bwd, 16, 100.0, 2.0, 0)
    fetched = beam_path(batch, 1, bwd, 16, 100.0, 2.0, ahead)
    assert np.array_equal(plain[0], fetched[0]) and np.array_equal(plain[1], fetched[1])
    assert plain[2] == fetched[2]


def test_beam_and_viterbi_agree_on_a_confident_chunk() -> None:
    """One dominant path: both searches must find it."""
    rng = np.random.default_rng(3)
    state_len, frames = 3, 200
    scores = np.full((frames, 4 ** (state_len + 1)), -4.0, np.float32)
    state = 0
    for t in range(frames):
        if rng.random() < 0.4:
            new = ((state << 2) & 63) | int(rng.integers(4))
            scores[t, new * 4 + (state >> 4)] = 5.0
            state = new
    a, b = beam_search(scores, state_len=state_len), viterbi(scores, state_len=state_len)
    assert a.sequence == b.sequence and (a.moves == b.moves).all()


# ---- batch and invariants ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["beam", "viterbi"])
def test_decode_batch_equals_one_chunk_at_a_time(mode: str) -> None:
    rng = np.random.default_rng(11)
    batch = np.stack([crf_scores(rng, 120, 3) for _ in range(5)], axis=1)  # (T, N, C)
    one = beam_search if mode == "beam" else viterbi
    expected = [one(batch[:, n], state_len=3, qscale=0.9, qbias=0.5) for n in range(batch.shape[1])]
    want = [(c.sequence, c.qstring, c.moves.tobytes()) for c in expected]
    for threads in (1, 3):
        got = decode_batch(batch, mode=mode, threads=threads, state_len=3, qscale=0.9, qbias=0.5)
        assert [(c.sequence, c.qstring, c.moves.tobytes()) for c in got] == want
    with ThreadPoolExecutor(2) as pool:  # one pool over several batches, as the pipeline decodes
        for _ in range(2):
            got = decode_batch(batch, mode=mode, state_len=3, qscale=0.9, qbias=0.5, pool=pool)
            assert [(c.sequence, c.qstring, c.moves.tobytes()) for c in got] == want
    # the OpenVINO backend's chunk-major copy, whole and sliced as the pipeline slices a part-filled batch
    for layout, first in ((chunk_major(batch), 0), (chunk_major(batch)[:, :3], 0), (batch[:, 1:4], 1)):
        got = decode_batch(layout, mode=mode, state_len=3, qscale=0.9, qbias=0.5)
        assert [(c.sequence, c.qstring, c.moves.tobytes()) for c in got] == want[first : first + layout.shape[1]]


@pytest.mark.parametrize("width", [8, 16])
def test_exponentials_in_scan_order_at_either_vector_width(width: int) -> None:
    """Both widths the decoder picks by CPU (8 on AVX2/NEON, 16 on AVX-512) give ``_exp_row``'s exponentials bit
    for bit, moved to scan order (score 16q + k of a frame to k * (C/16) + q), and its overflow test's bits."""
    from numba import njit

    exp_transpose = _make_exp_transpose(width)

    @njit
    def scan_order(row: np.ndarray, shift: np.float32, out: np.ndarray, msb: int) -> int:
        top = np.int32(-2147483647)
        for q in range(0, msb, width):
            top = max(top, exp_transpose(row, 16 * q, shift, out, q, msb))
        return top

    row = np.random.default_rng(5).uniform(-100.0, 100.0, 1024).astype(np.float32)  # below the floor, above the ceiling
    row[[3, 77, 500]] = np.nan, -np.inf, 2.0
    shift = np.float32(2.0)
    want = np.empty(1024, np.float32)
    overflows = _exp_row(row, shift, want)
    out = np.full(1024, -1.0, np.float32)
    top = scan_order(row, shift, out, 64)
    assert np.array_equal(out, want.reshape(64, 16).T.reshape(-1))  # out[k * 64 + q] = exp(row[16 q + k] - 2)
    assert out[4 * 64 + 31] == 1.0 and out[3 * 64] == 0.0 and out[13 * 64 + 4] == 0.0  # exp(0); NaN and -inf weigh 0
    assert top == (row - shift).view(np.int32).max() and overflows and top > _EXP_CEIL_BITS
    calm = np.clip(np.nan_to_num(row), -50.0, 50.0)
    assert scan_order(calm, shift, out, 64) <= _EXP_CEIL_BITS and not _exp_row(calm, shift, want)


def test_chunk_major_keeps_values_and_lays_chunks_out_whole() -> None:
    batch = crf_scores(np.random.default_rng(2), 6 * 4, 1).reshape(6, 4, 16)
    major = chunk_major(batch)
    assert major.shape == batch.shape and np.array_equal(major, batch)
    assert all(major[:, n].flags.c_contiguous for n in range(4))


@pytest.mark.parametrize("state_len", [1, 3, 4])
def test_moves_sequence_and_qualities_line_up(state_len: int) -> None:
    scores = crf_scores(np.random.default_rng(state_len), 300, state_len)
    for call in (beam_search(scores, state_len=state_len), viterbi(scores, state_len=state_len)):
        assert call.moves.dtype == np.uint8 and call.moves.shape == (300,)
        assert int(call.moves.sum()) == len(call.sequence) == len(call.qstring) > 0
        assert set(call.sequence) <= set("ACGT")
        assert all(34 <= ord(c) <= 83 for c in call.qstring)  # Q clamped to [1, 50]


def test_all_stay_input_calls_at_most_the_forced_first_base() -> None:
    """Dorado forces a move on frame 0, so a chunk that never steps still emits one base."""
    scores = np.full((50, 256), -1e4, np.float32)
    for call in (beam_search(scores, state_len=3), viterbi(scores, state_len=3)):
        assert len(call.sequence) == len(call.qstring) == int(call.moves.sum()) == 1
        assert call.moves[1:].sum() == 0


def test_zero_frames() -> None:
    empty = np.zeros((0, 256), np.float32)
    for call in (beam_search(empty, state_len=3), viterbi(empty, state_len=3)):
        assert call.moves.shape == (0,) and call.sequence == "" and call.qstring == ""
    assert [c.sequence for c in decode_batch(np.zeros((0, 2, 256), np.float32), state_len=3)] == ["", ""]


def test_bad_shapes_and_options_are_reported() -> None:
    with pytest.raises(EdgecallError, match="state_len 3"):
        beam_search(np.zeros((10, 1024), np.float32), state_len=3)
    with pytest.raises(EdgecallError, match="unknown CRF decode mode"):
        decode_batch(np.zeros((10, 1, 256), np.float32), mode="greedy", state_len=3)
    with pytest.raises(EdgecallError, match="beam width"):
        beam_search(np.zeros((10, 256), np.float32), state_len=3, beam_width=0)


# ---- mean Q -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "skip,expected",
    [(0, 8.79143), (2, 14.0), (10, 8.79143), (1000, 8.79143)],  # dorado's test_read.cpp values
)
def test_mean_qscore_matches_dorado(skip: int, expected: float) -> None:
    assert mean_qscore("$$////////", skip=skip) == pytest.approx(expected, abs=1e-4)


def test_mean_qscore_averages_error_probabilities() -> None:
    assert mean_qscore("") == 0.0
    assert mean_qscore("+" * 10 + "I" * 10, skip=0) == pytest.approx(-10 * np.log10((0.1 + 1e-4) / 2), abs=1e-4)
