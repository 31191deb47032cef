"""Cut a normalised read into fixed-size, overlapping chunks.

Chunk starts step by ``chunksize - overlap`` (a multiple of the stride) and the
last chunk is right-aligned to the read's end, so every sample is covered and
no chunk is padded unless the whole read is shorter than one chunk (then it is
zero-padded at the end, never dropped). :func:`keep_ranges` says which output
frames of each chunk the stitcher keeps: neighbours split their overlap at its
midpoint (bonito's and dorado's rule of dropping half the overlap at a join).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecall.errors import exact_div


@dataclass(frozen=True)
class ChunkPlan:
    """Where the chunks of one read sit, and which frames of each are kept."""

    length: int  # samples in the (trimmed) read
    starts: np.ndarray  # (chunks,) int64 sample offset of each chunk
    keep: np.ndarray  # (chunks, 2) int64 [first, end) frame kept from each chunk

    @property
    def num_chunks(self) -> int:
        return int(self.starts.shape[0])


def chunk_starts(length: int, chunksize: int, overlap: int) -> np.ndarray:
    if length <= chunksize:
        return np.zeros(1, np.int64)
    step = chunksize - overlap
    starts = np.arange(0, length - chunksize + 1, step, dtype=np.int64)
    if starts[-1] + chunksize < length:
        starts = np.append(starts, length - chunksize)
    return starts


def plan_chunks(length: int, chunksize: int, overlap: int, stride: int) -> ChunkPlan:
    exact_div(chunksize, stride, "chunksize vs model stride")
    starts = chunk_starts(length, chunksize, overlap)
    frames_per_chunk = chunksize // stride
    n = starts.shape[0]
    keep = np.zeros((n, 2), np.int64)
    if n == 1:
        keep[0] = (0, min(frames_per_chunk, -(-length // stride)))
        return ChunkPlan(length, starts, keep)
    # sample position b where chunk j hands over to chunk j+1: the middle of their overlap.
    # Chunk j keeps the frames that start before b, chunk j+1 those that start at or after it.
    boundaries = (starts[1:] + starts[:-1] + chunksize) // 2
    first = np.concatenate([[0], boundaries - starts[1:]])
    end = np.concatenate([boundaries - starts[:-1], [chunksize]])
    keep[:, 0] = -(-first // stride)
    keep[:, 1] = -(-end // stride)
    return ChunkPlan(length, starts, keep)


def cut(signal: np.ndarray, plan: ChunkPlan, chunksize: int) -> np.ndarray:
    """(chunks, chunksize) float32 views/copies of the signal, zero-padded if short."""
    if signal.shape[0] < chunksize:
        out = np.zeros((1, chunksize), np.float32)
        out[0, : signal.shape[0]] = signal
        return out
    idx = plan.starts[:, None] + np.arange(chunksize)[None, :]
    return signal[idx].astype(np.float32, copy=False)
