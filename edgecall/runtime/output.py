"""Where called reads go: one writer interface, FASTQ or SAM/BAM, and resuming into either.

FASTQ is the default (standard output, ``edgecall run reads.pod5 > calls.fastq``);
``-o x.bam`` / ``-o x.sam`` or ``--emit-bam`` write SAM/BAM with Dorado's
header and tags. When resuming, the old output's complete records come first,
in the same format, so the result is one whole file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol

from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead
from edgecall.runtime.resume import ResumeState, copy_prefix

FASTQ_SUFFIXES = (".fastq", ".fq", ".gz")


class ReadWriter(Protocol):
    """What the run loop needs of an output."""

    records: int  # reads written (a read's secondary/supplementary records count once)

    def write(self, called: CalledRead) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def output_format(path: Path | None, emit_bam: bool) -> str:
    """fastq, bam or sam, from ``-o``'s suffix and ``--emit-bam``."""
    suffix = path.suffix.lower() if path is not None else ""
    if suffix == ".sam":
        return "sam"
    if suffix == ".bam":
        return "bam"
    if emit_bam:
        if suffix in FASTQ_SUFFIXES:
            raise EdgecallError(f"{path}: --emit-bam writes BAM; name the output .bam or .sam (or leave -o out for stdout)")
        return "bam"
    return "fastq"


def open_output(
    path: Path | None, fmt: str, *, model_name: str, stride: int, emit_moves: bool,
    resume: ResumeState | None, header: dict | None = None, aligner=None,  # noqa: ANN001 - edgecall.runtime.align.Aligner
) -> ReadWriter:
    """The writer for ``fmt``; ``header`` (SAM/BAM) from :func:`edgecall.runtime.bam.bam_header`."""
    if resume is not None:
        if resume.format != fmt and not {resume.format, fmt} <= {"bam", "sam"}:
            raise EdgecallError(f"{resume.path}: is {resume.format.upper()}, but this run writes {fmt.upper()}; resume into the same format")
        dropped = f"; {resume.dropped} is dropped" if resume.dropped else ""
        sys.stderr.write(f"edgecall: resuming: {resume.records} reads already in {resume.path} are kept and skipped{dropped}\n")
    if fmt == "fastq":
        return _open_fastq(path, model_name, stride, emit_moves, resume)
    if sys.stdout.isatty() and path is None and fmt == "bam":
        raise EdgecallError("BAM is binary: redirect standard output to a file, or use -o calls.bam")
    assert header is not None
    return _open_hts(path, fmt, header, model_name, stride, emit_moves, resume, aligner)


def _same_file(path: Path | None, resume: ResumeState | None) -> bool:
    return resume is not None and path is not None and path.exists() and path.resolve() == resume.path.resolve()


def _open_fastq(path: Path | None, model_name: str, stride: int, emit_moves: bool, resume: ResumeState | None) -> ReadWriter:
    from edgecall.runtime.fastq import FastqWriter

    if _same_file(path, resume):
        assert resume is not None and path is not None
        if path.suffix == ".gz":
            raise EdgecallError(f"{path}: cannot resume into the same .gz file; write to a new file with -o")
        with open(path, "r+b") as fh:
            fh.truncate(resume.complete_bytes)
        return FastqWriter(path, model_name, emit_moves=emit_moves, stride=stride, append=True)
    writer = FastqWriter(path, model_name, emit_moves=emit_moves, stride=stride)
    if resume is not None:
        copy_prefix(resume, writer.write_raw)
    return writer


def _open_hts(
    path: Path | None, fmt: str, header: dict, model_name: str, stride: int, emit_moves: bool,
    resume: ResumeState | None, aligner,  # noqa: ANN001
) -> ReadWriter:
    from edgecall.runtime.bam import iter_complete

    if resume is not None:
        assert resume.hts is not None
        header = _resumed_header(header, resume)
    same = _same_file(path, resume)
    target = path.with_name(path.name + ".resume-tmp") if same and path is not None else path
    writer = _hts_writer(target, fmt, header, model_name, stride, emit_moves, aligner)
    if resume is not None:
        assert resume.hts is not None
        for segment in iter_complete(resume.path, resume.hts.complete):
            writer.write_segment(segment)
        writer.flush()
        if same:  # the copy replaces the old file; the open writer goes on at its end
            assert path is not None and target is not None
            os.replace(target, path)
            writer.path = path
    return writer


def require_pysam() -> None:
    """pysam (htslib) writes SAM/BAM; it has no Windows build, so a missing one gets a clear error, not a traceback."""
    try:
        import pysam  # noqa: F401
    except ImportError:
        raise EdgecallError("SAM/BAM output needs pysam (pip install pysam; Linux and macOS only); FASTQ output works without it") from None


def _hts_writer(path: Path | None, fmt: str, header: dict, model_name: str, stride: int, emit_moves: bool, aligner):  # noqa: ANN001, ANN202
    if aligner is not None:
        from edgecall.runtime.align import AlignedBamWriter

        return AlignedBamWriter(path, header, model_name, aligner, sam=fmt == "sam", emit_moves=emit_moves, stride=stride)
    from edgecall.runtime.bam import BamWriter

    return BamWriter(path, header, model_name, sam=fmt == "sam", emit_moves=emit_moves, stride=stride)


def _resumed_header(header: dict, resume: ResumeState) -> dict:
    """This run's header plus the old output's read groups it lacks; the references must be the same."""
    assert resume.hts is not None
    old = resume.hts.header
    if [(s["SN"], s["LN"]) for s in old.get("SQ", [])] != [(s["SN"], s["LN"]) for s in header.get("SQ", [])]:
        raise EdgecallError(f"{resume.path}: its reference sequences (@SQ) differ from this run's; resume with the same --reference")
    ids = {group["ID"] for group in header.get("RG", [])}
    merged = dict(header)
    merged["RG"] = list(header.get("RG", [])) + [group for group in old.get("RG", []) if group["ID"] not in ids]
    return merged
