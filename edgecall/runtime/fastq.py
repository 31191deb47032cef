"""FASTQ output: whole records only, stdout or a file (.gz when the name says so)."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path
from typing import BinaryIO

from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead
from edgecall.runtime.tags import fastq_tags, format_tag

FLUSH_EVERY = 16  # records between flushes: a crash loses at most the unflushed tail, never half a record
FLUSH_BYTES = 1 << 20  # or this many bytes, whichever comes first
# zlib's default, as gzip(1) and dorado's writers use: level 9 took 30x as long on move tables
# (0,1,0,0,... text makes its longer match search slow) for a file 5 % smaller
GZIP_LEVEL = 6


def format_record(called: CalledRead, model_name: str, *, emit_moves: bool = False, stride: int = 1) -> str:
    """One FASTQ record with Dorado's read tags in the header (see edgecall.runtime.tags)."""
    tags = fastq_tags(called, model_name, emit_moves=emit_moves, stride=stride)
    header = "\t".join([f"@{called.read.read_id}", *map(format_tag, tags)])
    return f"{header}\n{called.sequence}\n+\n{called.qstring}\n"


class FastqWriter:
    """Buffers whole records and hands them to the OS in one write per flush.

    So a crash or kill can lose the unflushed tail but never leaves half a record
    in a plain file or on stdout.
    """

    def __init__(
        self, path: Path | None, model_name: str, *, emit_moves: bool = False, stride: int = 1, append: bool = False
    ) -> None:
        self.path = path
        self.model_name = model_name
        self.emit_moves = emit_moves
        self.stride = stride
        self.records = 0
        self._pending: list[bytes] = []
        self._good_bytes = 0  # bytes of whole records this writer handed to the OS
        self._pending_bytes = 0
        self._out: BinaryIO
        self._start_bytes = 0
        if path is None:
            self._out = sys.stdout.buffer
        else:
            try:
                mode = "ab" if append else "wb"
                self._out = gzip.open(path, mode, compresslevel=GZIP_LEVEL) if path.suffix == ".gz" else open(path, mode, buffering=0)
                self._start_bytes = path.stat().st_size if append and path.suffix != ".gz" else 0
            except OSError as exc:
                raise EdgecallError(f"{path}: cannot write output ({exc.strerror or exc})") from None

    def write(self, called: CalledRead) -> None:
        record = format_record(called, self.model_name, emit_moves=self.emit_moves, stride=self.stride).encode("ascii")
        self._pending.append(record)
        self._pending_bytes += len(record)
        self.records += 1
        if len(self._pending) >= FLUSH_EVERY or self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def write_raw(self, data: bytes) -> None:
        """Pass through bytes that are already whole records (resuming copies old output)."""
        self.flush()
        self._write(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            self._write(data)
        try:
            self._out.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._write_error(exc) from None

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self._out.write(view)
                view = view[written if written is not None else len(view):]
        except BrokenPipeError:
            raise
        except OSError as exc:
            self._cut_back()
            raise self._write_error(exc) from None
        self._good_bytes += len(data)

    def _cut_back(self) -> None:
        """After a failed write (disk full), drop the partial record from a plain file."""
        if self.path is None or self.path.suffix == ".gz":
            return
        try:
            os.ftruncate(self._out.fileno(), self._start_bytes + self._good_bytes)
        except OSError:
            pass

    def _write_error(self, exc: OSError) -> EdgecallError:
        where = self.path if self.path is not None else "standard output"
        return EdgecallError(
            f"{where}: writing failed ({exc.strerror or exc}); the output stops at a whole record "
            f"(resume with --resume-from)"
        )

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.path is not None:
                self._out.close()
