"""Bonito-format training data: ``chunks.npy``, ``references.npy``, ``reference_lengths.npy``.

What ``bonito download --training`` fetches and ``bonito basecaller --save-ctc
--reference`` writes: chunks (N, chunksize), already normalised, float32 or the
float16 that ``--save-ctc`` writes; references (N, L), 1-4 = ACGT, zero-padded
(uint8 as Bonito writes them); lengths (N,). The arrays are memory-mapped, never
loaded whole (ONT's sets are tens of GB). An ``indices.npy`` beside them picks
and orders the rows, as in Bonito's loader (entries past the last row are
dropped). The validation split is Bonito's: a ``validation/`` subfolder of the
same layout if there is one (or ``--valid-data``), else the last
``valid_chunks`` of the rows, which training then never draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError
from edgecall.train.data import Chunk

FILES = ("chunks.npy", "references.npy", "reference_lengths.npy")
INDICES = "indices.npy"
SCAN_ROWS = 1 << 13  # rows of references checked at a time: tens of MB of masks at 1,000-2,000 bases a row
SPEED_TOLERANCE = 1.15  # how far a set's median samples per base may lie from the model's (R10.4.1 4 vs 5 kHz: 1.25)
SPEED_ROWS = 10_000  # rows whose lengths give that median, spread over the set
MIN_SPEED_ROWS = 32  # fewer rows than this: too few to tell (a test set), not checked
VALIDATION_DIR = "validation"


@dataclass(frozen=True)
class BonitoArrays:
    """The three arrays of one folder, memory-mapped and checked against each other."""

    folder: Path
    chunks: np.ndarray  # (N, T) float32 or float16
    references: np.ndarray  # (N, L) integer, uint8 as Bonito writes them
    lengths: np.ndarray  # (N,) integer
    order: np.ndarray | None = None  # the rows to use, in order (indices.npy); None: all of them

    @property
    def rows(self) -> int:
        return int(self.chunks.shape[0])

    def usable_rows(self) -> np.ndarray | range:
        return self.order if self.order is not None else range(self.rows)

    @property
    def chunksize(self) -> int:
        return int(self.chunks.shape[1])


def open_bonito_data(folder: Path) -> BonitoArrays:
    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise EdgecallError(f"{folder}: not Bonito training data (missing {', '.join(missing)})")
    try:
        chunks, references, lengths = (np.load(folder / name, mmap_mode="r", allow_pickle=False) for name in FILES)
    except ValueError as exc:
        raise EdgecallError(f"{folder}: unreadable training arrays ({exc})") from None
    if chunks.ndim != 2 or chunks.dtype not in (np.float32, np.float16):
        raise EdgecallError(f"{folder}/chunks.npy: expected float32 or float16 (N, chunksize), "
                            f"got {chunks.dtype} {chunks.shape}")
    if references.ndim != 2 or not np.issubdtype(references.dtype, np.integer):
        raise EdgecallError(f"{folder}/references.npy: expected integer codes (N, L), got {references.dtype} "
                            f"{references.shape}")
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise EdgecallError(f"{folder}/reference_lengths.npy: expected integer (N,), got {lengths.dtype} {lengths.shape}")
    if not chunks.shape[0] == references.shape[0] == lengths.shape[0]:
        raise EdgecallError(f"{folder}: {chunks.shape[0]} chunks, {references.shape[0]} references and "
                            f"{lengths.shape[0]} lengths: the arrays do not belong together")
    if lengths.size and (int(lengths.max()) > references.shape[1] or int(lengths.min()) < 0):
        raise EdgecallError(f"{folder}/reference_lengths.npy: lengths outside 0..{references.shape[1]}")
    _check_codes(folder, references, lengths)
    return BonitoArrays(folder, chunks, references, lengths, _row_order(folder, chunks.shape[0]))


def _check_codes(folder: Path, references: np.ndarray, lengths: np.ndarray) -> None:
    """Every base within its row's length is a code 1-4, checked once when the folder opens rather than when a
    bad row is first drawn, hours into a run. The references are a small part of a set (uint8 bases against
    float samples), read block by block."""
    columns = np.arange(references.shape[1])
    for start in range(0, references.shape[0], SCAN_ROWS):
        block = np.asarray(references[start:start + SCAN_ROWS])
        used = columns[None, :] < np.asarray(lengths[start:start + SCAN_ROWS])[:, None]
        bad = used & ((block < 1) | (block > 4))
        if bad.any():
            row, column = (int(i) for i in np.argwhere(bad)[0])
            raise EdgecallError(f"{folder}/references.npy: row {start + row} has code {block[row, column]} at base "
                                f"{column}, within its length {int(lengths[start + row])}; bases are 1-4 (ACGT)")


def _row_order(folder: Path, rows: int) -> np.ndarray | None:
    """Bonito's ``indices.npy``: the rows to train on, in order; entries past the last row are dropped as
    Bonito drops them, so one index file can serve a folder cut short."""
    path = folder / INDICES
    if not path.is_file():
        return None
    try:
        order = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise EdgecallError(f"{path}: unreadable ({exc})") from None
    if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer):
        raise EdgecallError(f"{path}: expected integer row numbers (K,), got {order.dtype} {order.shape}")
    if order.size and int(order.min()) < 0:
        raise EdgecallError(f"{path}: negative row numbers")
    return np.ascontiguousarray(order[order < rows], dtype=np.int64)


class BonitoSource:
    """Chunks drawn from Bonito arrays: chunk i of step s is row perm(s, i), a function of (seed, s, i) alone."""

    def __init__(self, data: BonitoArrays, config: ModelConfig, chunksize: int, *,
                 rows: range | np.ndarray | None = None, seed: int = 0) -> None:
        if data.chunksize != chunksize:
            raise EdgecallError(f"{data.folder}: chunks of {data.chunksize} samples, but the run uses --chunksize "
                                f"{chunksize}; give --chunksize {data.chunksize}")
        config.frames(chunksize)  # stride-aligned, or one clear line
        self.data, self.config, self.seed = data, config, seed
        self.rows = rows if rows is not None else data.usable_rows()
        if len(self.rows) == 0:
            empty_index = data.order is not None and data.order.size == 0
            raise EdgecallError(f"{data.folder}: no training chunks left "
                                + (f"({INDICES} names none of its rows)" if empty_index else "after the validation split"))

    def chunk(self, row: int) -> Chunk:
        length = int(self.data.lengths[row])
        targets = np.asarray(self.data.references[row, :length], dtype=np.int64)  # codes checked at open
        signal = np.array(self.data.chunks[row], dtype=np.float32)  # a copy: the map stays read-only
        if not np.isfinite(signal).all():  # too costly to scan tens of GB at open; one clear line, not a nan loss
            raise EdgecallError(f"{self.data.folder}/chunks.npy: row {row} has samples that are not finite numbers")
        return Chunk(signal, targets, f"{self.data.folder.name}:{row}", 0, 0)

    def chunks(self, step: int, n: int) -> list[Chunk]:
        out = []
        for i in range(n):
            pick = np.random.default_rng((self.seed, step, i)).integers(len(self.rows))
            out.append(self.chunk(int(self.rows[int(pick)])))
        return out

    def all_chunks(self) -> list[Chunk]:
        return [self.chunk(int(row)) for row in self.rows]


def samples_per_base(config: ModelConfig) -> float | None:
    """What the model's chemistry puts under one base: its rate over its speed (the name's ``_400bps``, else the
    pore's, e.g. 450 bases/s for R9.4.1); None where the speed is unknown (RNA)."""
    from edgecall.chemistry import pore, speed
    from edgecall.train.chemistry import CHEMISTRIES

    named = speed(config.chemistry)
    if named:
        return config.sample_rate / named
    known = CHEMISTRIES.get(pore(config.chemistry) or "")
    return known.dwell_mean(config.sample_rate) if known else None


def check_speed(data: BonitoArrays, config: ModelConfig) -> None:
    """Bonito data carry no run info, but their bases per chunk tell the sample rate and translocation speed they
    were recorded at: R9.4.1 data (8.9 samples a base), 4 kHz R10.4.1 (10) or 260 bps data (15.4) would teach a
    5 kHz 400 bps model (12.5) the wrong dwell, and nothing downstream would say so."""
    expected = samples_per_base(config)
    rows = data.usable_rows()
    if expected is None or len(rows) < MIN_SPEED_ROWS:
        return
    spread = np.linspace(0, len(rows) - 1, min(len(rows), SPEED_ROWS)).astype(np.int64)
    lengths = np.asarray(data.lengths[np.asarray(rows)[spread]], dtype=np.float64)
    lengths = lengths[lengths > 0]
    if lengths.size < MIN_SPEED_ROWS:
        return
    found = float(np.median(data.chunksize / lengths))
    if not 1 / SPEED_TOLERANCE <= found / expected <= SPEED_TOLERANCE:
        raise EdgecallError(
            f"{data.folder}: its chunks carry {found:.1f} samples a base (median of {lengths.size:,} rows), but model "
            f"{config.name} ({config.chemistry} at {config.sample_rate} Hz) expects about {expected:.1f}: data of "
            "another chemistry, speed or sample rate would train it wrong. If the data are right, give "
            "--no-check-data-speed")


def training_and_validation(folder: Path, valid_folder: Path | None, config: ModelConfig, chunksize: int,
                            valid_chunks: int, seed: int = 0,
                            check_data_speed: bool = True) -> tuple[BonitoSource, BonitoSource | None]:
    """Bonito's split: a separate validation folder when there is one, else the last rows held out."""
    data = open_bonito_data(folder)
    if check_data_speed:
        check_speed(data, config)
    valid_folder = valid_folder or (folder / VALIDATION_DIR if (folder / VALIDATION_DIR).is_dir() else None)
    if valid_folder is not None:
        valid = open_bonito_data(valid_folder)
        if check_data_speed:
            check_speed(valid, config)
        rows = valid.usable_rows()[:valid_chunks] if valid_chunks else range(0)
        return BonitoSource(data, config, chunksize, seed=seed), (
            BonitoSource(valid, config, chunksize, rows=rows) if len(rows) else None)
    usable = data.usable_rows()
    held = min(valid_chunks, len(usable) // 10) if valid_chunks else 0
    train = BonitoSource(data, config, chunksize, rows=usable[:len(usable) - held], seed=seed)
    return train, BonitoSource(data, config, chunksize, rows=usable[len(usable) - held:]) if held else None
