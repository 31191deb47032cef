"""Read identity by banded global alignment (tests only).

identity = matches / alignment columns, with columns = matches + mismatches +
insertions + deletions of a minimum-edit-distance alignment (ties: fewest
columns). The band follows the diagonal; an alignment leaving it can only make
the identity look worse, never better.
"""

from __future__ import annotations

import numba
import numpy as np

_CODE = np.full(256, 4, np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _CODE[_c] = _i


@numba.njit(cache=True)
def _banded(a: np.ndarray, b: np.ndarray, band: int) -> tuple[int, int]:
    n, m = a.shape[0], b.shape[0]
    big = 1 << 30
    prev_e = np.full(m + 1, big, np.int64)
    prev_c = np.zeros(m + 1, np.int64)
    cur_e = np.full(m + 1, big, np.int64)
    cur_c = np.zeros(m + 1, np.int64)
    for j in range(min(m, band) + 1):
        prev_e[j] = j
        prev_c[j] = j
    for i in range(1, n + 1):
        centre = (i * m) // max(n, 1)
        lo, hi = max(0, centre - band), min(m, centre + band)
        cur_e[:] = big
        if lo == 0:
            cur_e[0] = i
            cur_c[0] = i
        for j in range(max(lo, 1), hi + 1):
            sub = 0 if a[i - 1] == b[j - 1] else 1
            e, c = prev_e[j - 1] + sub, prev_c[j - 1] + 1
            e2, c2 = prev_e[j] + 1, prev_c[j] + 1
            if e2 < e or (e2 == e and c2 < c):
                e, c = e2, c2
            e3, c3 = cur_e[j - 1] + 1, cur_c[j - 1] + 1
            if e3 < e or (e3 == e and c3 < c):
                e, c = e3, c3
            cur_e[j], cur_c[j] = e, c
        prev_e, cur_e = cur_e, prev_e
        prev_c, cur_c = cur_c, prev_c
    return prev_e[m], prev_c[m]


def identity(query: str, reference: str, band: int | None = None) -> float:
    """Fraction of alignment columns that are matches (1.0 for equal strings)."""
    if not query and not reference:
        return 1.0
    a = _CODE[np.frombuffer(query.encode(), np.uint8)]
    b = _CODE[np.frombuffer(reference.encode(), np.uint8)]
    if band is None:
        band = abs(len(a) - len(b)) + max(100, max(len(a), len(b)) // 20)
    edits, columns = _banded(a, b, band)
    return (columns - edits) / columns


def mapped_identity(query: str, reference: str) -> float:
    """BLAST identity of minimap2's primary alignment (matches / alignment columns), clipped ends excluded.

    Used where one call legitimately extends past the other (edgecall calls the signal
    tail that DeepNano-blitz leaves out); 0.0 when the query does not map.
    """
    import mappy

    aligner = mappy.Aligner(seq=reference, preset="map-ont")
    hits = [h for h in aligner.map(query) if h.is_primary]
    return max((h.mlen / h.blen for h in hits), default=0.0)
