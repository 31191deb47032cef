"""Resume an interrupted run from its output (FASTQ, SAM or BAM).

The complete records at the start of the old output are kept (a record cut off
by a crash is dropped) and their read ids are skipped, so the new output is the
old records plus the rest: one complete file. Files are streamed, never loaded
whole: a field run's FASTQ can be many GB.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

from edgecall.errors import EdgecallError

if TYPE_CHECKING:
    from edgecall.runtime.bam import HtsScan

BLOCK = 1 << 20


@dataclass(frozen=True)
class ResumeState:
    path: Path  # the old output
    read_ids: frozenset[str]  # ids of its complete records
    records: int  # complete records
    complete_bytes: int  # FASTQ: length (uncompressed) of its complete-record prefix
    dropped_bytes: int  # FASTQ: trailing bytes of a cut-off record, left out
    format: str = "fastq"  # fastq, bam or sam
    hts: HtsScan | None = None  # SAM/BAM: its header and complete records

    @property
    def dropped(self) -> str:
        """What was cut off at its end, for the resume message ('' when nothing)."""
        if self.hts is not None:
            return "a cut-off end" if self.hts.truncated else ""
        return f"a cut-off record at its end ({self.dropped_bytes} bytes)" if self.dropped_bytes else ""


def scan_output(path: Path) -> ResumeState:
    """The complete records of an old output, FASTQ (plain or gzip), SAM or BAM (told apart by content)."""
    if not path.is_file():
        raise EdgecallError(f"{path}: no such file to resume from")
    kind = _sniff(path)
    if kind == "fastq":
        return scan_fastq(path)
    from edgecall.runtime.bam import scan_hts

    scan = scan_hts(path)
    return ResumeState(path, scan.read_ids, scan.records, 0, 0, kind, scan)


def _sniff(path: Path) -> str:
    try:
        with _open(path) as fh:
            head = fh.read(4)
    except (OSError, EOFError):
        return "fastq"  # scan_fastq says what is wrong with it
    if head == b"BAM\x01":
        return "bam"
    return "sam" if head[:1] == b"@" and head[1:3] in (b"HD", b"SQ", b"RG", b"PG", b"CO") and head[3:4] == b"\t" else "fastq"


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]


def _lines(fh: BinaryIO):  # noqa: ANN202 - yields bytes lines; a cut-off gzip stream just ends
    try:
        yield from fh
    except (EOFError, gzip.BadGzipFile, OSError):
        return


def scan_fastq(path: Path) -> ResumeState:
    """Find the complete records of a (possibly cut-off) FASTQ, plain or gzip."""
    if not path.is_file():
        raise EdgecallError(f"{path}: no such file to resume from")
    ids: set[str] = set()
    complete = total = 0
    record: list[bytes] = []
    try:
        with _open(path) as fh:
            for line in _lines(fh):
                total += len(line)
                if not line.endswith(b"\n"):
                    break  # cut off mid-line
                record.append(line[:-1])
                if len(record) < 4:
                    continue
                header, seq, plus, qual = record
                record = []
                read_id = header[1:].split(b"\t", 1)[0]
                if not header.startswith(b"@") or plus != b"+" or len(seq) != len(qual) or not read_id:
                    if not ids:
                        raise EdgecallError(f"{path}: not a FASTQ file (bad first record); nothing to resume from")
                    break
                ids.add(read_id.decode("ascii", "replace"))
                complete = total
    except OSError as exc:
        raise EdgecallError(f"{path}: cannot read the output to resume from ({exc.strerror or exc})") from None
    return ResumeState(path, frozenset(ids), len(ids), complete, total - complete)


def copy_prefix(state: ResumeState, write: Callable[[bytes], None]) -> None:
    """Hand the old output's complete records (uncompressed) to ``write``, block by block."""
    left = state.complete_bytes
    with _open(state.path) as fh:
        while left > 0:
            block = fh.read(min(BLOCK, left))
            if not block:
                break
            write(block)
            left -= len(block)
