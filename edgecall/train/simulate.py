"""Simulated R9.4.1 and R10.4.1 reads: raw signal from a reference and a pore model, with the truth.

Why: tests and training need reads whose true sequence and per-base sample
boundaries are known exactly. A read is made in sequencing direction as

  open pore (~236 pA) | adapter stall (flat, near the read's median) |
  leader (random adapter-like bases) | the read's bases (the truth)

Base i's level is ``model[ext[i : i+k]]`` where ``ext`` holds ``centre`` bases
before the read (the leader's last bases) and ``k-1-centre`` after (the
reference, or random bases past its end); ``centre`` is the model's dominant
k-mer position (2 for the R9.4 6-mer, see :mod:`edgecall.train.kmer_model`).
Each event is level_mean + level_noise·level_stdv·N(0,1), each sample adds
noise·sd_mean·N(0,1); pA = scale·(that) + shift + a random-walk drift.

What differs by chemistry (pore model, speed, noise, calibration, run info)
is in :mod:`edgecall.train.chemistry`; ``SimulationOptions.for_chemistry`` gives
a chemistry's fitted defaults at a sample rate. The figures below are R9.4.1's.

Calibration (real R9.4.1 reads): per-read scale/shift give median ~82 pA,
MAD-stdev ~15 pA, IQR ~20 pA as on models/deepnano-blitz/test_sample (82.1,
15.0, 20.3) and accuracy/lambda_r941 (82, 15.2, 20.6). Dwells (samples per
base) are 1 + speed·lognormal(sigma 0.75) + a rare stall, mean ``dwell_mean``:
this matches the quantiles of tombo's per-base segmentation stored in the
lambda fast5s (median 7, p95 ~22, p99 ~37 at 8.9 samples/base; a gamma had too
many 1-2 sample bases). level_noise is 0.4, not 1: level_stdv also holds
context beyond the 6-mer, which is deterministic on real reads; at 0.4 the
DeepNano-blitz w64 model calls simulated phiX reads at 0.89 identity, as it
calls real lambda reads (0.89); at 1.0, 0.77.

Non-ACGT reference bases: ``ambiguous="skip"`` (default) draws reads only from
ACGT stretches, so the truth is always the reference at its coordinates;
``"replace"`` swaps each for a seeded random base first (the truth then holds
the replacement there). Read i depends only on (seed, i): same seed, same reads.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from edgecall.errors import EdgecallError
from edgecall.train.chemistry import R941, Chemistry, chemistry, default_kmer_model_path
from edgecall.train.fasta import FastaWriter
from edgecall.train.kmer_model import KmerModel, encode, load_kmer_model

SAMPLE_RATE = R941.sample_rates[0]  # Hz, R9.4.1 (the default chemistry)
BASES_PER_SECOND = R941.bases_per_second  # R9.4.1 translocation speed
DWELL_MEAN = SAMPLE_RATE / BASES_PER_SECOND  # 8.89 samples per base
# R9.4.1's calibration: that of a real R9.4.1 GridION run (accuracy/lambda_r941/lambda_r941.pod5, read
# 080fbbfd...; hard-coded, never read at run time): the scale is the same on every read; offsets differ
# per channel, -4..18 in those 50 reads (adc -4096..4095; open pore 235-237 pA; per-read scale 0.98 +- 0.04
# on the model's levels and shift -7.2 +- 3 pA match MAD ~15 pA and median ~82 pA).
CALIBRATION_SCALE = R941.calibration_scale  # pA per DAC unit
CHANNELS = 512  # MinION/GridION channels
DRIFT_SECONDS = 0.1  # between random-walk knots
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class SimulationOptions:
    """How reads are drawn; override with dataclasses.replace."""

    mean_length: int = 8000  # bases; mean of the lognormal read length
    length_sigma: float = 0.5  # lognormal sigma of the read length; 0 = every read mean_length
    min_length: int = 200  # bases; shorter draws are raised to this
    max_length: int = 100_000  # bases; longer draws are cut (and always to the reference stretch)
    dwell_mean: float = DWELL_MEAN  # samples per base on average (4 kHz / 450 b/s)
    dwell_sigma: float = 0.75  # lognormal sigma of the dwell beyond 1 sample (fits resquiggled R9.4.1 reads)
    speed_sigma: float = 0.1  # lognormal sigma of a read's speed (mean 1)
    stall_rate: float = 0.001  # probability that a base stalls
    stall_mean: float = 80.0  # samples, mean extra dwell of a stall (lognormal, sigma 1)
    noise: float = 1.0  # per-sample noise, in units of the k-mer's sd_mean
    level_noise: float = 0.4  # per-event level jitter, in units of the k-mer's level_stdv (see module doc)
    drift: float = 0.5  # pA per sqrt(second), random walk of the baseline
    open_pore: bool = True  # start with open pore, adapter stall and leader (trimming matters)
    ambiguous: str = "skip"  # non-ACGT bases: skip (read only ACGT stretches) or replace (random base)
    seed: int = 0  # read i depends on (seed, i) only
    chemistry: str = R941.name  # r9.4.1 or r10.4.1: calibration, open pore, per-read scale, run info
    sample_rate: int = SAMPLE_RATE  # Hz; one of the chemistry's rates

    @classmethod
    def for_chemistry(cls, name: str, sample_rate: int | None = None, **overrides: Any) -> "SimulationOptions":
        """The chemistry's fitted defaults (speed, dwell, noise) at ``sample_rate`` (default: its first)."""
        chem = chemistry(name)
        rate = chem.check_rate(sample_rate or chem.sample_rates[0])
        fitted = dict(dwell_mean=chem.dwell_mean(rate), dwell_sigma=chem.dwell_sigma, speed_sigma=chem.speed_sigma,
                      noise=chem.noise, level_noise=chem.level_noise, chemistry=chem.name, sample_rate=rate)
        return cls(**{**fitted, **overrides})

    @property
    def chem(self) -> Chemistry:
        return chemistry(self.chemistry)

    def __post_init__(self) -> None:
        self.chem.check_rate(self.sample_rate)
        if not 1 <= self.min_length <= self.max_length or self.mean_length < 1:
            raise EdgecallError(f"need 1 <= min_length <= max_length and mean_length >= 1 (got {self.min_length}, {self.max_length}, {self.mean_length})")
        if self.body_mean <= 0 or not 0 <= self.stall_rate < 1:
            raise EdgecallError(f"dwell_mean {self.dwell_mean} must exceed 1 + stall_rate * stall_mean; 0 <= stall_rate < 1")
        if min(self.length_sigma, self.dwell_sigma, self.speed_sigma, self.noise, self.level_noise, self.drift, self.stall_mean) < 0:
            raise EdgecallError("length_sigma, dwell_sigma, speed_sigma, noise, level_noise, drift and stall_mean must not be negative")
        if self.ambiguous not in ("skip", "replace"):
            raise EdgecallError(f"ambiguous must be 'skip' or 'replace', got '{self.ambiguous}'")

    @property
    def body_mean(self) -> float:
        """Mean lognormal part of a dwell, so that the total mean is dwell_mean."""
        return self.dwell_mean - 1.0 - self.stall_rate * self.stall_mean


@dataclass(frozen=True, eq=False)
class SimulatedRead:
    """One read: raw signal, calibration, truth and where each base lies in the signal."""

    read_id: str  # uuid4 from the seeded RNG
    sequence: str  # truth, in sequencing direction (what a basecaller should output)
    raw: np.ndarray  # (samples,) int16 DAC; pA = scale * (raw + offset)
    offset: float  # DAC units
    scale: float  # pA per DAC unit
    reference: str  # reference record name
    strand: str  # "+" (forward) or "-" (sequence is the reverse complement of reference[start:end])
    start: int  # 0-based start on the forward reference
    end: int  # exclusive end; end - start == len(sequence)
    base_starts: np.ndarray  # (len(sequence)+1,) int64; base i is raw[base_starts[i]:base_starts[i+1]]
    channel: int  # 1..512
    read_number: int  # per-channel read counter
    start_sample: int  # samples since the run started; increasing from read to read
    open_pore_pa: float  # open pore level before the read (pod5 median_before)
    run_id: str  # acquisition id shared by the reads of one seed
    sample_rate: int  # Hz
    chemistry: str  # r9.4.1 or r10.4.1


def simulate_reads(
    references: dict[str, str], n: int, options: SimulationOptions = SimulationOptions(), kmer_model: KmerModel | None = None,
) -> Iterator[SimulatedRead]:
    """Yield ``n`` reads, one at a time (flat memory: training can stream them)."""
    model = kmer_model or load_kmer_model(default_kmer_model_path(options.chem))
    rate = options.sample_rate
    stretches = _stretches(references, options)
    lengths = np.array([len(codes) for _, _, codes in stretches], dtype=np.float64)
    weights = lengths / lengths.sum()  # a stretch is picked in proportion to its length, as in sequencing
    run_id = uuid.UUID(bytes=np.random.default_rng([options.seed, 2**32]).bytes(16), version=4).hex
    clock, channel_free, channel_reads = 0, np.zeros(CHANNELS + 1, dtype=np.int64), np.zeros(CHANNELS + 1, dtype=np.int64)
    for index in range(n):
        rng = np.random.default_rng([options.seed, index])
        name, first, codes = stretches[rng.choice(len(stretches), p=weights)]
        read = _simulate_one(rng, name, first, codes, options, model)
        channel = int(rng.integers(1, CHANNELS + 1))
        clock = max(clock + int(rng.exponential(0.1 * rate)) + 1, int(channel_free[channel]) + rate // 10)
        channel_free[channel] = clock + read["raw"].size
        channel_reads[channel] += 1
        yield SimulatedRead(
            channel=channel, read_number=int(channel_reads[channel]), start_sample=clock, run_id=run_id,
            sample_rate=rate, chemistry=options.chemistry, **read
        )


def _stretches(references: dict[str, str], options: SimulationOptions) -> list[tuple[str, int, np.ndarray]]:
    """(record, first position, base codes) of every stretch reads may come from."""
    out = []
    rng = np.random.default_rng([options.seed, 2**32 + 1])
    for name, sequence in references.items():
        codes = encode(sequence)
        if options.ambiguous == "replace":
            bad = codes > 3
            codes[bad] = rng.integers(0, 4, int(bad.sum()), dtype=np.uint8)
            runs = [(0, len(codes))] if len(codes) else []
        else:
            runs = [m.span() for m in re.finditer(r"[ACGTacgt]+", sequence)]
        out += [(name, a, codes[a:b]) for a, b in runs if b - a >= options.min_length]
    if not out:
        raise EdgecallError(f"no reference has an ACGT stretch of at least min_length={options.min_length} bases")
    return out


def _simulate_one(
    rng: np.random.Generator, name: str, first: int, codes: np.ndarray, options: SimulationOptions, model: KmerModel,
) -> dict[str, Any]:
    """The fields of one read that do not depend on the reads before it (signal, truth, calibration)."""
    sigma = options.length_sigma
    length = options.mean_length * np.exp(rng.normal(-sigma * sigma / 2, sigma)) if sigma > 0 else options.mean_length
    length = int(min(max(round(length), options.min_length), options.max_length, len(codes)))
    start = int(rng.integers(0, len(codes) - length + 1))
    strand = "-" if rng.random() < 0.5 else "+"
    after = model.k - 1 - model.centre  # bases of context after a base
    if strand == "+":
        read_codes, tail = codes[start : start + length], codes[start + length : start + length + after]
    else:
        read_codes, tail = 3 - codes[start : start + length][::-1], 3 - codes[max(start - after, 0) : start][::-1]
    n_leader = int(rng.integers(20, 60)) if options.open_pore else 0
    leader = rng.integers(0, 4, n_leader + model.centre, dtype=np.uint8)
    padding = rng.integers(0, 4, after - len(tail), dtype=np.uint8)
    kmers = model.kmer_index(np.concatenate([leader, read_codes, tail, padding]))  # (n_leader + length,)

    chem = options.chem
    scale, shift = rng.normal(*chem.read_scale), rng.normal(*chem.read_shift)
    speed = np.exp(rng.normal(-options.speed_sigma**2 / 2, options.speed_sigma))
    dwell_sigma = options.dwell_sigma
    dwell = 1.0 + speed * rng.lognormal(np.log(options.body_mean) - dwell_sigma**2 / 2, dwell_sigma, kmers.size)
    stalls = rng.random(kmers.size) < options.stall_rate
    if options.stall_mean > 0:  # lognormal with sigma 1 and mean stall_mean
        dwell[stalls] += rng.lognormal(np.log(options.stall_mean) - 0.5, 1.0, int(stalls.sum()))
    bounds = np.floor(np.concatenate([[0.0], np.cumsum(dwell)])).astype(np.int64)
    levels = model.level_mean[kmers] + options.level_noise * model.level_stdv[kmers] * rng.standard_normal(kmers.size)
    counts = np.diff(bounds)
    body = np.repeat(levels, counts) + options.noise * np.repeat(model.sd_mean[kmers], counts) * rng.standard_normal(int(bounds[-1]))
    body = scale * body + shift

    open_pore = rng.normal(*chem.open_pore_pa)
    if options.open_pore:  # open pore, then the adapter stalls flat near the read's median level
        pore = open_pore + 2.0 * rng.standard_normal(min(int(rng.lognormal(np.log(30), 1.2)) + 1, 2000))
        stall_level = float(np.median(body)) + rng.normal(0, 2.0)
        stall = stall_level + scale * options.noise * 1.6 * rng.standard_normal(int(rng.lognormal(np.log(350), 0.4)))
        body = np.concatenate([pore, stall, body])
    prefix = body.size - int(bounds[-1])
    pa = body + _drift(rng, body.size, options.drift, options.sample_rate)

    offset = float(rng.integers(chem.calibration_offsets[0], chem.calibration_offsets[1] + 1))
    raw = np.clip(np.rint(pa / chem.calibration_scale - offset), *chem.adc_range).astype(np.int16)
    return dict(
        read_id=str(uuid.UUID(bytes=rng.bytes(16), version=4)),
        sequence=BASES[read_codes].tobytes().decode("ascii"),
        raw=raw, offset=offset, scale=chem.calibration_scale, reference=name, strand=strand,
        start=first + start, end=first + start + length,
        base_starts=bounds[n_leader:] + prefix,
        open_pore_pa=float(open_pore),
    )


def _drift(rng: np.random.Generator, samples: int, pa_per_sqrt_s: float, sample_rate: int) -> np.ndarray:
    """(samples,) pA baseline random walk starting at 0, linear between knots every 0.1 s."""
    knot = int(DRIFT_SECONDS * sample_rate)
    knots = samples // knot + 2
    steps = rng.normal(0.0, pa_per_sqrt_s * np.sqrt(DRIFT_SECONDS), knots)
    steps[0] = 0.0
    return np.interp(np.arange(samples), np.arange(knots) * knot, np.cumsum(steps))


def truth_comment(read: SimulatedRead) -> str:
    """FASTA header comment: where the read comes from (0-based, end exclusive)."""
    return f"ref={read.reference} strand={read.strand} start={read.start} end={read.end}"


def write_truth(reads: Iterable[SimulatedRead], path: Path | str) -> int:
    """FASTA of every read's true sequence in sequencing direction; returns the count."""
    count = 0
    with FastaWriter(path) as writer:
        for read in reads:
            writer.write(read.read_id, read.sequence, truth_comment(read))
            count += 1
    return count


def write_pod5(reads: Iterable[SimulatedRead], path: Path | str, truth: Path | str | None = None) -> int:
    """Write reads to a pod5 file (replacing it), and their truth FASTA in the same pass; returns the count."""
    path = Path(path)
    run_infos: dict[str, Any] = {}  # one pod5.RunInfo object per run, so the file stores it once
    count, batch = 0, []
    truth_writer = FastaWriter(truth) if truth is not None else None
    try:
        with _open_pod5(path) as writer:
            for read in reads:
                if read.run_id not in run_infos:
                    run_infos[read.run_id] = _run_info(read)
                batch.append(_pod5_read(read, run_infos[read.run_id]))
                if truth_writer is not None:
                    truth_writer.write(read.read_id, read.sequence, truth_comment(read))
                count += 1
                if len(batch) >= 100:  # pod5 writes a batch at a time: fewer calls, same file
                    writer.add_reads(batch)
                    batch = []
            if batch:
                writer.add_reads(batch)
    finally:
        if truth_writer is not None:
            truth_writer.close()
    return count


def _open_pod5(path: Path):  # noqa: ANN202 - pod5.Writer, imported lazily
    import pod5

    try:
        path.unlink(missing_ok=True)
        return pod5.Writer(path, software_name="edgecall simulate")
    except (OSError, RuntimeError) as exc:  # pod5 reports a missing folder as RuntimeError
        raise EdgecallError(f"{path}: cannot write a pod5 file here ({exc})") from None


def _pod5_read(read: SimulatedRead, run_info):  # noqa: ANN001, ANN202 - pod5 types, imported lazily
    import pod5

    return pod5.Read(
        read_id=uuid.UUID(read.read_id), pore=pod5.Pore(channel=read.channel, well=1, pore_type="not_set"),
        calibration=pod5.Calibration(offset=read.offset, scale=read.scale), read_number=read.read_number,
        start_sample=read.start_sample, median_before=read.open_pore_pa,
        end_reason=pod5.EndReason(reason=pod5.EndReasonEnum.SIGNAL_POSITIVE, forced=False),
        run_info=run_info, signal=read.raw,
    )


def _run_info(read: SimulatedRead):  # noqa: ANN202 - pod5.RunInfo
    """The run info MinKNOW writes for the read's chemistry and sample rate (edgecall.train.chemistry)."""
    import pod5

    return pod5.RunInfo(**chemistry(read.chemistry).run_info_fields(read.run_id, read.sample_rate))
