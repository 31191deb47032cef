"""Resampling a read's signal to the model's sample rate (4 kHz reads for a 5 kHz model).

Why: R10.4.1 runs were recorded at 4 kHz until MinKNOW moved to 5 kHz, and a
model is trained for one rate. Resampling lets one 5 kHz model serve both:
training resamples its 4 kHz reads with this function, and the runtime must
resample the same way, so it lives here (numpy only, no torch, no scipy).

Method: band-limited (windowed-sinc) interpolation. Output sample j lies at
input position x_j = j * from_rate / to_rate; it is the sum over the
``2 * HALF_WIDTH`` input samples around x_j weighted by a Kaiser-windowed sinc
with its cut-off at the lower rate's Nyquist frequency (times ``CUTOFF``, to
leave room for the window's transition band). A rational ratio up/down has
only ``up`` distinct fractional positions, so the weights are computed once
per phase and each phase is one matrix product (polyphase). Each phase's
weights are normalised to sum to 1, so a constant signal stays exactly
constant; samples past either end repeat the end sample. Deterministic: the
same input gives the same float32 output on every machine (float64 inside).

Positions (a base's first sample, a trim) map with :func:`resample_positions`:
input sample i lies at output time i * to_rate / from_rate, and the first
output sample at or after it is its new index.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from edgecall.errors import EdgecallError
from edgecall.runtime.read import Read

HALF_WIDTH = 16  # input samples on each side of an output sample (32 taps)
CUTOFF = 0.9  # share of the lower rate's Nyquist frequency kept
KAISER_BETA = 8.0  # Kaiser window shape: sidelobes ~ -80 dB
_PHASES: dict[tuple[int, int], np.ndarray] = {}  # (up, down) -> (up, 2 * HALF_WIDTH) weights per phase


def ratio(from_rate: int, to_rate: int) -> tuple[int, int]:
    """(up, down) in lowest terms, so that to_rate / from_rate == up / down."""
    if from_rate <= 0 or to_rate <= 0:
        raise EdgecallError(f"sample rates must be positive, got {from_rate} Hz -> {to_rate} Hz")
    g = math.gcd(int(from_rate), int(to_rate))
    return int(to_rate) // g, int(from_rate) // g


def resampled_length(samples: int, from_rate: int, to_rate: int) -> int:
    """Output samples for ``samples`` input samples: the same duration, rounded up."""
    up, down = ratio(from_rate, to_rate)
    return -(-samples * up // down)


def resample_positions(positions: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """(n,) int input sample indices -> (n,) int64 indices of the first output sample at or after each."""
    up, down = ratio(from_rate, to_rate)
    p = np.asarray(positions, dtype=np.int64)
    return -(-p * up // down)


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """(samples,) signal at ``from_rate`` Hz -> (resampled_length,) float32 at ``to_rate`` Hz."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1:
        raise EdgecallError(f"resample expects a 1-D signal, got shape {x.shape}")
    up, down = ratio(from_rate, to_rate)
    n_out = resampled_length(x.size, from_rate, to_rate)
    if up == down or x.size == 0:
        return x.astype(np.float32)
    taps = _phases(up, down)
    padded = np.concatenate([np.full(HALF_WIDTH, x[0]), x, np.full(HALF_WIDTH + down, x[-1])])
    # row r holds input samples r - HALF_WIDTH .. r + HALF_WIDTH - 1; output j needs floor(x_j) - HALF_WIDTH + 1 on
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * HALF_WIDTH)
    out = np.empty(n_out, dtype=np.float64)
    for phase in range(up):
        j = np.arange(phase, n_out, up, dtype=np.int64)  # output samples of this phase
        base = j * down // up  # floor of their input position
        out[phase::up] = windows[base + 1] @ taps[phase]
    return out.astype(np.float32)


def _phases(up: int, down: int) -> np.ndarray:
    """(up, 2 * HALF_WIDTH) float64 weights of each phase, cached per ratio."""
    key = (up, down)
    if key not in _PHASES:
        cutoff = 0.5 * CUTOFF * min(1.0, up / down)  # cycles per input sample
        window = np.kaiser(2 * HALF_WIDTH + 1, KAISER_BETA)
        taps = np.empty((up, 2 * HALF_WIDTH))
        for phase in range(up):
            frac = (phase * down % up) / up  # x_j - floor(x_j) for this phase
            # taps k = floor(x) - HALF_WIDTH + 1 .. floor(x) + HALF_WIDTH, at distance d = x - k
            d = frac + HALF_WIDTH - 1 - np.arange(2 * HALF_WIDTH)
            w = np.interp(d, np.arange(-HALF_WIDTH, HALF_WIDTH + 1), window)
            h = 2 * cutoff * np.sinc(2 * cutoff * d) * w
            taps[phase] = h / h.sum()
        _PHASES[key] = taps
    return _PHASES[key]


def resample_read(read: Read, to_rate: int) -> Read:
    """The read at ``to_rate`` Hz: raw resampled as float32 DAC units (same offset and scale, so pA is kept)."""
    if read.sample_rate == to_rate:
        return read
    start = int(resample_positions(np.array([read.start_sample]), read.sample_rate, to_rate)[0])
    return dataclasses.replace(read, raw=resample(read.raw, read.sample_rate, to_rate), sample_rate=int(to_rate),
                               start_sample=start)
