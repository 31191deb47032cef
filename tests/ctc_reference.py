"""Slow, literal references for the CTC decoders (tests only).

``reference_beam_search`` is a plain-Python transcription of the rules of
DeepNano-blitz ``src/beam_search.rs`` (lists of tuples, stable sorts, float32);
``exhaustive_best`` sums every frame path, so it is only for a handful of frames.
"""

from __future__ import annotations

import itertools

import numpy as np

f32 = np.float32


def reference_beam_search(post: np.ndarray, beam_size: int, cut: float, labels: str = "NACGT") -> tuple[str, list[float]]:
    """Returns the sequence and each base's max probability."""
    cut = f32(cut)
    prevs = [(0, 0)]  # node -> (base, parent)
    max_p = [f32(0)]
    forward = [[-1] * 4]
    cur = [(0, f32(0), f32(1))]
    for pr in post[::-1].astype(np.float32):
        new = []
        for beam, base_p, n_p in cur:
            if pr[0] > cut:
                new.append((beam, f32(0), (n_p + base_p) * pr[0]))
            for b in range(1, 5):
                if pr[b] < cut:
                    continue
                if b == prevs[beam][0]:
                    new.append((beam, base_p * pr[b], f32(0)))
                    max_p[beam] = max(max_p[beam], pr[b])
                    mass = n_p
                else:
                    mass = base_p + n_p
                nb = forward[beam][b - 1]
                if nb == -1:
                    nb = len(prevs)
                    prevs.append((b, beam))
                    max_p.append(pr[b])
                    forward[beam][b - 1] = nb
                    forward.append([-1] * 4)
                new.append((nb, mass * pr[b], f32(0)))
                max_p[nb] = max(max_p[nb], pr[b])
        new.sort(key=lambda x: x[0])
        merged: list[list] = []
        for key, bp, npb in new:
            if merged and merged[-1][0] == key:
                merged[-1][1] = merged[-1][1] + bp
                merged[-1][2] = merged[-1][2] + npb
            else:
                merged.append([key, bp, npb])
        merged.sort(key=lambda x: -(x[1] + x[2]))
        merged = merged[:beam_size]
        top = merged[0][1] + merged[0][2]
        cur = [(k, bp / top, npb / top) for k, bp, npb in merged]
    seq, probs = [], []
    beam = cur[0][0]
    while beam != 0:
        seq.append(labels[prevs[beam][0]])
        probs.append(float(max_p[beam]))
        beam = prevs[beam][1]
    return "".join(seq), probs


def collapse(path: tuple[int, ...], labels: str = "NACGT") -> str:
    out, prev = [], 0
    for p in path:
        if p != 0 and p != prev:
            out.append(labels[p])
        prev = p
    return "".join(out)


def exhaustive_best(post: np.ndarray, labels: str = "NACGT") -> tuple[str, str]:
    """(most probable labelling summed over paths, labelling of the most probable path)."""
    post = post.astype(np.float64)
    totals: dict[str, float] = {}
    best_path, best_p = None, -1.0
    for path in itertools.product(range(post.shape[1]), repeat=post.shape[0]):
        p = float(np.prod(post[np.arange(post.shape[0]), path]))
        s = collapse(path, labels)
        totals[s] = totals.get(s, 0.0) + p
        if p > best_p:
            best_path, best_p = path, p
    return max(totals, key=totals.__getitem__), collapse(best_path, labels)
