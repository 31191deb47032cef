"""``--reference``: align called reads with minimap2 (through ``mappy``) into BAM/SAM records.

The index is built (or an ``.mmi`` loaded) once per run. Records follow
minimap2's SAM output: the first primary hit is the primary record, further
primary-chain hits are supplementary (0x800, soft-clipped as ``-Y`` writes
them, so each keeps its sequence), non-primary hits are secondary (0x100, no
SEQ/QUAL, as minimap2 writes them); ``NM``, ``MD`` and ``tp:A`` on each, and
Dorado's read tags on every record. An unmapped read is one unmapped record.

mappy releases the GIL while it maps, so reads align on a small thread pool
beside the basecaller; records are written in call order.
"""

from __future__ import annotations

import os
import shlex
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mappy
import pysam

from edgecall.errors import EdgecallError
from edgecall.runtime.bam import FLUSH_EVERY, BamWriter, Header
from edgecall.runtime.read import CalledRead

PRESET = "map-ont"
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
# minimap2 options --mm2-opts understands -> mappy.Aligner keyword (all take an integer)
_INT_OPTIONS = {"-k": "k", "-w": "w", "-N": "best_n", "-r": "bw", "-m": "min_chain_score", "-s": "min_dp_score", "-n": "min_cnt"}
_CIGAR_S = 4  # soft clip


def parse_mm2_opts(text: str) -> tuple[str, dict[str, int], bool]:
    """(preset, mappy keywords, keep secondary) from a minimap2-style option string, e.g. ``"-k 17 --secondary=no"``."""
    preset, keywords, secondary = PRESET, {}, True
    words = shlex.split(text)
    index = 0
    while index < len(words):
        word = words[index]
        if word in ("-x", *_INT_OPTIONS) and index + 1 >= len(words):
            raise EdgecallError(f"--mm2-opts: {word} needs a value")
        if word == "-x":
            preset, index = words[index + 1], index + 2
        elif word in _INT_OPTIONS:
            try:
                keywords[_INT_OPTIONS[word]] = int(words[index + 1])
            except ValueError:
                raise EdgecallError(f"--mm2-opts: {word} takes an integer, got {words[index + 1]!r}") from None
            index += 2
        elif word in ("--secondary=yes", "--secondary=no"):
            secondary, index = word.endswith("yes"), index + 1
        elif word == "-Y":  # soft-clip supplementary records: what edgecall writes anyway
            index += 1
        else:
            known = ", ".join(["-x", *_INT_OPTIONS, "--secondary=yes|no", "-Y"])
            raise EdgecallError(f"--mm2-opts: {word!r} is not supported (supported: {known})")
    return preset, keywords, secondary


class Aligner:
    """A minimap2 index of the reference, built once; :meth:`map` is safe from many threads."""

    def __init__(self, reference: Path, mm2_opts: str = "", threads: int | None = None) -> None:
        if not reference.is_file():
            raise EdgecallError(f"{reference}: no such reference file")
        preset, keywords, self.secondary = parse_mm2_opts(mm2_opts)
        workers = max(1, threads or os.cpu_count() or 1)
        self._index = mappy.Aligner(str(reference), preset=preset, n_threads=workers, **keywords)
        if not self._index:
            raise EdgecallError(f"{reference}: cannot index it as a reference (not FASTA/FASTQ or a minimap2 .mmi for preset {preset})")
        self.references: list[tuple[str, int]] = []
        for name in self._index.seq_names:
            sequence = self._index.seq(name)
            if sequence is None:
                raise EdgecallError(f"{reference}: the index holds no sequences (built with --idx-no-seq); MD tags need them")
            self.references.append((name, len(sequence)))
        self._ids = {name: i for i, (name, _) in enumerate(self.references)}
        self.threads = workers

    def map(self, sequence: str) -> list[Any]:
        """mappy hits (with MD) for one read, best first; non-primary ones dropped with --secondary=no."""
        hits = list(self._index.map(sequence, MD=True))
        return hits if self.secondary else [hit for hit in hits if hit.is_primary]

    def reference_id(self, name: str) -> int:
        return self._ids[name]


class AlignedBamWriter(BamWriter):
    """A :class:`BamWriter` whose reads are aligned on worker threads before they are written, in order."""

    def __init__(self, path: Path | None, header: Header, model_name: str, aligner: Aligner, **kw: Any) -> None:
        super().__init__(path, header, model_name, **kw)
        self.aligner = aligner
        self._pool = ThreadPoolExecutor(max_workers=max(1, aligner.threads // 2), thread_name_prefix="edgecall-align")
        self._pending: deque[tuple[CalledRead, Future[list[Any]]]] = deque()

    def write(self, called: CalledRead) -> None:
        self._pending.append((called, self._pool.submit(self.aligner.map, called.sequence)))
        while self._pending and (len(self._pending) > 2 * self.aligner.threads or self._pending[0][1].done()):
            self._write_next()

    def _write_next(self) -> None:
        called, hits = self._pending.popleft()
        for segment in self.aligned_segments(called, hits.result()):
            self.write_segment(segment)
        self.records += 1
        if self.records % FLUSH_EVERY == 0:
            super().flush()

    def flush(self) -> None:
        while self._pending:
            self._write_next()
        super().flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()

    def aligned_segments(self, called: CalledRead, hits: list[Any]) -> list[pysam.AlignedSegment]:
        if not hits:
            return self.segments(called)
        records = []
        primary_seen = False
        for hit in hits:
            if hit.is_primary:
                flag = 0x800 if primary_seen else 0
                primary_seen = True
            else:
                flag = 0x100
            records.append(self._record(called, hit, flag))
        return records

    def _record(self, called: CalledRead, hit: Any, flag: int) -> pysam.AlignedSegment:
        length = len(called.sequence)
        reverse = hit.strand < 0
        segment = pysam.AlignedSegment(self.header)
        segment.query_name = called.read.read_id
        segment.flag = flag | (0x10 if reverse else 0)
        segment.reference_id = self.aligner.reference_id(hit.ctg)
        segment.reference_start = hit.r_st
        segment.mapping_quality = hit.mapq
        left, right = (length - hit.q_en, hit.q_st) if reverse else (hit.q_st, length - hit.q_en)
        cigar = [(op, n) for n, op in hit.cigar]
        if left:
            cigar.insert(0, (_CIGAR_S, left))
        if right:
            cigar.append((_CIGAR_S, right))
        segment.cigartuples = cigar
        if not flag & 0x100:  # secondary records carry no sequence, as minimap2 writes them
            sequence, quality = called.sequence, called.qstring
            if reverse:
                sequence, quality = sequence.translate(_COMPLEMENT)[::-1], quality[::-1]
            segment.query_sequence = sequence
            segment.query_qualities = pysam.qualitystring_to_array(quality)
        self.tag(segment, called)
        segment.set_tag("NM", hit.NM, "i")
        segment.set_tag("MD", hit.MD, "Z")
        segment.set_tag("tp", "P" if hit.is_primary else "S", "A")
        return segment
