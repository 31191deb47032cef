"""Bonito-format training data: memory-mapped, padding and lengths respected, Bonito's validation split."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgecall.config import ModelConfig, rnn_encoder_config
from edgecall.errors import EdgecallError
from edgecall.train.bonito_data import open_bonito_data, training_and_validation

CONFIG = ModelConfig(encoder=rnn_encoder_config(conv_channels=(4, 16, 16), hidden_sizes=(8, 8), state_len=2))


def write_bonito_data(folder: Path, rows: int = 20, chunksize: int = 1000, seed: int = 0,
                      chunk_type: type = np.float32, samples_per_base: float | None = None) -> dict[str, np.ndarray]:
    """Bonito's layout: normalised chunks, 1-4 codes zero-padded (uint8), lengths (uint16). 'bonito basecaller
    --save-ctc' stores the chunks as float16 (bonito/io.py, CTCWriter); downloaded sets as float32.
    ``samples_per_base``: lengths as a chemistry gives them (reads' speeds spread by 13%), else 20-59 bases."""
    rng = np.random.default_rng(seed)
    if samples_per_base is None:
        lengths = rng.integers(20, 60, rows)
    else:
        lengths = np.rint(chunksize / samples_per_base * rng.lognormal(0.0, 0.13, rows)).astype(np.int64)
    references = np.zeros((rows, max(64, int(lengths.max()))), np.uint8)
    for row, n in zip(references, lengths):
        row[:n] = rng.integers(1, 5, n)
    arrays = {"chunks.npy": rng.standard_normal((rows, chunksize)).astype(chunk_type),
              "references.npy": references, "reference_lengths.npy": lengths.astype(np.uint16)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / name, array)
    return arrays


def test_chunks_are_memory_mapped_and_targets_stop_at_their_length(tmp_path: Path) -> None:
    arrays = write_bonito_data(tmp_path / "data")
    data = open_bonito_data(tmp_path / "data")
    assert isinstance(data.chunks, np.memmap) and isinstance(data.references, np.memmap)
    train, valid = training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=4)
    assert list(train.rows) == list(range(18)) and list(valid.rows) == [18, 19]  # at most a tenth held out
    chunk = valid.chunk(19)
    assert np.array_equal(chunk.targets, arrays["references.npy"][19, : arrays["reference_lengths.npy"][19]])
    assert chunk.targets.dtype == np.int64 and np.array_equal(chunk.signal, arrays["chunks.npy"][19])
    drawn = train.chunks(step=3, n=8)
    assert all(int(c.read_id.split(":")[1]) < 18 for c in drawn)  # training never draws a validation row
    assert [c.read_id for c in train.chunks(step=3, n=5)] == [c.read_id for c in drawn[:5]]  # chunk i: (step, i) alone


def test_float16_chunks_as_bonito_save_ctc_writes_them(tmp_path: Path) -> None:
    arrays = write_bonito_data(tmp_path / "data", chunk_type=np.float16)
    train, _ = training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=0)
    chunk = train.chunk(7)
    assert chunk.signal.dtype == np.float32
    assert np.array_equal(chunk.signal, arrays["chunks.npy"][7].astype(np.float32))


def test_indices_pick_and_order_the_rows_as_in_bonito(tmp_path: Path) -> None:
    """Bonito's loader keeps indices.npy's rows in its order, drops those past the end, then splits the tail."""
    write_bonito_data(tmp_path / "data")
    np.save(tmp_path / "data" / "indices.npy", np.array([5, 17, 2, 40, 11, 0, 3, 8, 9, 12, 13, 14, 15, 25]))
    train, valid = training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=4)
    assert list(train.rows) == [5, 17, 2, 11, 0, 3, 8, 9, 12, 13, 14] and list(valid.rows) == [15]
    assert {int(c.read_id.split(":")[1]) for c in train.chunks(step=0, n=64)} <= set(train.rows)
    np.save(tmp_path / "data" / "indices.npy", np.array([20, 21]))
    with pytest.raises(EdgecallError, match="indices.npy names none of its rows"):
        training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=4)


def test_a_validation_folder_is_used_when_present(tmp_path: Path) -> None:
    write_bonito_data(tmp_path / "data")
    write_bonito_data(tmp_path / "data" / "validation", rows=6, seed=1)
    train, valid = training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=4)
    assert len(train.rows) == 20 and valid.data.folder.name == "validation" and len(valid.rows) == 4


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "references.npy").unlink(), "not Bonito training data (missing references.npy)"),
    (lambda d: np.save(d / "reference_lengths.npy", np.full(3, 10)), "20 chunks, 20 references and 3 lengths"),
    (lambda d: np.save(d / "chunks.npy", np.zeros((20, 1000))), "expected float32"),
    (lambda d: np.save(d / "reference_lengths.npy", np.full(20, 99)), "lengths outside 0..64"),
    (lambda d: np.save(d / "references.npy", np.ones((20, 64), np.float32)), "expected integer codes"),
    (lambda d: np.save(d / "indices.npy", np.array([1.5])), "indices.npy: expected integer row numbers"),
    (lambda d: np.save(d / "references.npy", _with(np.load(d / "references.npy"), (13, 2), 5)),
     "references.npy: row 13 has code 5 at base 2, within its length"),
])
def test_bad_folders_get_one_line(tmp_path: Path, damage, message: str) -> None:  # noqa: ANN001
    write_bonito_data(tmp_path / "data")
    damage(tmp_path / "data")
    with pytest.raises(EdgecallError, match=re.escape(message)):
        training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=4)


def _with(array: np.ndarray, where: tuple[int, int], value: float) -> np.ndarray:
    array[where] = value
    return array


def test_codes_past_a_rows_length_are_padding_and_a_broken_chunk_is_named(tmp_path: Path) -> None:
    arrays = write_bonito_data(tmp_path / "data")
    references, lengths = arrays["references.npy"], arrays["reference_lengths.npy"]
    references[3, lengths[3]:] = 7  # past the length: never read, as in Bonito
    np.save(tmp_path / "data" / "references.npy", references)
    np.save(tmp_path / "data" / "chunks.npy", _with(arrays["chunks.npy"], (5, 10), np.nan))
    train, _ = training_and_validation(tmp_path / "data", None, CONFIG, 1000, valid_chunks=0)
    assert np.array_equal(train.chunk(3).targets, references[3, :lengths[3]])
    with pytest.raises(EdgecallError, match="chunks.npy: row 5 has samples that are not finite numbers"):
        train.chunk(5)


def test_codes_are_checked_block_by_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecall.train import bonito_data

    monkeypatch.setattr(bonito_data, "SCAN_ROWS", 4)
    arrays = write_bonito_data(tmp_path / "data")
    np.save(tmp_path / "data" / "references.npy", _with(arrays["references.npy"], (17, 0), 0))
    with pytest.raises(EdgecallError, match="row 17 has code 0 at base 0"):
        open_bonito_data(tmp_path / "data")


R10_5KHZ = ModelConfig(encoder=CONFIG.encoder, chemistry="dna_r10.4.1_e8.2_400bps", sample_rate=5000)


@pytest.mark.parametrize(("recorded", "model", "refused"), [
    (4000 / 450, CONFIG, False),  # R9.4.1 data, an R9.4.1 model
    (5000 / 400, R10_5KHZ, False),
    (4000 / 450, R10_5KHZ, True),  # R9.4.1 data for an R10.4.1 model
    (4000 / 400, R10_5KHZ, True),  # R10.4.1 data at 4 kHz for a 5 kHz model: Bonito chunks are never resampled
    (5000 / 260, R10_5KHZ, True),  # 260 bps data for a 400 bps model
])
def test_data_of_another_speed_or_rate_is_refused(tmp_path: Path, recorded: float, model: ModelConfig,
                                                  refused: bool) -> None:
    write_bonito_data(tmp_path / "data", rows=200, chunksize=1200, samples_per_base=recorded)
    if not refused:
        training_and_validation(tmp_path / "data", None, model, 1200, valid_chunks=4)
        return
    with pytest.raises(EdgecallError, match=r"carry (\S+) samples a base \(median of 200 rows\), but model .* expects "
                                            r"about 12.5: .*--no-check-data-speed") as refusal:
        training_and_validation(tmp_path / "data", None, model, 1200, valid_chunks=4)
    assert float(re.search(r"carry (\S+) samples", str(refusal.value))[1]) == pytest.approx(recorded, rel=0.05)
    training_and_validation(tmp_path / "data", None, model, 1200, valid_chunks=4, check_data_speed=False)


def test_chunksize_must_match_the_data(tmp_path: Path) -> None:
    write_bonito_data(tmp_path / "data")
    with pytest.raises(EdgecallError, match="give --chunksize 1000"):
        training_and_validation(tmp_path / "data", None, CONFIG, 2000, valid_chunks=0)
