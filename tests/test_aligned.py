"""Reference labels from BAMs with move tables: each reference base at its call's sample, resampled, both strands."""

from __future__ import annotations

import array
import dataclasses
from pathlib import Path

import numpy as np
import pytest

pysam = pytest.importorskip("pysam")

from edgecall.config import ModelConfig, NormalisationConfig, rnn_encoder_config  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.runtime.resample import resample_positions  # noqa: E402
from edgecall.train.aligned import AlignedReads, load_aligned  # noqa: E402
from edgecall.runtime.read import Read  # noqa: E402
from edgecall.runtime.readers import iter_reads  # noqa: E402
from edgecall.train.data import codes, other_pore  # noqa: E402
from edgecall.train.pseudo_labels import PseudoLabelledSource  # noqa: E402
from edgecall.train.simulate import SimulatedRead, SimulationOptions, simulate_reads, write_pod5  # noqa: E402

CONFIG = ModelConfig(
    sample_rate=5000, chemistry="dna_r10.4.1_e8.2_400bps",
    encoder=rnn_encoder_config(conv_channels=(16, 16, 12), stride=6, hidden_sizes=(8, 8), state_len=3),
    normalisation=NormalisationConfig(strategy="quantile"),
)
COMPLEMENT = str.maketrans("ACGT", "TGCA")
DELETED, INSERTED_AFTER = 300, 700  # truth base the call misses; truth base after which the call has an extra base


def revcomp(sequence: str) -> str:
    return sequence.translate(COMPLEMENT)[::-1]


@pytest.fixture(scope="module")
def reads() -> list[SimulatedRead]:
    rng = np.random.default_rng(4)
    references = {"chrT": "".join(rng.choice(list("ACGT"), 20_000))}
    options = SimulationOptions.for_chemistry("r10.4.1", 4000, mean_length=1500, length_sigma=0.0, seed=9)
    return list(simulate_reads(references, 2, options))


def call_of(read: SimulatedRead) -> tuple[str, np.ndarray]:
    """A basecall of the read with one deleted and one inserted base: (sequence, sample of each called base)."""
    truth, starts = read.sequence, read.base_starts
    assert starts[INSERTED_AFTER + 1] - starts[INSERTED_AFTER] >= 2  # room for the extra base's sample
    keep = [j for j in range(len(truth)) if j != DELETED]
    sequence = "".join(truth[j] + ("A" if j == INSERTED_AFTER else "") for j in keep)
    samples = np.concatenate([[starts[j]] + ([starts[j] + 1] if j == INSERTED_AFTER else []) for j in keep])
    return sequence, samples.astype(np.int64)


def write_r10_reads(folder: Path, count: int, *, seed: int, reverse: bool) -> tuple[Path, Path, Path]:
    """``count`` simulated 4 kHz R10.4.1 reads of a random 20 kb contig, their truth as a BAM with move tables and
    MD tags, and the contig: (pod5, bam, fasta)."""
    rng = np.random.default_rng(seed)
    references = {"chrT": "".join(rng.choice(list("ACGT"), 20_000))}
    reads = list(simulate_reads(references, count, SimulationOptions.for_chemistry(
        "r10.4.1", 4000, mean_length=1500, length_sigma=0.0, seed=seed + 5)))
    write_pod5(reads, folder / "reads.pod5")
    write_bam(reads, folder / "calls.bam", reverse=reverse)
    (folder / "ref.fa").write_text(">chrT\n" + references["chrT"] + "\n")
    return folder / "reads.pod5", folder / "calls.bam", folder / "ref.fa"


def write_bam(reads: list[SimulatedRead], path: Path, *, reverse: bool, contig: str = "chrT", start: int = 0) -> None:
    """Each read aligned to its truth (forward), or as a reverse-strand read of the truth's reverse complement."""
    n_ref = len(reads[0].sequence)
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": contig, "LN": start + n_ref + 10}]})
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for read in reads:
            sequence, samples = call_of(read)
            moves = np.zeros(read.raw.size, np.int8)
            moves[samples] = 1
            # in sequencing direction: DELETED matches, 1 D, matches up to and with INSERTED_AFTER, 1 I, the rest
            ops = [(0, DELETED), (2, 1), (0, INSERTED_AFTER - DELETED), (1, 1), (0, len(read.sequence) - INSERTED_AFTER - 1)]
            record = pysam.AlignedSegment(header)
            record.query_name = read.read_id
            record.reference_id, record.reference_start, record.mapping_quality = 0, start, 60
            if reverse:
                record.flag, record.query_sequence, record.cigartuples = 16, revcomp(sequence), ops[::-1]
                md = f"{n_ref - 1 - DELETED}^{revcomp(read.sequence)[n_ref - 1 - DELETED]}{DELETED}"
            else:
                record.flag, record.query_sequence, record.cigartuples = 0, sequence, ops
                md = f"{DELETED}^{read.sequence[DELETED]}{n_ref - DELETED - 1}"
            record.set_tag("MD", md)
            record.set_tag("NM", 2)
            record.set_tag("ts", 0)
            record.set_tag("mv", array.array("b", [1, *moves.tolist()]))
            out.write(record)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_reference_bases_sit_at_their_calls_samples(reads: list[SimulatedRead], tmp_path: Path, reverse: bool) -> None:
    write_pod5(reads, tmp_path / "reads.pod5")
    write_bam(reads, tmp_path / "calls.bam", reverse=reverse)
    labelled, skipped = load_aligned(AlignedReads((tmp_path / "reads.pod5",), (tmp_path / "calls.bam",)), CONFIG)
    assert skipped == {} and len(labelled) == 2
    by_id = {r.read_id: r for r in labelled}
    for read in reads:
        got = by_id[read.read_id]
        # every truth base is labelled (the deleted one too), in sequencing direction; the inserted one is not
        starts = resample_positions(read.base_starts[:-1], 4000, 5000) - got.trimmed
        starts[DELETED] = starts[DELETED + 1]  # a deleted base lies where the next matched base does
        keep = starts >= 0
        assert np.array_equal(got.bases, codes(read.sequence)[keep])
        assert np.array_equal(got.positions, starts[keep])
        assert got.signal.size == -(-read.raw.size * 5 // 4) - got.trimmed  # resampled to 5 kHz, then trimmed


def test_chunks_of_reference_labelled_reads(reads: list[SimulatedRead], tmp_path: Path) -> None:
    write_pod5(reads, tmp_path / "reads.pod5")
    write_bam(reads, tmp_path / "calls.bam", reverse=False)
    labelled, _ = load_aligned(AlignedReads((tmp_path / "reads.pod5",), (tmp_path / "calls.bam",)), CONFIG)
    source = PseudoLabelledSource(labelled, CONFIG, 1200, seed=1, stream_tag=2)
    first, again = source.chunks(3, 4), source.chunks(3, 4)
    assert all(np.array_equal(a.signal, b.signal) and np.array_equal(a.targets, b.targets) for a, b in zip(first, again))
    truth = {r.read_id: r.sequence for r in reads}
    for chunk in first:
        spelled = "".join("ACGT"[t - 1] for t in chunk.targets)
        assert chunk.signal.shape == (1200,) and spelled in truth[chunk.read_id]
        assert 70 < len(spelled) < 130  # 1200 samples at 12.5 samples per base


def test_held_out_and_low_identity_reads_are_left_out(reads: list[SimulatedRead], tmp_path: Path) -> None:
    write_pod5(reads, tmp_path / "reads.pod5")
    write_bam(reads, tmp_path / "calls.bam", reverse=False)
    options = AlignedReads((tmp_path / "reads.pod5",), (tmp_path / "calls.bam",), holdout=frozenset({reads[0].read_id}))
    labelled, skipped = load_aligned(options, CONFIG)
    assert [r.read_id for r in labelled] == [reads[1].read_id] and skipped == {"held out": 1}
    labelled, skipped = load_aligned(dataclasses.replace(options, holdout=frozenset(), min_identity=0.9999), CONFIG)
    assert labelled == [] and skipped == {"alignment identity below 0.9999": 2}


def test_reads_of_another_pore_never_train_the_model(reads: list[SimulatedRead], tmp_path: Path) -> None:
    """R10.4.1 reads (FLO-MIN114 run info) do not label an R9.4.1 model, by reference or by a teacher's calls;
    R10.4 run info (FLO-PRO112, which some public R10.4.1 reads carry) still labels an R10.4.1 model."""
    from edgecall.train.pseudo_labels import _skip_reason

    write_pod5(reads, tmp_path / "reads.pod5")
    write_bam(reads, tmp_path / "calls.bam", reverse=False)
    options = AlignedReads((tmp_path / "reads.pod5",), (tmp_path / "calls.bam",))
    r941 = CONFIG.replace(chemistry="dna_r9.4.1_e8", sample_rate=4000)
    labelled, skipped = load_aligned(options, r941)
    assert labelled == [] and skipped == {"another chemistry (R10.4.1 reads, R9.4.1 model)": 2}
    real = next(r for r in iter_reads([tmp_path / "reads.pod5"]) if isinstance(r, Read))
    assert _skip_reason(real, r941, {}, None, 0.0, {}) == "another chemistry (R10.4.1 reads, R9.4.1 model)"
    assert other_pore(real, CONFIG) == ""
    r104 = dataclasses.replace(real, run=dataclasses.replace(real.run, flow_cell_product_code="FLO-PRO112",
                                                             sequencing_kit="sqk-q20ea"))
    assert other_pore(r104, CONFIG) == "" and other_pore(r104, r941) != ""


def test_bam_without_move_tables_is_refused(reads: list[SimulatedRead], tmp_path: Path) -> None:
    write_pod5(reads, tmp_path / "reads.pod5")
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": "chrT", "LN": 5000}]})
    with pysam.AlignmentFile(str(tmp_path / "plain.bam"), "wb", header=header) as out:
        record = pysam.AlignedSegment(header)
        record.query_name, record.query_sequence, record.flag = reads[0].read_id, "ACGTACGT", 0
        record.reference_id, record.reference_start, record.cigarstring = 0, 0, "8M"
        record.set_tag("MD", "8")
        out.write(record)
    with pytest.raises(EdgecallError, match=r"plain\.bam: read .* has no mv move table or MD tag"):
        load_aligned(AlignedReads((tmp_path,), (tmp_path / "plain.bam",)), CONFIG)


def test_the_r10_dev_set_is_refused(shared_data: Path, reads: list[SimulatedRead], tmp_path: Path) -> None:
    """By file name (can_reads.pod5, can_mappings.bam) and by locus: reads on the dev reads' reference stretch."""
    remora = shared_data / "r10" / "remora"
    with pytest.raises(EdgecallError, match="R10.4.1 accuracy dev set"):
        load_aligned(AlignedReads((shared_data / "pod5/remora/can_reads.pod5",), (remora / "simplex_reads_mapped.bam",)), CONFIG)
    with pytest.raises(EdgecallError, match="can_mappings.bam: belongs to the R10.4.1 accuracy dev set"):
        load_aligned(AlignedReads((remora / "duplex_reads.pod5",), (remora / "can_mappings.bam",)), CONFIG)
    write_pod5(reads, tmp_path / "reads.pod5")
    write_bam(reads, tmp_path / "calls.bam", reverse=False, contig="chr13", start=52_305_000)
    labelled, skipped = load_aligned(AlignedReads((tmp_path / "reads.pod5",), (tmp_path / "calls.bam",)), CONFIG)
    assert labelled == [] and skipped == {"on the R10.4.1 dev set's reference stretch": 2}


def test_real_remora_reads_resampled_to_5khz(shared_data: Path) -> None:
    """The 8 simplex remora reads (4 kHz): labels are their reference, placed in order, at 5 kHz."""
    remora = shared_data / "r10" / "remora"
    labelled, skipped = load_aligned(AlignedReads((remora / "duplex_reads.pod5",), (remora / "simplex_reads_mapped.bam",)), CONFIG)
    assert len(labelled) == 8 and skipped == {}
    for read in labelled:
        assert np.all(np.diff(read.positions) >= 0) and read.positions[-1] < read.signal.size
        assert 10.5 < (read.positions[-1] - read.positions[0]) / read.bases.size < 15  # ~12.5 samples per base
