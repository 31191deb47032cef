"""CRF decoding of learned stay scores (bonito's LinearCRFEncoder without blank_score).

The references here work on bonito's own layout, written from its ``CTC_CRF``
(bonito/crf/model.py, which needs koi and a GPU to run): per frame and state
``s``, 5 columns ``5s + k``; column k comes from state ``idx[s, k]``, where k = 0
is the stay. They never go through the decoder's split into steps and stays.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgecall.errors import EdgecallError
from edgecall.runtime.backends import chunk_major
from edgecall.runtime.decode.crf import beam_search, decode_batch, viterbi
from edgecall.runtime.decode.crf_posteriors import guides, split_stays
from edgecall.runtime.decode.crf_search import beam_path, viterbi_path


def bonito_idx(state_len: int) -> np.ndarray:
    """bonito ``CTC_CRF.idx``: (S, 5) source state of each of a state's 5 columns."""
    num_states = 4**state_len
    steps = np.repeat(np.arange(num_states), 4).reshape(4, num_states).T  # arange.repeat_interleave(4).reshape(4, -1).T
    return np.concatenate([np.arange(num_states)[:, None], steps], axis=1)


def learned_scores(rng: np.random.Generator, frames: int, state_len: int, peak: float = 1.5) -> np.ndarray:
    """(frames, 5 * 4**state_len) float32, shaped like a CRF head's 5 * tanh(x)."""
    return (5.0 * np.tanh(peak * rng.standard_normal((frames, 5 * 4**state_len)))).astype(np.float32)


def with_blank_columns(scores: np.ndarray, blank: float) -> np.ndarray:
    """Fixed-blank (..., 4**(L+1)) scores with the blank put in front of each state's 4, as
    bonito's LinearCRFEncoder does with ``expand_blanks``."""
    grouped = scores.reshape(*scores.shape[:-1], -1, 4)
    blanks = np.full((*grouped.shape[:-1], 1), blank, np.float32)
    return np.concatenate([blanks, grouped], axis=-1).reshape(*scores.shape[:-1], -1)


# ---- references in bonito's layout ------------------------------------------------------------


def reference_scans(scores: np.ndarray, state_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 log-space forward/backward over (T, 5S) scores: (fwd, bwd, post), each (T+1, S)."""
    idx = bonito_idx(state_len)
    frames, num_states = scores.shape[0], 4**state_len
    ms = scores.astype(np.float64).reshape(frames, num_states, 5)
    fwd = np.zeros((frames + 1, num_states))
    bwd = np.zeros((frames + 1, num_states))
    for t in range(frames):
        fwd[t + 1] = np.logaddexp.reduce(fwd[t][idx] + ms[t], axis=1)
    for t in range(frames - 1, -1, -1):
        into = ms[t] + bwd[t + 1][:, None]  # (s, k): from idx[s, k] into s
        acc = np.full(num_states, -np.inf)
        np.logaddexp.at(acc, idx.ravel(), into.ravel())
        bwd[t] = acc
    joint = fwd + bwd
    post = np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))
    return fwd, bwd, post


def reference_viterbi_score(scores: np.ndarray, state_len: int) -> float:
    idx = bonito_idx(state_len)
    ms = scores.astype(np.float64).reshape(scores.shape[0], 4**state_len, 5)
    best = np.zeros(4**state_len)
    for t in range(scores.shape[0]):
        best = (best[idx] + ms[t]).max(axis=1)
    return float(best.max())


def all_paths(scores: np.ndarray, state_len: int):
    """Every path: yields (score, states after each frame, whether each frame stepped)."""
    idx = bonito_idx(state_len)
    num_states = 4**state_len
    edges = {a: [(s, k) for s in range(num_states) for k in range(5) if idx[s, k] == a] for a in range(num_states)}
    frames = scores.shape[0]

    def extend(t: int, state: int, score: float, states: list[int], steps: list[bool]):
        if t == frames:
            yield score, states, steps
            return
        for s, k in edges[state]:
            yield from extend(t + 1, s, score + float(scores[t, 5 * s + k]), [*states, s], [*steps, k > 0])

    for start in range(num_states):
        yield from extend(0, start, 0.0, [start], [])


def spelled(states: list[int], steps: list[bool]) -> str:
    """Frame 0 always emits (dorado's forced first move); later frames emit on a step."""
    return "".join("ACGT"[s & 3] for t, (s, step) in enumerate(zip(states[1:], steps)) if t == 0 or step)


TINY = [(1, 6, s) for s in range(4)] + [(2, 4, s) for s in range(2)]


# ---- against the references -------------------------------------------------------------------


@pytest.mark.parametrize("state_len,frames,seed", TINY)
def test_viterbi_is_the_best_single_path(state_len: int, frames: int, seed: int) -> None:
    scores = learned_scores(np.random.default_rng(400 + seed), frames, state_len)
    score, states, steps = max(all_paths(scores, state_len), key=lambda p: p[0])
    steps_, stays = split_stays(scores[:, None, :], 0)
    got_states, got_moves, got_score = viterbi_path(steps_, 0, stays)
    assert got_score == pytest.approx(score, abs=1e-4)
    assert list(got_states) == states[1:]
    assert list(got_moves[1:]) == steps[1:] and got_moves[0] == 1
    assert viterbi(scores, state_len=state_len, blank_score=None).sequence == spelled(states, steps)


@pytest.mark.parametrize("state_len,frames,seed", TINY)
def test_posteriors_match_path_enumeration(state_len: int, frames: int, seed: int) -> None:
    """post[t, s]: mass of the paths in s at boundary t; bwd[0, s]: log-sum of the paths from s."""
    scores = learned_scores(np.random.default_rng(500 + seed), frames, state_len)
    num_states = 4**state_len
    mass = np.zeros((frames + 1, num_states))
    from_start = np.zeros(num_states)
    for score, states, _ in all_paths(scores, state_len):
        weight = np.exp(score)
        mass[np.arange(frames + 1), states] += weight
        from_start[states[0]] += weight
    steps, stays = split_stays(scores[:, None, :], 0)
    bwd, post = guides(steps, 0, stays)
    np.testing.assert_allclose(post, mass / mass[0].sum(), atol=2e-6)
    np.testing.assert_allclose(bwd[0], np.log(from_start), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_unpruned_beam_finds_the_best_sequence(seed: int) -> None:
    """Wide enough to keep every hypothesis, the beam picks the sequence (start state plus step
    bases) whose alignments sum highest, with the learned stays inside those sums."""
    scores = learned_scores(np.random.default_rng(600 + seed), 5, 1, peak=0.7)
    groups: dict[tuple, float] = {}
    for score, states, steps in all_paths(scores, 1):
        key = (states[0], tuple(s & 3 for s, step in zip(states[1:], steps) if step))
        groups[key] = np.logaddexp(groups.get(key, -np.inf), score)
    (start, bases), best = max(groups.items(), key=lambda kv: kv[1])
    steps, stays = split_stays(scores[:, None, :], 0)
    bwd, _ = guides(steps, 0, stays)
    states, moves, got = beam_path(steps, 0, bwd, 4096, 1e30, stays)
    assert got == pytest.approx(best, abs=1e-4)
    later = [int(states[t]) & 3 for t in range(1, len(states)) if moves[t]]
    # frame 0's own action is hidden by the forced move: a stay on the start state or a step to bases[0]
    assert (states[0] == start and later == list(bases)) or (
        bool(bases) and states[0] == (((start << 2) & 3) | bases[0]) and later == list(bases[1:])
    )


@pytest.mark.parametrize("state_len", [3, 4])
def test_scans_and_viterbi_match_the_bonito_layout_reference(state_len: int) -> None:
    """state_len 3-4 take the 16 x 16 block layout path (and, at 4, rows of 1280 columns)."""
    scores = learned_scores(np.random.default_rng(state_len), 40, state_len)
    steps, stays = split_stays(scores[:, None, :], 0)
    bwd, post = guides(steps, 0, stays)
    _, ref_bwd, ref_post = reference_scans(scores, state_len)
    np.testing.assert_allclose(post, ref_post, atol=2e-6)
    np.testing.assert_allclose(bwd, ref_bwd, rtol=1e-6, atol=1e-4)
    assert viterbi_path(steps, 0, stays)[2] == pytest.approx(reference_viterbi_score(scores, state_len), abs=1e-4)


def test_posteriors_survive_extreme_stays() -> None:
    """Stays far above every step, a step far above every stay (the rescaling fallback),
    impossible stays (-inf) and a frame where nothing is likely."""
    scores = learned_scores(np.random.default_rng(8), 30, 2)
    grouped = scores.reshape(30, 16, 5)
    grouped[2, :, 0] = 150.0
    grouped[5, 3, 2] = 300.0
    grouped[9, :, 0] = -np.inf
    grouped[14] = -1e4
    steps, stays = split_stays(scores[:, None, :], 0)
    bwd, post = guides(steps, 0, stays)
    _, ref_bwd, ref_post = reference_scans(scores, 2)
    assert np.isfinite(bwd).all() and np.isfinite(post).all()
    np.testing.assert_allclose(post, ref_post, atol=2e-6)
    # Frame 5 is scaled by its 300: what sits 87 nats below that weighs 0 there (as with a fixed
    # blank), so the states that cannot take that step get the look-ahead's floor before it.
    near = [4, 5]
    np.testing.assert_allclose(np.delete(bwd, near, 0), np.delete(ref_bwd, near, 0), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(bwd[near].max(axis=1), ref_bwd[near].max(axis=1), rtol=1e-6)


# ---- learned stays that are all the same number decode as that fixed blank -------------------


def calls(chunks: list) -> list[tuple[str, str, bytes]]:
    return [(c.sequence, c.qstring, c.moves.tobytes()) for c in chunks]


@pytest.mark.parametrize("blank", [2.0, -1.5])
@pytest.mark.parametrize("mode", ["beam", "viterbi"])
def test_constant_learned_stays_decode_as_the_fixed_blank(blank: float, mode: str) -> None:
    rng = np.random.default_rng(21)
    fixed = (5.0 * np.tanh(1.5 * rng.standard_normal((300, 4, 256)))).astype(np.float32)
    learned = with_blank_columns(fixed, blank)
    options = dict(mode=mode, state_len=3, qscale=0.9, qbias=0.5)
    want = calls(decode_batch(fixed, blank_score=blank, **options))
    assert calls(decode_batch(learned, blank_score=None, **options)) == want
    steps, stays = split_stays(learned, 1)
    for got, then in zip(guides(steps, 0, stays), guides(fixed, 1, blank)):
        assert np.array_equal(got, then)


def test_constant_learned_stays_pass_the_openfish_vector(shared_data) -> None:  # noqa: ANN001 - a Path
    """openfish's conformance vector (fixed blank 2.0), given as learned stays of 2.0."""
    folder = shared_data / "decode" / "openfish"
    scores = with_blank_columns(np.fromfile(folder / "scores.blob", np.float32).reshape(1666, 1, 256), 2.0)
    call = beam_search(scores[:, 0], state_len=3, blank_score=None, qscale=0.97, qbias=-1.8)
    assert call.moves.tobytes() == (folder / "moves.blob").read_bytes()
    assert call.sequence.encode().ljust(1666, b"\0") == (folder / "sequence.blob").read_bytes()
    assert call.qstring.encode().ljust(1666, b"\0") == (folder / "qstring.blob").read_bytes()


@pytest.mark.parametrize("mode", ["beam", "viterbi"])
def test_decode_batch_equals_one_chunk_at_a_time(mode: str) -> None:
    """Threads, a shared pool, the OpenVINO backend's chunk-major copy and a sliced batch."""
    rng = np.random.default_rng(12)
    batch = np.stack([learned_scores(rng, 120, 3) for _ in range(5)], axis=1)
    one = beam_search if mode == "beam" else viterbi
    want = calls([one(batch[:, n], state_len=3, blank_score=None, qbias=0.5) for n in range(5)])
    options = dict(mode=mode, state_len=3, blank_score=None, qbias=0.5)
    assert calls(decode_batch(batch, threads=3, **options)) == want
    with ThreadPoolExecutor(2) as pool:
        assert calls(decode_batch(batch, pool=pool, **options)) == want
    for layout, first in ((chunk_major(batch), 0), (chunk_major(batch)[:, :3], 0), (batch[:, 1:4], 1)):
        assert calls(decode_batch(layout, **options)) == want[first : first + layout.shape[1]]
    assert [c.sequence for c in decode_batch(np.zeros((0, 2, 320), np.float32), **options)] == ["", ""]


# ---- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width,blank,message",
    [
        (1024, 2.0, "CRF scores for state_len 3 need 256 channels (4^4, fixed blank score) "
                    "or 320 (5 x 4^3, learned stay scores), got shape (10, 1, 1024)"),
        (1024, None, "CRF scores for state_len 3 need 256 channels (4^4, fixed blank score) "
                     "or 320 (5 x 4^3, learned stay scores), got shape (10, 1, 1024)"),
        (256, None, "CRF scores have 256 channels, state_len 3 with a fixed blank score, "
                    "but no blank_score was given (learned stay scores would be 320 channels)"),
        (320, 2.0, "CRF scores have 320 channels, state_len 3 with learned stay scores, "
                   "but a fixed blank_score 2.0 was given (that needs 256 channels)"),
    ],
)
def test_a_width_that_fits_no_layout_is_one_clear_line(width: int, blank: float | None, message: str) -> None:
    scores = np.zeros((10, 1, width), np.float32)
    for decode in (
        lambda: decode_batch(scores, state_len=3, blank_score=blank),
        lambda: beam_search(scores[:, 0], state_len=3, blank_score=blank),
        lambda: viterbi(scores[:, 0], state_len=3, blank_score=blank),
    ):
        with pytest.raises(EdgecallError) as caught:
            decode()
        assert str(caught.value) == message


def test_split_stays_follows_bonito_columns() -> None:
    """Column 5s is the stay of s; 5s + 1 + j the step from idx[s, 1 + j] = (s >> 2) + j * 4**(L-1)."""
    scores = np.arange(2 * 3 * 80, dtype=np.float32).reshape(2, 3, 80)  # state_len 2
    steps, stays = split_stays(scores, 1)
    assert steps.shape == (2, 1, 64) and stays.shape == (2, 16)
    idx = bonito_idx(2)
    for s in range(16):
        assert stays[1, s] == scores[1, 1, 5 * s]
        for j in range(4):
            assert idx[s, 1 + j] == (s >> 2) + j * 4
            assert steps[1, 0, 4 * s + j] == scores[1, 1, 5 * s + 1 + j]
