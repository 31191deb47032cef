"""Bonito-format training data: ``chunks.npy``, ``references.npy``, ``reference_lengths.npy``.

What ``bonito download --training`` fetches and ``bonito basecaller --save-ctc
--reference`` writes: chunks float32 (N, chunksize), already normalised;
references uint8 (N, L), 1-4 = ACGT, zero-padded; lengths (N,). The arrays are
memory-mapped, never loaded whole (ONT's sets are tens of GB). The validation
split is Bonito's: a ``validation/`` subfolder of the same layout if there is
one (or ``--valid-data``), else the last ``valid_chunks`` rows, which training
then never draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError
from edgecall.train.data import Chunk

FILES = ("chunks.npy", "references.npy", "reference_lengths.npy")
VALIDATION_DIR = "validation"


@dataclass(frozen=True)
class BonitoArrays:
    """The three arrays of one folder, memory-mapped and checked against each other."""

    folder: Path
    chunks: np.ndarray  # (N, T) float32
    references: np.ndarray  # (N, L) uint8
    lengths: np.ndarray  # (N,) integer

    @property
    def rows(self) -> int:
        return int(self.chunks.shape[0])

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
    if chunks.ndim != 2 or chunks.dtype != np.float32:
        raise EdgecallError(f"{folder}/chunks.npy: expected float32 (N, chunksize), got {chunks.dtype} {chunks.shape}")
    if references.ndim != 2 or references.dtype != np.uint8:
        raise EdgecallError(f"{folder}/references.npy: expected uint8 (N, L), got {references.dtype} {references.shape}")
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise EdgecallError(f"{folder}/reference_lengths.npy: expected integer (N,), got {lengths.dtype} {lengths.shape}")
    if not chunks.shape[0] == references.shape[0] == lengths.shape[0]:
        raise EdgecallError(f"{folder}: {chunks.shape[0]} chunks, {references.shape[0]} references and "
                            f"{lengths.shape[0]} lengths: the arrays do not belong together")
    if lengths.size and (int(lengths.max()) > references.shape[1] or int(lengths.min()) < 0):
        raise EdgecallError(f"{folder}/reference_lengths.npy: lengths outside 0..{references.shape[1]}")
    return BonitoArrays(folder, chunks, references, lengths)


class BonitoSource:
    """Chunks drawn from Bonito arrays: chunk i of step s is row perm(s, i), a function of (seed, s, i) alone."""

    def __init__(self, data: BonitoArrays, config: ModelConfig, chunksize: int, *, rows: range | None = None,
                 seed: int = 0) -> None:
        if data.chunksize != chunksize:
            raise EdgecallError(f"{data.folder}: chunks of {data.chunksize} samples, but the run uses --chunksize "
                                f"{chunksize}; give --chunksize {data.chunksize}")
        config.frames(chunksize)  # stride-aligned, or one clear line
        self.data, self.config, self.seed = data, config, seed
        self.rows = rows if rows is not None else range(data.rows)
        if len(self.rows) == 0:
            raise EdgecallError(f"{data.folder}: no training chunks left after the validation split")

    def chunk(self, row: int) -> Chunk:
        length = int(self.data.lengths[row])
        targets = np.asarray(self.data.references[row, :length], dtype=np.int64)
        if targets.size and (targets.min() < 1 or targets.max() > 4):
            raise EdgecallError(f"{self.data.folder}/references.npy: row {row} has codes outside 1-4 within its length")
        signal = np.array(self.data.chunks[row], dtype=np.float32)  # a copy: the map stays read-only
        return Chunk(signal, targets, f"{self.data.folder.name}:{row}", 0, 0)

    def chunks(self, step: int, n: int) -> list[Chunk]:
        out = []
        for i in range(n):
            pick = np.random.default_rng((self.seed, step, i)).integers(len(self.rows))
            out.append(self.chunk(self.rows[int(pick)]))
        return out

    def all_chunks(self) -> list[Chunk]:
        return [self.chunk(row) for row in self.rows]


def training_and_validation(folder: Path, valid_folder: Path | None, config: ModelConfig, chunksize: int,
                            valid_chunks: int, seed: int = 0) -> tuple[BonitoSource, BonitoSource | None]:
    """Bonito's split: a separate validation folder when there is one, else the last rows held out."""
    data = open_bonito_data(folder)
    valid_folder = valid_folder or (folder / VALIDATION_DIR if (folder / VALIDATION_DIR).is_dir() else None)
    if valid_folder is not None:
        valid = open_bonito_data(valid_folder)
        rows = range(min(valid_chunks, valid.rows)) if valid_chunks else range(0)
        return BonitoSource(data, config, chunksize, seed=seed), (
            BonitoSource(valid, config, chunksize, rows=rows) if len(rows) else None)
    held = min(valid_chunks, data.rows // 10) if valid_chunks else 0
    train = BonitoSource(data, config, chunksize, rows=range(data.rows - held), seed=seed)
    return train, BonitoSource(data, config, chunksize, rows=range(data.rows - held, data.rows)) if held else None
