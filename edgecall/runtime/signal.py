"""Signal preparation: pA -> normalised float32, minus the open-pore/adapter start.

The rules copy the tools the models were trained with, so a network sees the
signal it expects:

- medmad (R9.4.1, bonito ``med_mad``): (x - median) / max(1.4826 * MAD, 1 pA).
- quantile (dorado ``ScalerNode::normalisation``, bonito ``normalisation``):
  shift = max(10, m_s * (q_a + q_b)), scale = max(1, m_c * (q_b - q_a)).
- pa (dorado standardisation): (x - mean) / stdev with the config's fixed values.
- none: pA unchanged.

The floors (1 pA on med/MAD as bonito's ``max(1.0, mad)``, dorado's 10 and 1 on
quantile shift/scale) never bind on real reads (MAD ~10 pA) but keep a
constant or near-constant signal from dividing by zero. Both tools apply the
quantile floors to the signal they normalise (bonito: pA; dorado: raw DAC
values, where 1 unit is ~0.18 pA); here they apply to pA, as bonito.

Trimming follows bonito's ``reader.trim`` on the normalised signal: 40-sample
windows from sample 10 on, threshold 2.4, a window "fires" when more than 3 of
its samples exceed it; after the first firing window, trim at the end of the
first window whose last sample falls back below. No firing window, a trim
reaching the 8000-sample search limit, or one over 30% of the read: trim only
the first 10 samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecall.config import NormalisationConfig
from edgecall.errors import EdgecallError
from edgecall.runtime.read import Read

MAD_TO_STDEV = 1.4826  # MAD of a normal distribution * this = its standard deviation
MIN_MAD_PA = 1.0  # pA; bonito's max(1.0, mad)
MIN_QUANTILE_SHIFT = 10.0  # dorado/bonito max(10, shift)
MIN_QUANTILE_SCALE = 1.0  # dorado/bonito max(1, scale)

TRIM_WINDOW = 40  # samples per window
TRIM_THRESHOLD = 2.4  # normalised units
TRIM_MIN_ELEMENTS = 3  # a window fires with more than this many samples above the threshold
TRIM_MIN_SAMPLES = 10  # always dropped (bonito/dorado min_trim)
TRIM_MAX_SAMPLES = 8000  # the adapter is searched for in this many first samples
TRIM_MAX_FRACTION = 0.3  # a trim longer than this share of the read is not believed


SCALING_NAMES = {"medmad": "med_mad", "quantile": "quantile", "pa": "pa", "none": "none"}  # as Dorado's sv:Z tag


@dataclass(frozen=True, eq=False)
class Prepared:
    """A read's signal as the network sees it, and how it got there (the sm/sd/sv/ts tags)."""

    signal: np.ndarray  # (samples - trimmed,) float32
    trimmed: int  # samples dropped at the start
    shift: float  # pA subtracted
    scale: float  # pA per normalised unit


def normalise(pa: np.ndarray, config: NormalisationConfig) -> np.ndarray:
    """(samples,) pA -> (samples,) float32 in the units the model was trained on."""
    x = _signal_of(pa)
    shift, scale = scaling(x, config)
    return _apply(x, shift, scale)


def scaling(pa: np.ndarray, config: NormalisationConfig) -> tuple[float, float]:
    """(shift, scale) in pA that ``config`` takes from this signal: normalised = (pA - shift) / scale."""
    x = _signal_of(pa)
    strategy = config.strategy
    if x.size == 0 or strategy == "none":
        return 0.0, 1.0
    if strategy == "medmad":
        return med_mad(x)
    if strategy == "quantile":
        qa, qb = np.quantile(x, [config.quantile_a, config.quantile_b])
        return (max(MIN_QUANTILE_SHIFT, config.shift_multiplier * float(qa + qb)),
                max(MIN_QUANTILE_SCALE, config.scale_multiplier * float(qb - qa)))
    if strategy == "pa":
        if not config.stdev > 0:
            raise EdgecallError(f"pa normalisation needs a positive stdev, got {config.stdev}")
        return config.mean, config.stdev
    # NormalisationConfig validates the name; this guards a new strategy added there only
    raise EdgecallError(f"unknown normalisation strategy '{strategy}'")


def _signal_of(pa: np.ndarray) -> np.ndarray:
    x = np.asarray(pa, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {x.shape}")
    return x


def _apply(x: np.ndarray, shift: float, scale: float) -> np.ndarray:
    if shift == 0.0 and scale == 1.0:
        return x.copy()
    return ((x - np.float32(shift)) / np.float32(scale)).astype(np.float32, copy=False)


def med_mad(x: np.ndarray) -> tuple[float, float]:
    """Median and MAD scaled to a standard deviation, floored at MIN_MAD_PA."""
    median = float(np.median(x))
    mad = float(np.median(np.abs(x - np.float32(median)))) * MAD_TO_STDEV
    return median, max(mad, MIN_MAD_PA)


def trim(signal: np.ndarray) -> int:
    """Samples to drop at the start of a normalised signal (bonito's rule, see module doc).

    Never the whole read: a signal of TRIM_MIN_SAMPLES or fewer is kept whole.
    """
    n = int(signal.shape[0])
    if n <= TRIM_MIN_SAMPLES:
        return 0
    limit = min(TRIM_MAX_SAMPLES, n)
    # Windows that lie wholly inside the signal; a window cut short by the end
    # can only lead to the default trim (its end passes ``limit``), so it is left out.
    windows = min(limit // TRIM_WINDOW, (n - TRIM_MIN_SAMPLES) // TRIM_WINDOW)
    if windows == 0:
        return TRIM_MIN_SAMPLES
    head = signal[TRIM_MIN_SAMPLES : TRIM_MIN_SAMPLES + windows * TRIM_WINDOW] > TRIM_THRESHOLD
    blocks = head.reshape(windows, TRIM_WINDOW)
    fired = np.flatnonzero(blocks.sum(axis=1) > TRIM_MIN_ELEMENTS)
    if fired.size == 0:
        return TRIM_MIN_SAMPLES
    settled = np.flatnonzero(~blocks[fired[0]:, -1])  # from the first firing window on, last sample low
    if settled.size == 0:
        return TRIM_MIN_SAMPLES
    end = TRIM_MIN_SAMPLES + (int(fired[0] + settled[0]) + 1) * TRIM_WINDOW
    if end >= limit or end / n > TRIM_MAX_FRACTION:
        return TRIM_MIN_SAMPLES
    return end


def prepare(read: Read, config: NormalisationConfig) -> tuple[np.ndarray, int]:
    """The read as the network sees it: ((samples - trimmed,) float32, samples trimmed); see :func:`prepare_scaled`."""
    prepared = prepare_scaled(read, config)
    return prepared.signal, prepared.trimmed


def prepare_scaled(read: Read, config: NormalisationConfig) -> Prepared:
    """The read as the network sees it, with the trim and the scaling used.

    Trim decisions are made on the normalised signal, as dorado does. For
    medmad the median and MAD are then taken again from the kept signal, as
    bonito's R9.4.1 path computes them after trimming; quantile and pa keep the
    whole-read statistics, as dorado.
    """
    pa = _signal_of(read.pa())
    shift, scale = scaling(pa, config)
    signal = _apply(pa, shift, scale)
    if not config.trim:
        return Prepared(signal, 0, shift, scale)
    trimmed = trim(signal)
    if trimmed and config.strategy == "medmad":
        shift, scale = scaling(pa[trimmed:], config)
        return Prepared(_apply(pa[trimmed:], shift, scale), trimmed, shift, scale)
    return Prepared(np.ascontiguousarray(signal[trimmed:]), trimmed, shift, scale)
