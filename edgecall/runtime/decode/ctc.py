"""CTC decoding of label posteriors: DeepNano-blitz's prefix beam search, and greedy.

Input is one read's stitched (frames, labels) float32 matrix of **probabilities**
(rows sum to 1, blank at index 0), forward in time -- what DeepNano-blitz
packages output. The beam search follows fmfi-compbio/deepnano-blitz
``src/beam_search.rs`` step for step, in float32:

* frames are visited last to first (``reverse=True``), so walking the winning
  prefix back to the root yields the bases in forward order;
* a hypothesis is a prefix-tree node with (p ending in a base, p ending in blank),
  starting at the root with (0, 1); blank extends it if p_blank > cut, a base b if
  p_b >= cut; repeating the node's own base stays (from p_base) or, after a blank,
  makes a new node (from p_blank);
* candidates for the same node are summed in push order, ordered by descending
  total (ties: older node first), cut to ``beam_width`` and scaled by the best;
* a base's quality comes from the largest p_b ever pushed into its node,
  Q = floor(-10 log10(1 - p)), char = Q + 33.

DeepNano-blitz keeps no alignment, so moves are ours: a base's move is the frame
(forward time) at which its node first survived a cut. Along a path these are
strictly increasing, so ``moves.sum() == len(sequence)``; with ``reverse=True``
the mark sits at the base's last frame, not its first.
"""

from __future__ import annotations

import numba
import numpy as np

from edgecall.errors import EdgecallError
from edgecall.runtime.read import DecodedChunk

LABELS = "NACGT"
MAX_Q = 93  # printable ceiling for p == 1.0 (DeepNano-blitz would panic there)


def _check(posteriors: np.ndarray, labels: str) -> np.ndarray:
    post = np.ascontiguousarray(posteriors, dtype=np.float32)
    if post.ndim != 2 or post.shape[1] != len(labels):
        raise EdgecallError(f"CTC decoder: expected (frames, {len(labels)}) posteriors, got {post.shape}")
    return post


def qchars(p: np.ndarray) -> str:
    """Phred+33 characters for base probabilities, as DeepNano-blitz's ``prob_to_str``."""
    p = np.asarray(p, dtype=np.float32)
    with np.errstate(divide="ignore"):
        q = np.float32(-10.0) * np.log10(np.float32(1.0) - p)  # float32, like the Rust f32 code
    q = np.where(np.isfinite(q), np.clip(q, 0, MAX_Q), MAX_Q).astype(np.int64)
    return (q + 33).astype(np.uint8).tobytes().decode("ascii")


def _result(codes: np.ndarray, maxp: np.ndarray, frames: np.ndarray, n_frames: int, labels: str) -> DecodedChunk:
    moves = np.zeros(n_frames, dtype=np.uint8)
    moves[frames] = 1
    sequence = "".join(labels[c] for c in codes)
    return DecodedChunk(moves=moves, sequence=sequence, qstring=qchars(maxp))


def beam_search(
    posteriors: np.ndarray,
    *,
    beam_width: int = 5,
    beam_cut: float = 0.1,
    reverse: bool = True,
    labels: str = LABELS,
) -> DecodedChunk:
    """DeepNano-blitz CTC prefix beam search over (frames, labels) probabilities."""
    post = _check(posteriors, labels)
    if beam_width < 1:
        raise EdgecallError(f"beam width must be at least 1, got {beam_width}")
    if post.shape[0] == 0:
        return DecodedChunk(moves=np.zeros(0, np.uint8), sequence="", qstring="")
    codes, maxp, frames = _beam_search(post, int(beam_width), np.float32(beam_cut), bool(reverse))
    return _result(codes, maxp, frames, post.shape[0], labels)


def greedy(posteriors: np.ndarray, *, labels: str = LABELS) -> DecodedChunk:
    """Best label per frame, repeats merged, blanks dropped (DeepNano-blitz ``beam 1`` rule).

    A base's move is the first frame of its run; its quality uses the run's
    largest probability, as the beam search does.
    """
    post = _check(posteriors, labels)
    if post.shape[0] == 0:
        return DecodedChunk(moves=np.zeros(0, np.uint8), sequence="", qstring="")
    best = post.argmax(axis=1)  # first maximum wins, as the Rust fold
    prev = np.concatenate([[0], best[:-1]])
    starts = np.flatnonzero((best != 0) & (best != prev))
    if starts.size == 0:
        return DecodedChunk(moves=np.zeros(post.shape[0], np.uint8), sequence="", qstring="")
    peak = post[np.arange(post.shape[0]), best]
    run_id = np.cumsum(best != prev) - 1  # run index of each frame
    maxp = np.zeros(run_id[-1] + 1, np.float32)
    np.maximum.at(maxp, run_id, peak)
    return _result(best[starts], maxp[run_id[starts]], starts, post.shape[0], labels)


@numba.njit(cache=True, nogil=True)
def _grow(a: np.ndarray, size: int) -> np.ndarray:
    out = np.empty(size, a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def _grow2(a: np.ndarray, size: int) -> np.ndarray:
    out = np.full((size, a.shape[1]), -1, a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def _beam_search(post, beam_width, cut, reverse):  # noqa: C901 - one loop mirrors the reference
    """(frames, labels) float32 -> label codes, max p and forward-time frame per base, in read order."""
    n_frames, n_labels = post.shape
    cap = 1024
    node_base = np.zeros(cap, np.int64)  # label of the node's last base (0 at the root)
    node_parent = np.zeros(cap, np.int64)
    node_child = np.full((cap, n_labels - 1), -1, np.int64)  # child per base label
    node_maxp = np.zeros(cap, np.float32)  # largest p pushed into the node
    node_frame = np.full(cap, -1, np.int64)  # forward-time frame of first survival
    node_slot = np.full(cap, -1, np.int64)  # scratch: candidate slot of a node this frame
    n_nodes = 1

    max_cand = beam_width * (1 + 2 * (n_labels - 1))
    # the surviving beams: the first n_beams entries (preallocated: an allocation per
    # frame cost more than the search itself)
    beams = np.zeros(beam_width, np.int64)
    p_base = np.zeros(beam_width, np.float32)
    p_blank = np.ones(beam_width, np.float32)
    n_beams = 1
    order = np.empty(max_cand, np.int64)
    c_node = np.zeros(max_cand, np.int64)
    c_base = np.zeros(max_cand, np.float32)
    c_blank = np.zeros(max_cand, np.float32)
    zero = np.float32(0.0)

    for step in range(n_frames):
        t = n_frames - 1 - step if reverse else step
        pr = post[t]
        if n_nodes + beam_width * (n_labels - 1) > cap:
            cap *= 2
            node_base = _grow(node_base, cap)
            node_parent = _grow(node_parent, cap)
            node_child = _grow2(node_child, cap)
            node_maxp = _grow(node_maxp, cap)
            node_frame = _grow(node_frame, cap)
            node_slot = _grow(node_slot, cap)
            node_frame[n_nodes:] = -1
            node_slot[n_nodes:] = -1

        n_cand = 0  # unique nodes this frame, in first-push order
        for k in range(n_beams):
            beam, bp, np_ = beams[k], p_base[k], p_blank[k]
            for lab in range(n_labels):
                if lab == 0:
                    if not pr[0] > cut:
                        continue
                elif pr[lab] < cut:
                    continue
                # up to two pushes: (node, base mass, blank mass)
                for push in range(2):
                    if lab == 0:
                        if push == 1:
                            break
                        target, add_base, add_blank = beam, zero, (np_ + bp) * pr[0]
                    elif lab == node_base[beam] and push == 0:
                        target, add_base, add_blank = beam, bp * pr[lab], zero
                        node_maxp[beam] = max(node_maxp[beam], pr[lab])
                    else:
                        if push == 1 and lab != node_base[beam]:
                            break
                        target = node_child[beam, lab - 1]
                        if target == -1:
                            target = n_nodes
                            n_nodes += 1
                            node_base[target] = lab
                            node_parent[target] = beam
                            node_maxp[target] = pr[lab]
                            node_child[beam, lab - 1] = target
                        node_maxp[target] = max(node_maxp[target], pr[lab])
                        mass = np_ if lab == node_base[beam] else bp + np_
                        add_base, add_blank = mass * pr[lab], zero
                    slot = node_slot[target]
                    if slot == -1:
                        slot = n_cand
                        n_cand += 1
                        node_slot[target] = slot
                        c_node[slot] = target
                        c_base[slot] = add_base
                        c_blank[slot] = add_blank
                    else:
                        c_base[slot] += add_base
                        c_blank[slot] += add_blank

        if n_cand == 0:  # only when beam_cut > 1/labels: keep the beams, skip the frame
            continue
        # order by (descending total, ascending node id): the reference's stable sorts
        for i in range(n_cand):
            order[i] = i
        for i in range(1, n_cand):
            j = i
            while j > 0:
                a, b = order[j - 1], order[j]
                ta, tb = c_base[a] + c_blank[a], c_base[b] + c_blank[b]
                if tb > ta or (tb == ta and c_node[b] < c_node[a]):
                    order[j - 1], order[j] = b, a
                    j -= 1
                else:
                    break
        keep = min(beam_width, n_cand)
        n_beams = keep
        top = c_base[order[0]] + c_blank[order[0]]
        for i in range(keep):
            s = order[i]
            beams[i] = c_node[s]
            p_base[i] = c_base[s] / top
            p_blank[i] = c_blank[s] / top
            if node_frame[c_node[s]] == -1:
                node_frame[c_node[s]] = t
        for i in range(n_cand):
            node_slot[c_node[i]] = -1

    length = 0
    node = beams[0]
    while node != 0:
        length += 1
        node = node_parent[node]
    codes = np.empty(length, np.int64)
    maxp = np.empty(length, np.float32)
    frames = np.empty(length, np.int64)
    node = beams[0]
    for i in range(length):
        j = i if reverse else length - 1 - i  # output in forward time order
        codes[j] = node_base[node]
        maxp[j] = node_maxp[node]
        frames[j] = node_frame[node]
        node = node_parent[node]
    return codes, maxp, frames
