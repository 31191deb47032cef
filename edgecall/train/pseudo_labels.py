"""Real reads labelled with another basecaller's calls (pseudo-labels, i.e. distillation).

Why: simulated signal is only as real as its pore model; real R9.4.1 reads
teach the noise, drift and context the simulator lacks, but their truth is
unknown. Here the labels are another model's calls with move tables, e.g.
``edgecall run --emit-moves --emit-summary calls.tsv --model deepnano-blitz-w96
READS > calls.fastq``, so they carry that model's errors (DeepNano-blitz w96
calls R9.4.1 at roughly 0.9 identity): a model trained on them learns its
teacher's mistakes too. Measure on truth (simulated validation, the lambda dev
set), never on these labels.

A called base sits at sample ``caller_trim + frame * stride`` of the raw read:
the move table covers the caller's trimmed signal (the summary TSV's
``trimmed_samples``, or recomputed with signal.prepare and the caller's own
normalisation config, which is deterministic); the right-aligned last chunk of
a read moves that by less than one stride. Measured on 30 simulated reads
called by deepnano-blitz-w96, that position lies a median 0 samples from the
base's true first sample (5th-95th percentile -7..+10, a base is ~9 samples),
so windows are cut exactly as for simulated reads, with bases that may be one
off at the window edges. The training model's own trim is then applied.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecall.config import ModelConfig, NormalisationConfig
from edgecall.errors import EdgecallError, exact_div
from edgecall.runtime.read import Read, ReadFailure
from edgecall.runtime.readers import find_inputs, iter_reads
from edgecall.runtime.signal import prepare
from edgecall.train.data import (
    DEV_SET, MAX_ATTEMPTS, TRAIN_STREAM, Chunk, codes, cut_window, dev_set_read_ids, other_pore, refuse_dev_set,
)

MIN_QSCORE = 7.0  # DeepNano-blitz w96 mean Q: R9.4.1 reads 9-13 here, R10.4 reads (wrong chemistry) 5.3-5.7


@dataclass(frozen=True)
class RealReads:
    """Where real reads and their calls are; see the module doc for what the labels are."""

    paths: tuple[Path, ...]  # pod5/fast5 files or folders (searched recursively)
    calls: tuple[Path, ...]  # FASTQs with mv:B:c move tables (edgecall run --emit-moves), plain or gzip
    summaries: tuple[Path, ...] = ()  # those runs' --emit-summary TSVs (trimmed_samples); none: recompute trims
    caller: str | None = None  # package that made the calls (name or folder); None: the one in each RG tag
    min_qscore: float = MIN_QSCORE  # leave out reads whose mean call Q (qs:f) is below this


@dataclass(frozen=True, eq=False)
class LabelledRead:
    read_id: str
    signal: np.ndarray  # (samples,) float32, prepared with the training model's normalisation and trim
    trimmed: int  # samples that trim dropped from the raw read
    positions: np.ndarray  # (bases,) int64 sample index in ``signal`` of each called base, increasing
    bases: np.ndarray  # (bases,) int64 1..4


@dataclass(frozen=True, eq=False)
class Call:
    sequence: str  # called bases
    frames: np.ndarray  # (bases,) int64 frame of each base in the caller's trimmed signal
    stride: int  # samples per frame (the mv tag's first value)
    model: str  # caller's model name, from the RG tag (run id + "_" + model)
    mean_qscore: float  # qs:f


def read_calls(path: Path) -> dict[str, Call]:
    """read id -> call, from a FASTQ whose records carry mv:B:c move tables."""
    refuse_dev_set(path)
    try:
        data = Path(path).read_bytes()
        lines = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("ascii").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise EdgecallError(f"{path}: cannot read the calls FASTQ ({exc})") from None
    calls: dict[str, Call] = {}
    for i in range(0, len(lines) - 3, 4):
        header, sequence = lines[i], lines[i + 1]
        fields = header[1:].split("\t")
        tags = {f[:2]: f[5:] for f in fields[1:] if len(f) > 5 and f[2] == ":"}
        if not header.startswith("@") or "mv" not in tags:
            raise EdgecallError(f"{path}: record {i // 4 + 1} has no mv:B:c move table (call with --emit-moves)")
        _, stride, *moves = tags["mv"].split(",")  # mv:B:c,stride,move,move,...
        frames = np.flatnonzero(np.asarray(moves, dtype=np.int64))
        if frames.size != len(sequence):
            raise EdgecallError(f"{path}: read {fields[0]}: {frames.size} moves for {len(sequence)} bases")
        calls[fields[0]] = Call(sequence, frames, int(stride),
                                tags.get("RG", "_").split("_", 1)[-1], float(tags.get("qs", "nan")))
    return calls


def _summary_trims(path: Path) -> dict[str, int]:
    try:
        header, *rows = [line.split("\t") for line in Path(path).read_text().splitlines()]
        column, key = header.index("trimmed_samples"), header.index("read_id")
        return {row[key]: int(row[column]) for row in rows if row[column].isdigit()}
    except (OSError, ValueError, IndexError) as exc:
        raise EdgecallError(f"{path}: not an edgecall summary TSV with trimmed_samples ({exc})") from None


def _caller_normalisation(name: str) -> NormalisationConfig:
    from edgecall.package import load_package

    try:
        return load_package(name).config.normalisation
    except EdgecallError as exc:
        raise EdgecallError(f"cannot tell how the called reads were trimmed before calling ({exc}); "
                            "give the calling run's --emit-summary TSV or its model") from None


def load_pseudo_labelled(options: RealReads, config: ModelConfig) -> tuple[list[LabelledRead], dict[str, int]]:
    """Prepared reads with their called bases' positions, and a count of reads left out per reason."""
    files = find_inputs(list(options.paths), recursive=True)
    for path in [*options.paths, *files]:
        refuse_dev_set(path)
    calls = {read_id: call for path in options.calls for read_id, call in read_calls(path).items()}
    trims = {k: v for path in options.summaries for k, v in _summary_trims(path).items()} if options.summaries else None
    banned = dev_set_read_ids()
    norms: dict[str, NormalisationConfig] = {}
    reads: dict[str, LabelledRead] = {}
    skipped: dict[str, int] = {}
    for item in iter_reads(files, read_ids=set(calls)):
        reason = _skip_reason(item, config, calls, trims, options.min_qscore, reads)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        assert isinstance(item, Read)
        if item.read_id in banned:
            raise EdgecallError(f"{item.source}: read {item.read_id} is in the accuracy dev set ({DEV_SET}); "
                                "never train on it")
        call = calls[item.read_id]
        if trims is not None:
            caller_trim = trims[item.read_id]
        else:
            name = options.caller or call.model
            norms.setdefault(name, _caller_normalisation(name))
            caller_trim = prepare(item, norms[name])[1]
        signal, trimmed = prepare(item, config.normalisation)
        positions = caller_trim + call.frames * call.stride - trimmed
        keep = positions >= 0  # bases the training trim cut away are not in the signal
        reads[item.read_id] = LabelledRead(item.read_id, signal, trimmed, positions[keep], codes(call.sequence)[keep])
    return list(reads.values()), skipped


def _skip_reason(item: Read | ReadFailure, config: ModelConfig, calls: dict[str, Call], trims: dict[str, int] | None,
                 min_qscore: float, done: dict[str, LabelledRead]) -> str:
    if isinstance(item, ReadFailure):
        return "unreadable"
    if item.read_id in done:
        return "duplicate read id"
    if wrong := other_pore(item, config):
        return wrong
    if item.sample_rate != config.sample_rate:
        return f"sampled at {item.sample_rate} Hz, not {config.sample_rate}"
    if trims is not None and item.read_id not in trims:
        return "not in the summary TSV"
    if calls[item.read_id].mean_qscore < min_qscore:
        return f"mean call Q below {min_qscore:g}"
    return "" if set(calls[item.read_id].sequence) <= set("ACGT") else "bases other than ACGT in the call"


@dataclass(frozen=True)
class Augmentation:
    """Random changes to each real chunk, so that a few real reads teach the chemistry's signal rather
    than their own: with ~200 kb of labelled R10.4.1 sequence a model called its training reads at 0.915
    identity and the dev reads at 0.736 (train-runs/README.md, r1041-v2).

    Each is drawn uniformly per chunk, in normalised units: ``speed`` stretches time (a window of
    chunksize * f samples, f in [1 - speed, 1 + speed], linearly resampled to chunksize: translocation
    speed varies between reads and pores), ``gain`` and ``offset`` the level (x * (1 +- gain) +-
    offset: normalisation never matches exactly), ``noise`` the standard deviation of added white noise
    (up to it)."""

    speed: float = 0.1
    gain: float = 0.1
    offset: float = 0.1
    noise: float = 0.1

    def __post_init__(self) -> None:
        if not (0.0 <= self.speed < 0.5 and self.gain >= 0.0 and self.offset >= 0.0 and self.noise >= 0.0):
            raise EdgecallError(f"augmentation needs 0 <= speed < 0.5 and gain, offset, noise >= 0, got {self}")

    def window(self, rng: np.random.Generator, chunksize: int) -> int:
        """Samples of the read one chunk covers (drawn before the window's start)."""
        return max(1, round(chunksize * rng.uniform(1.0 - self.speed, 1.0 + self.speed))) if self.speed else chunksize

    def apply(self, rng: np.random.Generator, signal: np.ndarray, chunksize: int) -> np.ndarray:
        """``signal`` (one window) resampled to ``chunksize`` samples, scaled, shifted and noised."""
        if signal.size != chunksize:
            signal = np.interp(np.arange(chunksize) * (signal.size / chunksize), np.arange(signal.size), signal)
        gain = 1.0 + rng.uniform(-self.gain, self.gain)
        noise = rng.normal(0.0, rng.uniform(0.0, self.noise), chunksize) if self.noise else 0.0
        return (signal * gain + rng.uniform(-self.offset, self.offset) + noise).astype(np.float32)


class PseudoLabelledSource:
    """Chunks of labelled real reads, picked by usable length: pseudo-labels, or reference labels
    (:mod:`edgecall.train.aligned`, ``stream_tag`` 2, so the two sources never draw the same numbers);
    ``augment`` changes each chunk at random (:class:`Augmentation`)."""

    def __init__(self, reads: Sequence[LabelledRead], config: ModelConfig, chunksize: int, *, seed: int = 0,
                 stream: int = TRAIN_STREAM, stream_tag: int = 1, augment: Augmentation | None = None) -> None:
        exact_div(chunksize, config.stride, "training chunksize vs model stride")
        self.config, self.chunksize, self.seed, self.stream, self.tag = config, chunksize, seed, stream, stream_tag
        self.augment = augment
        widest = int(np.ceil(chunksize * (1.0 + augment.speed))) if augment else chunksize
        self.reads, spans = [], []
        for read in reads:  # a window (the widest a stretch may draw) lies within the called stretch of its read
            if not read.positions.size:
                continue
            span = min(int(read.positions[-1]) + 1, read.signal.size) - widest - int(read.positions[0]) + 1
            if span > 0:
                self.reads.append(read)
                spans.append(span)
        if not self.reads:
            raise EdgecallError(f"no labelled real read has {chunksize} samples of called bases")
        self.spans = np.array(spans, np.int64)
        self.weights = self.spans / self.spans.sum()

    def chunks(self, step: int, n: int) -> list[Chunk]:
        out = []
        for index in range(n):
            for attempt in range(MAX_ATTEMPTS):
                rng = np.random.default_rng([self.seed, self.stream, step, index, attempt, self.tag])
                pick = int(rng.choice(len(self.reads), p=self.weights))
                read = self.reads[pick]
                start = int(read.positions[0]) + int(rng.integers(0, self.spans[pick]))
                width = self.augment.window(rng, self.chunksize) if self.augment is not None else None
                cut = cut_window(read.signal, read.positions, read.bases, start, self.chunksize, self.config, width)
                if cut is not None:
                    signal = cut[0] if self.augment is None else self.augment.apply(rng, cut[0], self.chunksize)
                    out.append(Chunk(signal, cut[1], read.read_id, start, read.trimmed))
                    break
            else:
                raise EdgecallError(f"step {step}: no real chunk of {self.chunksize} samples "
                                    f"fits the CRF in {MAX_ATTEMPTS} draws")
        return out
