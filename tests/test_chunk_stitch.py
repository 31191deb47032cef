"""Chunking covers every sample once; stitching chunks gives back the read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecall.runtime.chunk import cut, plan_chunks
from edgecall.runtime.read import DecodedChunk
from edgecall.runtime.stitch import stitch_decoded, stitch_scores


def _positions(length: int, chunksize: int, overlap: int, stride: int) -> np.ndarray:
    """Sample position of every kept frame, after stitching per-chunk frame positions."""
    plan = plan_chunks(length, chunksize, overlap, stride)
    frames = chunksize // stride
    per_chunk = [start + stride * np.arange(frames)[:, None] for start in plan.starts]
    return stitch_scores(per_chunk, plan)[:, 0]


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 60_000), stride=st.sampled_from([3, 5, 6]), chunk_frames=st.integers(20, 900), overlap_frames=st.integers(0, 19))
def test_stitched_frames_tile_the_read(length: int, stride: int, chunk_frames: int, overlap_frames: int) -> None:
    chunksize, overlap = chunk_frames * stride, overlap_frames * stride
    pos = _positions(length, chunksize, overlap, stride)
    assert pos[0] == 0
    assert np.all(np.diff(pos) > 0), "frames must not repeat or go back"
    assert np.all(np.diff(pos) <= 2 * stride), "no gap larger than one frame"
    assert pos[-1] < max(length, 1) and pos[-1] >= length - 2 * stride


def test_aligned_read_stitches_to_exact_frames() -> None:
    # 4000-sample chunks, 500 overlap, read of 2 steps + one chunk: every chunk is stride-aligned
    pos = _positions(3500 * 2 + 4000, 4000, 500, 5)
    np.testing.assert_array_equal(pos, 5 * np.arange((3500 * 2 + 4000) // 5))


def test_short_read_is_padded_not_dropped() -> None:
    plan = plan_chunks(1234, 4000, 500, 5)
    chunks = cut(np.ones(1234, np.float32), plan, 4000)
    assert chunks.shape == (1, 4000) and chunks[0, :1234].all() and not chunks[0, 1234:].any()
    assert plan.keep.tolist() == [[0, 247]]


def test_stitch_decoded_keeps_bases_of_kept_frames() -> None:
    plan = plan_chunks(7500, 4000, 500, 5)  # two chunks: keep [0,750) and [50,800)
    first = DecodedChunk(np.tile(np.array([1, 0], np.uint8), 400), "A" * 400, "!" * 400)
    second = DecodedChunk(np.tile(np.array([0, 1], np.uint8), 400), "C" * 400, "#" * 400)
    joined = stitch_decoded([first, second], plan)
    assert joined.sequence == "A" * 375 + "C" * 375
    assert joined.qstring == "!" * 375 + "#" * 375
    assert joined.moves.shape == (1500,) and joined.moves.sum() == 750


@pytest.mark.parametrize("length", [1, 5, 4000, 4001, 123_456])
def test_cut_matches_signal(length: int) -> None:
    signal = np.arange(length, dtype=np.float32)
    plan = plan_chunks(length, 4000, 500, 5)
    chunks = cut(signal, plan, 4000)
    for row, start in zip(chunks, plan.starts):
        n = min(4000, length - start)
        np.testing.assert_array_equal(row[:n], signal[start : start + n])
