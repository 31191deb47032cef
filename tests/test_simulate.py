"""The read simulator: true sequences, sample boundaries, realism, reproducibility, pod5 and CLI."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgecall.errors import EdgecallError
from edgecall.train.fasta import read_fasta, write_fasta
from edgecall.train.kmer_model import (
    PACKAGED_MODEL, R10_PACKAGED_MODEL, SHARED_MODEL, KmerModel, default_kmer_model_path, encode, load_kmer_model,
)
from edgecall.train.simulate import (
    CALIBRATION_SCALE, SimulatedRead, SimulationOptions, simulate_reads, write_pod5, write_truth,
)

COMPLEMENT = str.maketrans("ACGT", "TGCA")
OPTIONS = SimulationOptions(mean_length=2000, seed=7)


def revcomp(sequence: str) -> str:
    return sequence.translate(COMPLEMENT)[::-1]


@pytest.fixture(scope="module")
def model() -> KmerModel:
    return load_kmer_model(PACKAGED_MODEL)


@pytest.fixture(scope="module")
def references() -> dict[str, str]:
    rng = np.random.default_rng(0)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    return {name: bases[rng.integers(0, 4, size)].tobytes().decode() for name, size in (("chrA", 30_000), ("chrB", 12_000))}


@pytest.fixture(scope="module")
def reads(references: dict[str, str], model: KmerModel) -> list[SimulatedRead]:
    return list(simulate_reads(references, 200, OPTIONS, model))


def test_count_truth_and_coordinates(reads: list[SimulatedRead], references: dict[str, str]) -> None:
    assert len(reads) == 200
    assert {r.strand for r in reads} == {"+", "-"} and {r.reference for r in reads} == {"chrA", "chrB"}
    for read in reads:
        forward = references[read.reference][read.start : read.end]
        assert read.sequence == (forward if read.strand == "+" else revcomp(forward))
        assert read.raw.dtype == np.int16 and read.base_starts.dtype == np.int64
    assert len({r.read_id for r in reads}) == len(reads)


def test_lengths_follow_the_request(reads: list[SimulatedRead], references: dict[str, str], model: KmerModel) -> None:
    lengths = np.array([len(r.sequence) for r in reads])
    assert abs(lengths.mean() / OPTIONS.mean_length - 1) < 0.12
    assert lengths.min() >= OPTIONS.min_length and lengths.std() > 500  # lognormal, not fixed
    fixed = dataclasses.replace(OPTIONS, length_sigma=0.0, mean_length=1500)
    assert {len(r.sequence) for r in simulate_reads(references, 10, fixed, model)} == {1500}
    longer_than_reference = dataclasses.replace(fixed, mean_length=50_000)
    assert {len(r.sequence) for r in simulate_reads(references, 10, longer_than_reference, model)} <= {30_000, 12_000}


def test_dwell_mean_and_boundaries(reads: list[SimulatedRead], references: dict[str, str], model: KmerModel) -> None:
    dwells = np.concatenate([np.diff(r.base_starts) for r in reads])
    assert abs(dwells.mean() / OPTIONS.dwell_mean - 1) < 0.03
    assert dwells.min() >= 1 and dwells.max() > 10 * OPTIONS.dwell_mean  # every base has samples; stalls
    for read in reads:
        assert len(read.base_starts) == len(read.sequence) + 1 and read.base_starts[-1] == read.raw.size
        assert read.base_starts[0] > 0  # open pore, adapter stall and leader come first
    slow = dataclasses.replace(OPTIONS, dwell_mean=12.0, open_pore=False)
    slow_reads = list(simulate_reads(references, 20, slow, model))
    assert all(r.base_starts[0] == 0 for r in slow_reads)
    assert abs(np.mean(np.concatenate([np.diff(r.base_starts) for r in slow_reads])) / 12.0 - 1) < 0.05


def test_levels_follow_the_kmer_model_at_its_centre(references: dict[str, str], model: KmerModel) -> None:
    """Per-base mean pA correlates with model[seq[i-2:i+4]], far less with a k-mer shifted by one."""
    assert (model.k, model.centre) == (6, 2)
    quiet = dataclasses.replace(OPTIONS, mean_length=3000, length_sigma=0.0, open_pore=False, stall_rate=0.0)
    read = next(iter(simulate_reads(references, 1, quiet, model)))
    pa = read.scale * (read.raw.astype(np.float64) + read.offset)
    means = np.add.reduceat(pa, read.base_starts[:-1]) / np.diff(read.base_starts)
    codes = encode(read.sequence)
    inner = slice(model.centre, len(codes) - (model.k - 1 - model.centre))  # bases with a full k-mer in the read
    expected = model.level_mean[model.kmer_index(codes)]
    assert np.corrcoef(means[inner], expected)[0, 1] > 0.95
    for wrong in (model.centre - 1, model.centre + 1):
        shifted = slice(wrong, wrong + len(expected))
        assert np.corrcoef(means[shifted], expected)[0, 1] < 0.6


def test_same_seed_same_reads_other_seed_other_reads(reads: list[SimulatedRead], references: dict[str, str], model: KmerModel, tmp_path: Path) -> None:
    again = list(simulate_reads(references, 5, OPTIONS, model))  # read i depends on (seed, i) only
    for a, b in zip(reads[:5], again):
        assert a.read_id == b.read_id and a.sequence == b.sequence and a.raw.tobytes() == b.raw.tobytes()
        assert np.array_equal(a.base_starts, b.base_starts)
    write_truth(reads[:5], tmp_path / "a.fasta")
    write_truth(again, tmp_path / "b.fasta.gz")
    assert (tmp_path / "a.fasta").read_bytes() == gzip.decompress((tmp_path / "b.fasta.gz").read_bytes())
    other = list(simulate_reads(references, 5, dataclasses.replace(OPTIONS, seed=8), model))
    assert all(a.read_id != b.read_id and a.raw.size != b.raw.size for a, b in zip(reads[:5], other))


def test_pod5_round_trip(reads: list[SimulatedRead], tmp_path: Path) -> None:
    pod5 = pytest.importorskip("pod5")
    out, truth = tmp_path / "sim.pod5", tmp_path / "sim.fasta"
    assert write_pod5(reads[:30], out, truth=truth) == 30
    by_id = {r.read_id: r for r in reads[:30]}
    with pod5.Reader(out) as reader:
        back = list(reader.reads())
        assert len(back) == 30
        for record in back:
            read = by_id[str(record.read_id)]
            assert np.array_equal(record.signal, read.raw)
            assert record.calibration.scale == pytest.approx(CALIBRATION_SCALE) and record.calibration.offset == read.offset
            assert record.run_info.sample_rate == 4000 and 1 <= record.pore.channel <= 512
            assert record.start_sample == read.start_sample
    starts = [r.start_sample for r in reads]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    records = read_fasta(truth)
    assert list(records) == [r.read_id for r in reads[:30]]
    assert all(records[r.read_id] == r.sequence for r in reads[:30])
    header = truth.read_text().splitlines()[0]
    r = reads[0]
    assert header == f">{r.read_id} ref={r.reference} strand={r.strand} start={r.start} end={r.end}"


def test_ambiguous_bases_skipped_or_replaced(model: KmerModel) -> None:
    rng = np.random.default_rng(1)
    parts = ["".join(rng.choice(list("ACGT"), 3000)) for _ in range(3)]
    reference = {"gappy": parts[0] + "N" * 500 + parts[1].lower() + "RYK" + parts[2]}
    options = dataclasses.replace(OPTIONS, mean_length=2500, min_length=1000)
    for read in simulate_reads(reference, 40, options, model):
        forward = reference["gappy"][read.start : read.end].upper()
        assert set(forward) <= set("ACGT")
        assert read.sequence == (forward if read.strand == "+" else revcomp(forward))
    replaced = list(simulate_reads(reference, 40, dataclasses.replace(options, ambiguous="replace", mean_length=8000), model))
    assert all(set(r.sequence) <= set("ACGT") for r in replaced)
    with pytest.raises(EdgecallError, match="min_length"):
        list(simulate_reads({"short": "ACGTN" * 50}, 1, options, model))


def test_fasta_reader_and_writer(tmp_path: Path) -> None:
    path = tmp_path / "refs.fa.gz"
    path.write_bytes(gzip.compress(b">one first record\nACGT\nacgn\n\n>two\nTTTT\n"))
    assert read_fasta(path) == {"one": "ACGTACGN", "two": "TTTT"}
    write_fasta([("x", "A" * 150, "note")], tmp_path / "out.fa")
    assert (tmp_path / "out.fa").read_text().splitlines()[:2] == [">x note", "A" * 70]
    for name, content in (("bad.fa", b"hello\n"), ("empty.fa", b""), ("bin.fa", b"\x89PNG\x00\xff"), ("dup.fa", b">a\nA\n>a\nC\n")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(EdgecallError, match=name):
            read_fasta(tmp_path / name)


def test_packaged_model_is_the_shared_one(shared_data: Path) -> None:
    assert (shared_data / SHARED_MODEL).read_bytes() == PACKAGED_MODEL.read_bytes()
    assert default_kmer_model_path() == shared_data / SHARED_MODEL  # the default when ../shared is there
    assert (PACKAGED_MODEL.parent / "LICENSE.kmer_models.md").is_file()


def test_signal_statistics_look_like_real_r941(shared_data: Path, model: KmerModel) -> None:
    """pA median and IQR, and the med/MAD-normalised tails, as on real lambda R9.4.1 reads."""
    pod5 = pytest.importorskip("pod5")
    real: list[np.ndarray] = []
    with pod5.Reader(shared_data / "accuracy/lambda_r941/lambda_r941.pod5") as reader:
        for record in reader.reads():
            if record.num_samples > 20_000:
                real.append(record.signal_pa.astype(np.float64))
            if len(real) == 15:
                break
    refs = read_fasta(shared_data / "references/phiX174.fasta")
    simulated = [r.scale * (r.raw.astype(np.float64) + r.offset) for r in simulate_reads(refs, 15, OPTIONS, model)]

    def stats(signals: list[np.ndarray]) -> np.ndarray:
        rows = []
        for pa in signals:
            q25, median, q75 = np.percentile(pa, [25, 50, 75])
            mad = 1.4826 * np.median(np.abs(pa - median))
            rows.append([median, q75 - q25, *np.percentile((pa - median) / mad, [1, 99])])
        return np.median(rows, axis=0)

    real_stats, sim_stats = stats(real), stats(simulated)
    assert abs(sim_stats[0] - real_stats[0]) < 5  # median pA (~82)
    assert 0.85 < sim_stats[1] / real_stats[1] < 1.15  # IQR pA (~21)
    assert np.all(np.abs(sim_stats[2:] - real_stats[2:]) < 0.5)  # normalised 1st/99th percentiles


def test_fast(references: dict[str, str], model: KmerModel) -> None:
    options = dataclasses.replace(OPTIONS, mean_length=10_000, length_sigma=0.0)
    begin = time.perf_counter()
    samples = sum(r.raw.size for r in simulate_reads(references, 12, options, model))
    assert samples > 1_000_000 and time.perf_counter() - begin < 2.0


def test_cli(tmp_path: Path, references: dict[str, str]) -> None:
    write_fasta(references, tmp_path / "ref.fa")
    run = [sys.executable, "-m", "edgecall", "simulate", str(tmp_path / "ref.fa"), "-n", "6", "--mean-length", "1000", "--seed", "3"]
    result = subprocess.run([*run, "-o", str(tmp_path / "r.pod5"), "--truth", str(tmp_path / "t.fa")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "6 reads" in result.stderr and (tmp_path / "r.pod5").stat().st_size > 0
    assert len(read_fasta(tmp_path / "t.fa")) == 6
    (tmp_path / "bad.fa").write_text("not a fasta\n")
    bad = subprocess.run([sys.executable, "-m", "edgecall", "simulate", str(tmp_path / "bad.fa"), "-o", str(tmp_path / "x.pod5")], capture_output=True, text=True, timeout=120)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("edgecall: error:")]
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and len(errors) == 1 and "bad.fa" in errors[0]


# ---- R10.4.1 ----------------------------------------------------------------------------------

R10_OPTIONS = SimulationOptions.for_chemistry("r10.4.1", 5000, mean_length=4000, seed=11)


@pytest.fixture(scope="module")
def r10_model() -> KmerModel:
    return load_kmer_model(R10_PACKAGED_MODEL)


@pytest.mark.parametrize("rate", [4000, 5000])
def test_r10_speed_and_sample_rate(references: dict[str, str], r10_model: KmerModel, rate: int) -> None:
    """400 bases/s: 10 samples per base at 4 kHz, 12.5 at 5 kHz; both strands; reads stamped with the rate."""
    options = SimulationOptions.for_chemistry("r10.4.1", rate, mean_length=3000, seed=2)
    reads = list(simulate_reads(references, 30, options, r10_model))
    bases = sum(len(r.sequence) for r in reads)
    samples = sum(int(r.base_starts[-1] - r.base_starts[0]) for r in reads)
    assert samples / bases == pytest.approx(rate / 400, rel=0.05)
    assert {r.strand for r in reads} == {"+", "-"} and {r.sample_rate for r in reads} == {rate}
    assert {r.chemistry for r in reads} == {"r10.4.1"}


def test_r10_levels_follow_the_9mer_table_at_its_shift(references: dict[str, str], r10_model: KmerModel) -> None:
    """Base i's samples sit at table[seq[i-6:i+3]] (Uncalled4's shift 6), in pA."""
    assert (r10_model.k, r10_model.centre) == (9, 6)
    read = next(simulate_reads(references, 1, dataclasses.replace(R10_OPTIONS, drift=0.0), r10_model))
    pa = read.scale * (read.raw.astype(np.float64) + read.offset)
    starts = read.base_starts
    means = np.array([pa[a:b].mean() if b > a else np.nan for a, b in zip(starts[:-1], starts[1:])])
    codes = encode(read.sequence)
    for shift, expect_high in ((6, True), (5, False), (7, False)):
        kmers = r10_model.kmer_index(codes)  # k-mer j starts at base j: base j + shift gets it
        levels, observed = r10_model.level_mean[kmers], means[shift : shift + kmers.size]
        ok = ~np.isnan(observed)
        r = np.corrcoef(levels[ok], observed[ok])[0, 1]
        assert (r > 0.95) == expect_high, (shift, r)


def test_r10_reproducible_and_in_pod5_with_its_run_info(references: dict[str, str], r10_model: KmerModel, tmp_path: Path) -> None:
    pod5 = pytest.importorskip("pod5")
    a = list(simulate_reads(references, 4, R10_OPTIONS, r10_model))
    b = list(simulate_reads(references, 4, R10_OPTIONS, r10_model))
    assert all(np.array_equal(x.raw, y.raw) and x.sequence == y.sequence and x.read_id == y.read_id for x, y in zip(a, b))
    other = next(simulate_reads(references, 1, dataclasses.replace(R10_OPTIONS, seed=12), r10_model))
    assert other.sequence != a[0].sequence
    write_pod5(a, tmp_path / "r10.pod5")
    with pod5.Reader(tmp_path / "r10.pod5") as reader:
        first = next(reader.reads())
        info, signal = first.run_info, first.signal.copy()
    assert (info.sample_rate, info.flow_cell_product_code, info.sequencing_kit) == (5000, "FLO-MIN114", "sqk-lsk114")
    assert info.context_tags["sample_frequency"] == "5000" and "400K" in info.protocol_name
    assert info.context_tags["basecall_config_filename"].startswith("dna_r10.4.1_e8.2_400bps_5khz")
    assert np.array_equal(signal, a[0].raw)


def test_r10_rate_must_be_the_chemistrys() -> None:
    with pytest.raises(EdgecallError, match="r10.4.1 reads are recorded at 5000 or 4000 Hz, not 3000"):
        SimulationOptions.for_chemistry("r10.4.1", 3000)
    with pytest.raises(EdgecallError, match="unknown chemistry 'r11'"):
        SimulationOptions.for_chemistry("r11")


def test_packaged_r10_table_is_uncalled4s(shared_data: Path, r10_model: KmerModel) -> None:
    """The packed table equals Uncalled4's within its fixed point (< 0.01 pA), and ships its licence."""
    source = load_kmer_model(shared_data / "kmer_models/uncalled4/dna_r10.4.1_400bps_9mer.npz")
    assert source.centre == r10_model.centre == 6
    for column in ("level_mean", "level_stdv", "sd_mean"):
        assert np.abs(getattr(source, column) - getattr(r10_model, column)).max() < 0.01
    assert source.level_mean[0] == pytest.approx(-1.8743672 * 23.11051368713379 + 92.56193542480469)  # AAAAAAAAA
    assert R10_PACKAGED_MODEL.stat().st_size < 3_000_000
    assert "Sam Kovaka" in (R10_PACKAGED_MODEL.parent / "LICENSE.uncalled4").read_text()


def real_r10_signals(shared_data: Path) -> list[tuple[np.ndarray, int]]:
    """(pA from the first called base on, samples per called base) of the simplex remora reads (training
    material, never the dev set), with their move tables."""
    pod5 = pytest.importorskip("pod5")
    pysam = pytest.importorskip("pysam")
    folder = shared_data / "r10/remora"
    with pod5.Reader(folder / "duplex_reads.pod5") as reader:
        signals = {str(r.read_id): r.signal_pa.astype(np.float64) for r in reader.reads()}
    out = []
    with pysam.AlignmentFile(str(folder / "simplex_reads_mapped.bam"), check_sq=False) as bam:
        for record in bam:
            moves = np.asarray(record.get_tag("mv"), dtype=np.int64)
            start = int(record.get_tag("ts")) + int(np.flatnonzero(moves[1:])[0]) * int(moves[0])
            end = int(record.get_tag("ts")) + (moves.size - 1) * int(moves[0])
            out.append((signals[record.query_name][start:end], (end - start) / record.query_length))
    return out


def signal_stats(signals: list[np.ndarray]) -> np.ndarray:
    """Per read: median pA, quantile scale 0.53 (q90 - q20) pA, per-sample noise pA (first differences); medians."""
    rows = []
    for pa in signals:
        q20, q50, q90 = np.quantile(pa, [0.2, 0.5, 0.9])
        d = np.diff(pa)
        rows.append([q50, 0.53 * (q90 - q20), 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)])
    return np.median(rows, axis=0)


def test_r10_signal_statistics_look_like_real_r1041(shared_data: Path, r10_model: KmerModel) -> None:
    """Median, quantile scale, noise and speed of simulated 4 kHz reads against the real 4 kHz remora reads."""
    real = real_r10_signals(shared_data)
    refs = read_fasta(shared_data / "references/human_chr4_90700000_90900000.fa")
    options = SimulationOptions.for_chemistry("r10.4.1", 4000, mean_length=8000, seed=5)
    sim = [(r.scale * (r.raw.astype(np.float64) + r.offset))[r.base_starts[0]:] for r in simulate_reads(refs, 10, options, r10_model)]
    real_stats, sim_stats = signal_stats([pa for pa, _ in real]), signal_stats(sim)
    assert abs(sim_stats[0] - real_stats[0]) < 8  # median pA (real 86-96 here, 86-110 with the mod reads)
    assert 0.9 < sim_stats[1] / real_stats[1] < 1.1  # quantile scale pA (~27)
    assert 0.85 < sim_stats[2] / real_stats[2] < 1.15  # per-sample noise pA (~2.1)
    real_speed = np.median([spb for _, spb in real])
    assert options.dwell_mean == 10.0 and 0.9 < real_speed / options.dwell_mean < 1.1  # samples per base at 4 kHz


def test_cli_r10(tmp_path: Path, references: dict[str, str]) -> None:
    pod5 = pytest.importorskip("pod5")
    write_fasta(references, tmp_path / "ref.fa")
    run = [sys.executable, "-m", "edgecall", "simulate", str(tmp_path / "ref.fa"), "-n", "3", "--mean-length", "1000",
           "--chemistry", "r10.4.1", "--sample-rate", "4000", "-o", str(tmp_path / "r.pod5")]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "3 reads" in result.stderr and "r10.4.1 at 4000 Hz" in result.stderr
    with pod5.Reader(tmp_path / "r.pod5") as reader:
        assert {r.run_info.sample_rate for r in reader.reads()} == {4000}
    bad = subprocess.run([*run[:-2], "--chemistry", "r9.4.1", "--sample-rate", "5000", "-o", str(tmp_path / "x.pod5")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "edgecall: error: r9.4.1 reads are recorded at 4000 Hz, not 5000" in bad.stderr
