"""The runtime's resampler: band-limited, exact on constants, deterministic, numpy only, positions mapped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecall.errors import EdgecallError
from edgecall.runtime.read import Read
from edgecall.runtime.resample import resample, resample_positions, resample_read, resampled_length


def tone(hz: float, rate: int, samples: int) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(samples) / rate)


@pytest.mark.parametrize(("src", "dst"), [(4000, 5000), (5000, 4000), (3000, 4000)])
def test_a_tone_below_nyquist_comes_out_at_the_new_rate(src: int, dst: int) -> None:
    out = resample(tone(300.0, src, src), src, dst)
    assert out.dtype == np.float32 and out.size == dst  # one second stays one second
    inner = slice(50, -50)  # edges repeat the end sample
    assert np.abs(out[inner] - tone(300.0, dst, dst)[inner]).max() < 1e-3


def test_constants_stay_exact_and_equal_rates_pass_through() -> None:
    assert np.array_equal(resample(np.full(101, 7.5), 4000, 5000), np.full(127, 7.5, np.float32))
    x = np.arange(10, dtype=np.int16)
    assert np.array_equal(resample(x, 5000, 5000), x.astype(np.float32))
    assert resample(np.zeros(0), 4000, 5000).size == 0


def test_tones_above_the_lower_nyquist_are_removed_when_downsampling() -> None:
    out = resample(tone(2300.0, 5000, 5000), 5000, 4000)  # above 4 kHz's 2 kHz Nyquist
    assert np.abs(out[50:-50]).max() < 0.01


def test_deterministic_and_lengths() -> None:
    x = np.random.default_rng(1).normal(size=12_345)
    assert np.array_equal(resample(x, 4000, 5000), resample(x.copy(), 4000, 5000))
    assert resampled_length(12_345, 4000, 5000) == 15_432 == resample(x, 4000, 5000).size  # ceil(12345 * 5 / 4)
    assert resample_positions(np.array([0, 1, 4, 5, 8]), 4000, 5000).tolist() == [0, 2, 5, 7, 10]


def test_a_step_lands_at_its_mapped_position() -> None:
    """A level change at input sample i is half-way at output sample i * 5/4: labels and signal agree."""
    x = np.where(np.arange(4000) < 1600, 0.0, 1.0)
    out = resample(x, 4000, 5000)
    assert int(resample_positions(np.array([1600]), 4000, 5000)[0]) == 2000
    assert out[1997] < 0.1 and out[2002] > 0.9


def test_resample_read_keeps_the_current() -> None:
    raw = (100 + 20 * tone(50.0, 4000, 8000)).astype(np.int16)
    read = Read("r", raw, offset=-5.0, scale=0.5, sample_rate=4000, channel=1, start_time="", run_id="x", source=Path("x"))
    out = resample_read(read, 5000)
    assert out.sample_rate == 5000 and out.num_samples == 10_000 and out.offset == -5.0 and out.scale == 0.5
    assert abs(float(np.median(out.pa())) - float(np.median(read.pa()))) < 0.2
    assert resample_read(out, 5000) is out


def test_bad_rates_are_refused() -> None:
    with pytest.raises(EdgecallError, match="sample rates must be positive"):
        resample(np.zeros(5), 0, 5000)


def test_the_resampler_needs_no_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import edgecall.runtime.resample; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
