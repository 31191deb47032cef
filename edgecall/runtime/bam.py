"""BAM and SAM output through pysam (htslib), with Dorado's header and read tags.

Header (Dorado's SAM specification page): ``@HD VN:1.6 SO:unknown``; ``@PG
ID:basecaller PN:edgecall VN CL``; one ``@RG`` per run: ``ID:{run_id}_{model}
PU:{flow cell} PM:{device} DT:{acquisition start} PL:ONT DS:runid=...
basecall_model=... model_stride=... LB:{sample} SM:{sample}``; ``@SQ`` lines
when aligning. Records: unmapped (flag 4) unless aligned, with the tags of
:mod:`edgecall.runtime.tags`. BGZF blocks are flushed every few records, so a
crash loses only the tail, and :func:`scan_hts` finds the complete records of
a BAM cut off mid-block.
"""

from __future__ import annotations

import array
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysam

from edgecall import __version__
from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead, RunInfo
from edgecall.runtime.tags import read_group_id, read_tags

FLUSH_EVERY = 16  # records between BGZF flushes, as the FASTQ writer
Header = dict[str, Any]  # pysam's header dict


def bam_header(
    runs: Mapping[str, RunInfo], model_name: str, stride: int, command_line: str,
    references: Sequence[tuple[str, int]] = (),
) -> Header:
    """The header Dorado writes for these runs; ``references``: (name, length) of each @SQ."""
    groups = []
    for run_id, run in sorted(runs.items()):
        group = {"ID": read_group_id(run_id, model_name)}
        if run.flow_cell_id:
            group["PU"] = run.flow_cell_id
        if run.device_id:
            group["PM"] = run.device_id
        if run.acquisition_start:
            group["DT"] = run.acquisition_start
        group["PL"] = "ONT"
        group["DS"] = f"runid={run_id} basecall_model={model_name} model_stride={stride}"
        if run.sample_id:
            group["LB"] = group["SM"] = run.sample_id
        groups.append(group)
    header: Header = {"HD": {"VN": "1.6", "SO": "unknown"}}
    if references:
        header["SQ"] = [{"SN": name, "LN": length} for name, length in references]
    header["RG"] = groups
    header["PG"] = [{"ID": "basecaller", "PN": "edgecall", "VN": __version__, "CL": command_line}]
    return header


def read_header(path: Path) -> Header:
    """The header of a SAM/BAM file (``--bam-header``: one header shared by a workflow's shards)."""
    try:
        with _quiet(), pysam.AlignmentFile(str(path), "r", check_sq=False) as handle:
            return handle.header.to_dict()
    except (OSError, ValueError) as exc:
        raise EdgecallError(f"{path}: not a readable SAM/BAM header ({_first_line(exc)})") from None


@dataclass(frozen=True)
class HtsScan:
    """The complete records at the start of a (possibly cut-off) SAM/BAM file."""

    header: Header
    read_ids: frozenset[str]  # of the complete primary records
    records: int  # complete primary records (reads)
    complete: int  # complete records of any kind: the prefix a resume copies
    truncated: bool  # it ended inside a record or block (a crash)


def scan_hts(path: Path) -> HtsScan:
    """Read ids of the complete records; a cut-off end (crash) is noted, not an error.

    htslib returns only whole BAM records; a SAM line cut off by a crash may
    still parse, so a SAM file's last line counts only when it ends in a newline.
    """
    ids: set[str] = set()
    complete, truncated, last = 0, False, ("", False)
    try:
        with _reading(path) as handle:
            header = handle.header.to_dict()
            is_bam = handle.is_bam
            truncated = not _has_eof(handle)
            try:
                for segment in handle.fetch(until_eof=True):
                    primary = not (segment.is_secondary or segment.is_supplementary)
                    if primary:
                        ids.add(segment.query_name)
                    complete += 1
                    last = (segment.query_name, primary)
            except (OSError, ValueError):
                truncated = True  # the last block or record was cut off
    except (OSError, ValueError) as exc:
        raise EdgecallError(f"{path}: not a readable SAM/BAM file ({_first_line(exc)}); nothing to resume from") from None
    if not is_bam and complete and not _ends_with_newline(path):
        complete, truncated = complete - 1, True
        if last[1]:
            ids.discard(last[0])
    return HtsScan(header, frozenset(ids), len(ids), complete, truncated)


def iter_complete(path: Path, count: int) -> Iterator[pysam.AlignedSegment]:
    """The first ``count`` records of a file :func:`scan_hts` read (its complete ones), in order."""
    with _reading(path) as handle:
        for _, segment in zip(range(count), handle.fetch(until_eof=True)):  # fetch: pysam iterates SAM without @SQ only so
            yield segment


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() == 0:
            return True
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


class BamWriter:
    """Writes called reads as SAM/BAM records; ``path`` None is standard output."""

    def __init__(
        self, path: Path | None, header: Header, model_name: str, *, sam: bool = False,
        emit_moves: bool = False, stride: int = 1,
    ) -> None:
        self.path = path
        self.model_name = model_name
        self.emit_moves = emit_moves
        self.stride = stride
        self.records = 0
        self._groups = {group["ID"] for group in header.get("RG", [])}
        self._warned: set[str] = set()
        target = str(path) if path is not None else "-"
        try:
            self._out = pysam.AlignmentFile(target, "w" if sam else "wb", header=header)
        except (OSError, ValueError) as exc:
            where = path if path is not None else "standard output"
            raise EdgecallError(f"{where}: cannot write {'SAM' if sam else 'BAM'} output ({_first_line(exc)})") from None
        self.header = self._out.header

    def write(self, called: CalledRead) -> None:
        for segment in self.segments(called):
            self.write_segment(segment)
        self.records += 1
        if self.records % FLUSH_EVERY == 0:
            self.flush()

    def segments(self, called: CalledRead) -> list[pysam.AlignedSegment]:
        """The read's records: one unmapped record (alignment adds its own in :mod:`edgecall.runtime.align`)."""
        segment = pysam.AlignedSegment(self.header)
        segment.query_name = called.read.read_id
        segment.flag = 4
        segment.reference_id = -1
        segment.reference_start = -1
        segment.mapping_quality = 0
        segment.query_sequence = called.sequence
        segment.query_qualities = pysam.qualitystring_to_array(called.qstring)
        self.tag(segment, called)
        return [segment]

    def tag(self, segment: pysam.AlignedSegment, called: CalledRead) -> None:
        """Dorado's read tags on one record (every record of a read carries them)."""
        tags = read_tags(called, self.model_name, emit_moves=self.emit_moves, stride=self.stride)
        group = tags[-1 - self.emit_moves][2]
        if group not in self._groups and group not in self._warned:
            self._warned.add(str(group))
            sys.stderr.write(f"edgecall: read group {group} is not in the BAM header (a run the header was not made for)\n")
        values = []
        for name, kind, value in tags:
            if kind == "B:c":
                assert isinstance(value, list)
                values.append((name, array.array("b", value)))
            else:
                values.append((name, value, kind))
        segment.set_tags(values)

    def write_segment(self, segment: pysam.AlignedSegment) -> None:
        try:
            self._out.write(segment)
        except OSError as exc:
            raise self._error(exc) from None

    def flush(self) -> None:
        try:
            self._out.flush()
        except OSError as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        try:
            self._out.close()
        except OSError as exc:
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> EdgecallError:
        where = self.path if self.path is not None else "standard output"
        return EdgecallError(f"{where}: writing failed ({exc.strerror or _first_line(exc)}); resume with --resume-from")


def _has_eof(handle: pysam.AlignmentFile) -> bool:
    """BAM files end with an empty BGZF block; its absence means the writer never closed the file (SAM: no marker)."""
    if not handle.is_bam:
        return True
    with open(handle.filename, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        if size < 28:
            return False
        fh.seek(size - 28)
        return fh.read(28) == _BGZF_EOF


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


class _quiet:
    """htslib and pysam warn about truncated files; a resume expects them, so keep them quiet."""

    def __enter__(self) -> None:
        self._before = pysam.set_verbosity(0)
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        self._warnings.__exit__(*exc)
        pysam.set_verbosity(self._before)


@contextmanager
def _reading(path: Path) -> Iterator[pysam.AlignmentFile]:
    """A SAM/BAM opened for reading, even when cut off; closing a cut-off BAM reports an error, which is expected."""
    with _quiet():
        handle = pysam.AlignmentFile(str(path), "r", check_sq=False, ignore_truncation=True)
        try:
            yield handle
        finally:
            try:
                handle.close()
            except OSError:
                pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
