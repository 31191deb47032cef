"""Normalisation and trimming: statistics on real reads, degenerate signals, bonito's trim rule."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecall.config import NormalisationConfig
from edgecall.errors import EdgecallError
from edgecall.runtime.read import Read
from edgecall.runtime.readers import iter_reads
from edgecall.runtime.signal import normalise, prepare, trim

MEDMAD = NormalisationConfig(strategy="medmad")
QUANTILE = NormalisationConfig(strategy="quantile")
STRATEGIES = [MEDMAD, QUANTILE, NormalisationConfig(strategy="pa", mean=90.0, stdev=15.0), NormalisationConfig(strategy="none")]


def make_read(pa: np.ndarray, scale: float = 0.25, offset: float = 10.0) -> Read:
    """A read whose pA signal is ``pa`` to within the int16 quantisation of ``scale``."""
    raw = np.clip(np.round(pa / scale - offset), -32768, 32767).astype(np.int16)
    return Read("00000000-0000-0000-0000-000000000000", raw, offset, scale, 4000, 1, "2020-01-01T00:00:00.000+00:00", "run", Path("x.pod5"))


def bonito_trim(signal: np.ndarray, window_size: int = 40, threshold: float = 2.4, min_trim: int = 10,
                min_elements: int = 3, max_samples: int = 8000, max_trim: float = 0.3) -> int:
    """bonito/reader.py ``trim`` as published, loop for loop: the reference for the vectorised one."""
    seen_peak = False
    num_windows = min(max_samples, len(signal)) // window_size
    for pos in range(num_windows):
        start = pos * window_size + min_trim
        end = start + window_size
        window = signal[start:end]
        if len(window[window > threshold]) > min_elements or seen_peak:
            seen_peak = True
            if window[-1] > threshold:
                continue
            if end >= min(max_samples, len(signal)) or end / len(signal) > max_trim:
                return min_trim
            return end
    return min_trim


def open_pore_read(rng: np.random.Generator, adapter: int = 1000, strand: int = 20000) -> np.ndarray:
    """Normalised-looking signal: a high open-pore/adapter start, then strand noise around 0."""
    return np.concatenate([rng.normal(6.0, 0.3, adapter), rng.normal(0.0, 1.0, strand)]).astype(np.float32)


# ---- normalise ------------------------------------------------------------------


def test_medmad_statistics_on_real_reads(shared_data: Path) -> None:
    reads = [r for r in iter_reads([shared_data / "accuracy/lambda_r941/lambda_r941.pod5"]) if isinstance(r, Read)]
    assert len(reads) == 50
    for read in reads:
        signal, trimmed = prepare(read, MEDMAD)
        assert signal.dtype == np.float32 and signal.shape == (read.num_samples - trimmed,)
        assert 10 <= trimmed <= 8000
        median = np.median(signal)
        assert abs(median) < 1e-3
        assert np.median(np.abs(signal - median)) * 1.4826 == pytest.approx(1.0, abs=1e-3)


def test_pod5_and_fast5_give_the_same_network_input(shared_data: Path) -> None:
    read_id = "080fbbfd-2a90-4f17-a3ec-5a5f41d2378c"
    folder = shared_data / "accuracy/lambda_r941"
    (a,) = iter_reads([folder / "lambda_r941.pod5"], read_ids={read_id})
    (b,) = iter_reads([folder / f"fast5/{read_id}.fast5"], read_ids={read_id})
    assert isinstance(a, Read) and isinstance(b, Read)
    (sa, ta), (sb, tb) = prepare(a, MEDMAD), prepare(b, MEDMAD)
    assert ta == tb
    np.testing.assert_allclose(sa, sb, atol=1e-4)


def test_quantile_follows_dorado() -> None:
    x = np.random.default_rng(1).normal(90.0, 12.0, 50_000).astype(np.float32)
    qa, qb = np.quantile(x, [0.2, 0.9])
    expected = (x - 0.51 * (qa + qb)) / (0.53 * (qb - qa))
    np.testing.assert_allclose(normalise(x, QUANTILE), expected, rtol=1e-5, atol=1e-5)


def test_pa_and_none() -> None:
    x = np.array([75.0, 90.0, 105.0], np.float32)
    np.testing.assert_allclose(normalise(x, STRATEGIES[2]), [-1.0, 0.0, 1.0])
    out = normalise(x, STRATEGIES[3])
    np.testing.assert_array_equal(out, x)
    assert out is not x
    with pytest.raises(EdgecallError):
        normalise(x, NormalisationConfig(strategy="pa", stdev=0.0))


@pytest.mark.parametrize("config", STRATEGIES, ids=lambda c: c.strategy)
@pytest.mark.parametrize("pa", [np.full(5000, 83.5), np.array([42.0]), np.zeros(0)], ids=["constant", "one", "empty"])
def test_degenerate_signals_stay_finite(config: NormalisationConfig, pa: np.ndarray) -> None:
    out = normalise(pa, config)
    assert out.dtype == np.float32 and out.shape == pa.shape and np.isfinite(out).all()
    signal, trimmed = prepare(make_read(pa), config)
    assert np.isfinite(signal).all() and signal.size == pa.size - trimmed
    assert signal.size > 0 or pa.size == 0


def test_constant_signal_medmad_is_zero() -> None:
    np.testing.assert_array_equal(normalise(np.full(100, 70.0), MEDMAD), np.zeros(100, np.float32))


# ---- trim -----------------------------------------------------------------------


def test_trim_drops_an_open_pore_start() -> None:
    rng = np.random.default_rng(0)
    signal = open_pore_read(rng, adapter=1000)
    cut = trim(signal)
    assert 1000 <= cut <= 1050 and (cut - 10) % 40 == 0
    assert cut == bonito_trim(signal)


def test_prepare_trims_and_renormalises_the_rest() -> None:
    rng = np.random.default_rng(2)
    pa = np.concatenate([rng.normal(220.0, 3.0, 1500), rng.normal(85.0, 10.0, 30000)])  # open pore, then strand
    signal, trimmed = prepare(make_read(pa), MEDMAD)
    assert 1500 <= trimmed <= 1550 and signal.size == pa.size - trimmed
    assert abs(np.median(signal)) < 1e-3
    assert prepare(make_read(pa), replace(MEDMAD, trim=False))[1] == 0


@pytest.mark.parametrize(
    "signal, expected",
    [
        (np.zeros(0, np.float32), 0),
        (np.full(10, 9.0, np.float32), 0),  # short read: never trimmed to nothing
        (np.zeros(11, np.float32), 10),
        (np.zeros(20_000, np.float32), 10),  # no adapter: the fixed 10 samples
        (np.concatenate([np.full(8000, 6.0), np.zeros(12_000)]).astype(np.float32), 10),  # past the 8000-sample search
        (np.concatenate([np.full(2000, 6.0), np.zeros(2000)]).astype(np.float32), 10),  # over 30% of the read
    ],
    ids=["empty", "ten", "eleven", "flat", "long-adapter", "most-of-read"],
)
def test_trim_edge_cases(signal: np.ndarray, expected: int) -> None:
    assert trim(signal) == expected


def test_trim_on_real_degenerate_reads(shared_data: Path) -> None:
    for name in ("trimming_bomb.pod5", "overtrim.pod5"):
        (read,) = iter_reads([shared_data / "pod5/dorado/degenerate" / name])
        assert isinstance(read, Read)
        for config in (MEDMAD, QUANTILE):
            signal, trimmed = prepare(read, config)
            assert 0 < signal.size == read.num_samples - trimmed and np.isfinite(signal).all()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    signal=hnp.arrays(np.float32, st.integers(0, 2000), elements=st.sampled_from([-1.0, 0.0, 2.0, 2.5, 3.0, 6.0])),
    adapter=st.integers(0, 600),
)
def test_trim_matches_bonito_loop(signal: np.ndarray, adapter: int) -> None:
    signal = np.concatenate([np.full(adapter, 6.0, np.float32), signal])
    expected = bonito_trim(signal) if signal.size > 10 else 0
    assert trim(signal) == expected
    assert trim(signal) < max(signal.size, 1)
