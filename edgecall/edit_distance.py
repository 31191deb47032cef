"""Levenshtein distance between base sequences (no torch: training and compile both use it)."""

from __future__ import annotations

import numpy as np


def edit_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Levenshtein distance of two int arrays; one vectorised row per element of ``a``."""
    cols = np.arange(len(b) + 1)
    row = cols.copy()
    for i, x in enumerate(a, start=1):
        diag = row[:-1] + (b != x)
        cur = np.empty_like(row)
        cur[0] = i
        cur[1:] = np.minimum(row[1:] + 1, diag)
        row = np.minimum.accumulate(cur - cols) + cols  # insertions chain along the row
    return int(row[-1])
