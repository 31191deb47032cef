"""Join per-chunk results of one read, keeping each chunk's frames from its plan.

CRF models decode every chunk on its own (bounded memory however long the
read) and the decoded moves/bases/qualities are stitched; CTC models stitch
their small (frames, labels) posteriors and decode the read once.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgecall.runtime.chunk import ChunkPlan
from edgecall.runtime.read import DecodedChunk


def stitch_decoded(chunks: Sequence[DecodedChunk], plan: ChunkPlan) -> DecodedChunk:
    """Concatenate the kept frames' moves and the bases emitted in them."""
    moves, seq, qual = [], [], []
    for chunk, (first, end) in zip(chunks, plan.keep):
        emitted = np.cumsum(chunk.moves, dtype=np.int64)
        lo = int(emitted[first - 1]) if first > 0 else 0
        hi = int(emitted[end - 1]) if end > 0 else 0
        moves.append(chunk.moves[first:end])
        seq.append(chunk.sequence[lo:hi])
        qual.append(chunk.qstring[lo:hi])
    joined = np.concatenate(moves) if moves else np.zeros(0, np.uint8)
    return DecodedChunk(joined.astype(np.uint8, copy=False), "".join(seq), "".join(qual))


def stitch_scores(chunks: Sequence[np.ndarray], plan: ChunkPlan) -> np.ndarray:
    """(frames, C) scores of the whole read from per-chunk (frames_per_chunk, C) arrays."""
    parts = [c[first:end] for c, (first, end) in zip(chunks, plan.keep)]
    return np.ascontiguousarray(np.concatenate(parts, axis=0))
