"""Training batches for :func:`edgecall.train.loop.train`: simulated chunks, and a mixer of sources.

Why this shape: the loop asks for ``data(step) -> batch`` and keeps no iterator
state, so every chunk is a pure function of (seed, stream, step, index): a run
resumed at step k sees exactly the batches a straight run would have.
Training and validation use different streams, so they never share a seed.

Every chunk goes through the runtime's own preprocessing: a whole
:class:`~edgecall.runtime.read.Read` is normalised and trimmed by
:func:`edgecall.runtime.signal.prepare` with the model config's normalisation,
exactly as ``edgecall run`` does, and the window is cut from that (STYLE.md
item 9; ``tests/test_train_data.py`` proves the parity through a pod5 file).
Targets are the bases whose first sample lies in the window, as 1..4 (A, C, G,
T). A chunk is redrawn (deterministically) unless the CRF can spell its target:
at least ``state_len`` bases and at most ``frames + state_len``.

Simulated chunks (:class:`SimulatedSource`, exact truth): a read of
``read_chunks`` chunks' worth of bases (from a reference or, for
``random_fraction`` of chunks, uniform random sequence) is simulated with its
open pore, adapter stall and leader, prepared whole, and a window is cut that
starts at or after the first true base (the leader is not in the truth).
Real reads with another basecaller's calls as labels: :mod:`edgecall.train.pseudo_labels`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError, exact_div
from edgecall.runtime.read import Read
from edgecall.runtime.signal import prepare
from edgecall.train.fasta import read_fasta
from edgecall.train.chemistry import default_kmer_model_path
from edgecall.train.kmer_model import KmerModel, load_kmer_model
from edgecall.train.simulate import SimulatedRead, SimulationOptions, simulate_reads

TRAIN_STREAM, VALIDATION_STREAM = 0, 1  # seed streams: validation chunks never share a seed with training
MAX_ATTEMPTS = 100  # redraws of a chunk whose target the CRF cannot spell
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # beside a source checkout
DEV_SET = "lambda_r941"  # R9.4.1 accuracy dev set (shared/data/accuracy/lambda_r941): measure on it, never train
# R10.4.1 accuracy dev set: pod5/remora/can_reads.pod5 (+ can_reads_ref_segments.fa), and its BAM
# r10/remora/can_mappings.bam; files are known by these name prefixes, copies by their read ids
R10_DEV_SET = ("can_reads", "can_mappings")
R10_DEV_TRUTH = Path("pod5") / "remora" / "can_reads_ref_segments.fa"
if TYPE_CHECKING:
    from edgecall.train.loop import Batch

_ACGT = np.frombuffer(b"ACGT", np.uint8)
_BASE_CODE = np.zeros(256, np.int64)  # ASCII -> 1..4 (A, C, G, T); anything else 0
_BASE_CODE[_ACGT] = np.arange(1, 5)


@dataclass(frozen=True, eq=False)
class Chunk:
    """One training example, cut from a prepared read."""

    signal: np.ndarray  # (chunksize,) float32, normalised exactly as the runtime would
    targets: np.ndarray  # (bases,) int64 1..4 (A, C, G, T), bases whose first sample is in the window
    read_id: str  # the read it came from
    start: int  # window's first sample in the prepared (trimmed) signal
    trimmed: int  # samples signal.prepare trimmed from the read's start


class ChunkSource(Protocol):
    def chunks(self, step: int, n: int) -> list[Chunk]:
        """Chunks 0..n-1 of ``step``; chunk i does not depend on n."""


def to_batch(chunks: Sequence[Chunk]) -> Batch:
    """(N, 1, T) float32 signal, (N, S) int64 targets zero-padded to the longest, (N,) int64 lengths."""
    import torch  # only here: preparing chunks needs numpy alone

    lengths = np.array([c.targets.size for c in chunks], np.int64)
    targets = np.zeros((len(chunks), int(lengths.max(initial=0))), np.int64)
    for row, chunk in zip(targets, chunks):
        row[: chunk.targets.size] = chunk.targets
    signal = np.stack([c.signal for c in chunks])[:, None, :].astype(np.float32, copy=False)
    return torch.from_numpy(signal), torch.from_numpy(targets), torch.from_numpy(lengths)


def cut_window(signal: np.ndarray, positions: np.ndarray, bases: np.ndarray, start: int, chunksize: int,
               config: ModelConfig, width: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(window, targets) with ``positions`` sorted sample indices of ``bases``; None if the CRF cannot fit it.

    ``width``: samples the window covers when it will be resampled to ``chunksize`` (augmentation);
    the targets must still fit the frames of ``chunksize``."""
    width = chunksize if width is None else width
    lo, hi = np.searchsorted(positions, [start, start + width])
    frames, state_len = config.frames(chunksize), config.state_len
    if not state_len <= hi - lo <= frames + state_len:
        return None
    return np.ascontiguousarray(signal[start : start + width]), bases[lo:hi]


def codes(sequence: str) -> np.ndarray:
    """ACGT -> (n,) int64 1..4."""
    return _BASE_CODE[np.frombuffer(sequence.encode("ascii"), np.uint8)]


# ---- simulated reads ------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedData:
    """How simulated chunks are drawn; override with dataclasses.replace."""

    random_fraction: float = 0.3  # share of chunks simulated from uniform random sequence, not a reference
    read_chunks: float = 2.0  # simulated read length in chunks: whole-read normalisation sees this much
    simulation: SimulationOptions = SimulationOptions()  # noise, dwell, drift; length and seed set per chunk
    seed: int = 0  # with (stream, step, index), fixes every chunk

    def __post_init__(self) -> None:
        if not 0.0 <= self.random_fraction <= 1.0 or self.read_chunks < 1.0:
            raise EdgecallError(f"need 0 <= random_fraction <= 1 and read_chunks >= 1, "
                                f"got {self.random_fraction} and {self.read_chunks}")


class SimulatedSource:
    """Chunks of simulated reads with their exact truth."""

    def __init__(self, config: ModelConfig, chunksize: int, references: dict[str, str],
                 options: SimulatedData = SimulatedData(), *, kmer_model: KmerModel | None = None,
                 stream: int = TRAIN_STREAM) -> None:
        exact_div(chunksize, config.stride, "training chunksize vs model stride")
        sim = options.simulation
        if config.sample_rate != sim.sample_rate:
            raise EdgecallError(f"the simulator makes {sim.sample_rate} Hz {sim.chemistry} reads; "
                                f"model '{config.name}' expects {config.sample_rate} Hz")
        self.config, self.chunksize, self.options, self.stream = config, chunksize, options, stream
        self.model = kmer_model or load_kmer_model(default_kmer_model_path(sim.chem))
        self.bases = math.ceil(options.read_chunks * chunksize / options.simulation.dwell_mean)
        self.stretches = [(name, m.group()) for name, seq in references.items()
                          for m in re.finditer(r"[ACGT]+", seq.upper()) if m.end() - m.start() >= self.bases]
        spans = np.array([len(s) - self.bases + 1 for _, s in self.stretches], np.float64)
        self.weights = spans / spans.sum() if spans.size else spans  # a stretch is picked in proportion to its starts

    def draw(self, step: int, index: int) -> tuple[SimulatedRead, Chunk]:
        """Chunk ``index`` of ``step`` and the simulated read it was cut from."""
        for attempt in range(MAX_ATTEMPTS):
            rng = np.random.default_rng([self.options.seed, self.stream, step, index, attempt])
            if not self.stretches or rng.random() < self.options.random_fraction:
                name, sequence = "random", _ACGT[rng.integers(0, 4, self.bases)].tobytes().decode()
            else:
                name, stretch = self.stretches[rng.choice(len(self.stretches), p=self.weights)]
                first = int(rng.integers(0, len(stretch) - self.bases + 1))
                name, sequence = f"{name}:{first}", stretch[first : first + self.bases]
            n = self.bases
            sim = replace(self.options.simulation, mean_length=n, min_length=n, max_length=n, length_sigma=0.0,
                          ambiguous="skip", seed=int(rng.integers(2**62)))
            read = next(simulate_reads({name: sequence}, 1, sim, self.model))
            signal, trimmed = prepare(runtime_read(read), self.config.normalisation)
            starts = read.base_starts[:-1] - trimmed  # base i's first sample in the prepared signal
            first_start, last_start = max(0, int(starts[0])), int(read.base_starts[-1]) - trimmed - self.chunksize
            if last_start < first_start:
                continue
            start = int(rng.integers(first_start, last_start + 1))
            cut = cut_window(signal, starts, codes(read.sequence), start, self.chunksize, self.config)
            if cut is not None:
                return read, Chunk(cut[0], cut[1], read.read_id, start, trimmed)
        raise EdgecallError(f"step {step}: no simulated chunk of {self.chunksize} samples "
                            f"fits the CRF in {MAX_ATTEMPTS} draws")

    def chunks(self, step: int, n: int) -> list[Chunk]:
        return [self.draw(step, index)[1] for index in range(n)]


def runtime_read(read: SimulatedRead) -> Read:
    """The simulated read as a reader would hand it to the runtime (same raw, offset and scale)."""
    return Read(read_id=read.read_id, raw=read.raw, offset=read.offset, scale=read.scale, sample_rate=read.sample_rate,
                channel=read.channel, start_time="", run_id=read.run_id, source=Path("<simulated>"))


def default_references() -> tuple[Path, ...]:
    """The shared references (phiX, monkeypox, a human chr4 stretch) beside a source checkout, else none."""
    folder = SHARED_DATA / "references"
    return tuple(sorted(p for p in folder.glob("*") if p.suffix in (".fa", ".fasta", ".fna"))) if folder.is_dir() else ()


def load_references(paths: Sequence[Path]) -> dict[str, str]:
    """Records of every FASTA; the dev set's genome is refused (it would leak into the accuracy test)."""
    records: dict[str, str] = {}
    for path in paths:
        refuse_dev_set(path)
        for name, sequence in read_fasta(path).items():
            if name in records:
                raise EdgecallError(f"{path}: record '{name}' also appears in an earlier reference")
            records[name] = sequence
    return records


def other_pore(read: Read, config: ModelConfig) -> str:
    """Why a real read may not train ``config``: its run info names another pore family (R9 against R10, DNA
    against RNA), whose signal would teach the model the wrong chemistry; '' if it may. Only the family: some
    public R10.4.1 reads carry R10.4 (FLO-PRO112) run info (data/MANIFEST.md), and unknown chemistry passes."""
    from edgecall.chemistry import pore, run_chemistry

    run = run_chemistry(read.run.flow_cell_product_code, read.run.sequencing_kit, read.sample_rate).pore
    model = pore(config.chemistry)
    if run is None or model is None or _pore_family(run) == _pore_family(model):
        return ""
    return f"another chemistry ({run.upper()} reads, {model.upper()} model)"


def _pore_family(name: str) -> str:
    return name.split(".")[0]  # r9.4.1 -> r9, r10.4.1 -> r10, rna004 -> rna004


def refuse_dev_set(path: Path) -> None:
    """The accuracy dev sets only measure models: training on them would make that measurement a lie."""
    resolved = Path(path).resolve()
    if any(DEV_SET in part for part in resolved.parts):
        raise EdgecallError(f"{path}: belongs to the accuracy dev set ({DEV_SET}); never train on it")
    if resolved.name.startswith(R10_DEV_SET):
        raise EdgecallError(f"{path}: belongs to the R10.4.1 accuracy dev set (pod5/remora/can_reads.pod5, "
                            "r10/remora/can_mappings.bam); never train on it")


def dev_set_read_ids() -> frozenset[str]:
    """Read ids of both dev sets (R9.4.1 fast5 names, R10.4.1 truth records), to refuse copies elsewhere."""
    folder = SHARED_DATA / "accuracy" / DEV_SET / "fast5"
    ids = {p.stem for p in folder.glob("*.fast5")} if folder.is_dir() else set()
    truth = SHARED_DATA / R10_DEV_TRUTH
    if truth.is_file():
        ids |= {line[1:].split()[0] for line in truth.read_text().splitlines() if line.startswith(">")}
    return frozenset(ids)


def dev_set_loci() -> tuple[tuple[str, int, int], ...]:
    """(contig, start, end) of the R10.4.1 dev reads' reference segments (their truth FASTA's ``ref=`` fields).

    Reads of the same genome stretch labelled with that reference would teach a
    model the very sequence the dev set is scored against (the lambda genome is
    refused for the same reason), so reference labels there are refused too.
    """
    truth = SHARED_DATA / R10_DEV_TRUTH
    loci = []
    if truth.is_file():
        for m in re.finditer(r"^>\S+.*?\bref=(\S+):(\d+)-(\d+)", truth.read_text(), flags=re.M):
            loci.append((m.group(1), int(m.group(2)), int(m.group(3))))
    return tuple(loci)


# ---- mixing -----------------------------------------------------------------------------------


class MixedSource:
    """``step -> batch`` for the loop: each source gives its share of every batch.

    A share that is not a whole number of chunks alternates between floor and
    ceiling from step to step (floor(f*B*(k+1)) - floor(f*B*k)), so the long-run
    share is exact and each step's split is a function of the step alone.
    """

    def __init__(self, parts: Sequence[tuple[ChunkSource, float]], batch_size: int) -> None:
        fractions = [f for _, f in parts]
        if not parts or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
            raise EdgecallError(f"source fractions must be >= 0 and add up to 1, got {fractions}")
        self.parts, self.batch_size = list(parts), batch_size

    def counts(self, step: int) -> list[int]:
        b = self.batch_size
        rest = [math.floor(f * b * (step + 1) + 1e-9) - math.floor(f * b * step + 1e-9) for _, f in self.parts[1:]]
        return [b - sum(rest), *rest]

    def __call__(self, step: int) -> Batch:
        return to_batch([c for (source, _), n in zip(self.parts, self.counts(step)) if n for c in source.chunks(step, n)])
