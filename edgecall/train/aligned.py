"""Real reads labelled with their reference: BAM alignments of basecalls that carry move tables.

Why: the truth of a real read is the stretch of genome it came from, not
another basecaller's call. A Dorado/Guppy BAM gives, per read, the call's move
table (``mv:B:c``, stride first; ``ts:i`` samples trimmed before it) and its
alignment (CIGAR + MD, from which pysam rebuilds the aligned reference without
the FASTA). So every reference base gets a place in the signal: a matched base
sits at the first sample of the called base aligned to it, a deleted base at
the place of the next matched base in sequencing direction, and inserted bases
(in the call, not the reference) get none. Chunks are then cut exactly as for
pseudo-labels (:class:`edgecall.train.pseudo_labels.PseudoLabelledSource`):
the targets of a window are the reference bases placed inside it; only the
aligned stretch of a read is used (soft clips, adapters and unaligned ends are
not labelled). Alignments that overlap the R10.4.1 dev set's reference
segments are left out (:func:`edgecall.train.data.dev_set_loci`): their labels
would be the very sequence the dev reads are scored against.

Reads recorded at another rate than the model's are resampled with the
runtime's :func:`edgecall.runtime.resample.resample_read` (4 kHz R10.4.1 reads
for a 5 kHz model) and their base positions mapped with
:func:`~edgecall.runtime.resample.resample_positions`; then the model's own
normalisation and trim (:func:`edgecall.runtime.signal.prepare`) apply, as in
``edgecall run``. Reverse-strand alignments (flag 16) hold the reverse
complement of the read; labels are turned back into sequencing direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError
from edgecall.runtime.read import Read
from edgecall.runtime.readers import find_inputs, iter_reads
from edgecall.runtime.resample import resample_positions, resample_read
from edgecall.runtime.signal import prepare
from edgecall.train.data import DEV_SET, codes, dev_set_loci, dev_set_read_ids, other_pore, refuse_dev_set
from edgecall.train.pseudo_labels import LabelledRead

MIN_IDENTITY = 0.85  # alignments below this (1 - NM / aligned columns) are left out: wrong locus, junk
_COMPLEMENT = str.maketrans("ACGTacgt", "TGCAtgca")


@dataclass(frozen=True)
class AlignedReads:
    """Where real reads and their alignments are; see the module doc for what the labels are."""

    paths: tuple[Path, ...]  # pod5/fast5 files or folders (searched recursively)
    bams: tuple[Path, ...]  # BAM/SAM files with mv:B:c move tables and MD tags, aligned to the reads' genome
    holdout: frozenset[str] = frozenset()  # read ids kept out of training (an independent check)
    min_identity: float = MIN_IDENTITY  # leave out alignments below this identity


@dataclass(frozen=True, eq=False)
class Alignment:
    """One primary alignment as labels: reference bases in sequencing direction and the calls' places."""

    bases: str  # aligned reference, sequencing direction
    call_index: np.ndarray  # (len(bases),) int64: index (sequencing direction) of the called base each lies at
    call_samples: np.ndarray  # (called bases,) int64 raw-signal sample of each called base (ts + frame * stride)
    identity: float  # 1 - NM / aligned columns
    locus: tuple[str, int, int]  # contig, 0-based start, exclusive end on the reference


def read_alignments(path: Path) -> dict[str, Alignment]:
    """read id -> labels of its primary alignment, for each mapped record with mv and MD tags."""
    import pysam

    refuse_dev_set(path)
    out: dict[str, Alignment] = {}
    try:
        with pysam.AlignmentFile(str(path), check_sq=False) as bam:
            for record in bam:
                if record.is_unmapped or record.is_secondary or record.is_supplementary:
                    continue
                if not (record.has_tag("mv") and record.has_tag("MD")):
                    raise EdgecallError(f"{path}: read {record.query_name} has no mv move table or MD tag "
                                        "(needs a basecaller's BAM with --emit-moves, aligned with MD tags)")
                out[record.query_name] = _alignment(record, path)
    except (OSError, ValueError) as exc:
        raise EdgecallError(f"{path}: cannot read the BAM ({exc})") from None
    return out


def _alignment(record, path: Path) -> Alignment:  # noqa: ANN001 - pysam.AlignedSegment
    moves = np.asarray(record.get_tag("mv"), dtype=np.int64)
    stride, frames = int(moves[0]), np.flatnonzero(moves[1:])
    n = record.query_length  # the whole call, soft clips included (hard clips would break the move table)
    if frames.size != n or record.cigartuples is None or any(op == 5 for op, _ in record.cigartuples):
        raise EdgecallError(f"{path}: read {record.query_name}: {frames.size} moves for {n} called bases")
    start = record.get_tag("ts") if record.has_tag("ts") else 0
    reference = record.get_reference_sequence().upper()  # rebuilt from the query, CIGAR and MD
    pairs = np.array(record.get_aligned_pairs(matches_only=True), dtype=np.int64).reshape(-1, 2)
    ref0 = record.reference_start
    query_at = np.full(len(reference), -1, np.int64)  # reference base -> query index (BAM orientation), -1: deleted
    query_at[pairs[:, 1] - ref0] = pairs[:, 0]
    if record.is_reverse:  # the BAM holds the reverse complement: turn both back into sequencing direction
        reference = reference.translate(_COMPLEMENT)[::-1]
        query_at = query_at[::-1]
        query_at = np.where(query_at >= 0, n - 1 - query_at, -1)
    # a deleted base lies where the next matched base (sequencing direction) does
    matched = np.flatnonzero(query_at >= 0)
    fill = np.searchsorted(matched, np.arange(len(reference)))
    keep = fill < matched.size  # deletions at the very end have no next base: dropped
    call_index = query_at[matched[fill[keep]]]
    columns = sum(length for op, length in record.cigartuples if op in (0, 1, 2, 7, 8))
    identity = 1.0 - record.get_tag("NM") / max(columns, 1) if record.has_tag("NM") else float("nan")
    locus = (str(record.reference_name), int(record.reference_start), int(record.reference_end))
    return Alignment(reference[: int(keep.sum())], call_index, start + frames * stride, identity, locus)


def load_aligned(options: AlignedReads, config: ModelConfig) -> tuple[list[LabelledRead], dict[str, int]]:
    """Prepared reads (at the model's rate) with their reference bases' positions, and reads left out per reason."""
    files = find_inputs(list(options.paths), recursive=True)
    for path in [*options.paths, *files, *options.bams]:
        refuse_dev_set(path)
    alignments = {read_id: a for path in options.bams for read_id, a in read_alignments(path).items()}
    banned, dev_loci = dev_set_read_ids(), dev_set_loci()
    reads: dict[str, LabelledRead] = {}
    skipped: dict[str, int] = {}
    for item in iter_reads(files, read_ids=set(alignments)):
        reason = _skip_reason(item, config, alignments, options, reads, dev_loci)
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        assert isinstance(item, Read)
        if item.read_id in banned:
            raise EdgecallError(f"{item.source}: read {item.read_id} is in an accuracy dev set "
                                f"({DEV_SET} or R10.4.1 can_reads); never train on it")
        aligned = alignments[item.read_id]
        resampled = resample_read(item, config.sample_rate)
        signal, trimmed = prepare(resampled, config.normalisation)
        samples = resample_positions(aligned.call_samples, item.sample_rate, config.sample_rate)
        positions = samples[aligned.call_index] - trimmed
        keep = positions >= 0  # bases the trim cut away are not in the signal
        reads[item.read_id] = LabelledRead(item.read_id, signal, trimmed, positions[keep], codes(aligned.bases)[keep])
    return list(reads.values()), skipped


def _skip_reason(item: Read | object, config: ModelConfig, alignments: dict[str, Alignment], options: AlignedReads,
                 done: dict[str, LabelledRead], dev_loci: tuple[tuple[str, int, int], ...]) -> str:
    if not isinstance(item, Read):
        return "unreadable"
    if item.read_id in done:
        return "duplicate read id"
    if item.read_id in options.holdout:
        return "held out"
    if wrong := other_pore(item, config):
        return wrong
    aligned = alignments[item.read_id]
    contig, start, end = aligned.locus
    if any(c == contig and s < end and start < e for c, s, e in dev_loci):
        return "on the R10.4.1 dev set's reference stretch"
    if aligned.identity < options.min_identity:
        return f"alignment identity below {options.min_identity:g}"
    if aligned.call_samples.size and aligned.call_samples[-1] >= item.num_samples:
        return "move table longer than the signal"
    return "" if set(aligned.bases) <= set("ACGT") else "reference bases other than ACGT"
