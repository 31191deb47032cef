"""FASTQ output: whole records only, stdout or a file (.gz when the name says so)."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import BinaryIO

from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead

FLUSH_EVERY = 16  # records between flushes: a crash loses at most the unflushed tail, never half a record
FLUSH_BYTES = 1 << 20  # or this many bytes, whichever comes first


def format_record(called: CalledRead, model_name: str, *, emit_moves: bool = False, stride: int = 1) -> str:
    """One FASTQ record with dorado-style SAM tags in the header."""
    read = called.read
    tags = [
        f"qs:f:{called.mean_qscore:.2f}",
        f"ch:i:{read.channel}",
        f"st:Z:{read.start_time}",
        f"RG:Z:{read.run_id}_{model_name}",
    ]
    if emit_moves:
        tags.append("mv:B:c," + ",".join([str(stride), *map(str, called.moves.tolist())]))
    header = "\t".join([f"@{read.read_id}", *tags])
    return f"{header}\n{called.sequence}\n+\n{called.qstring}\n"


class FastqWriter:
    """Buffers whole records and hands them to the OS in one write per flush.

    So a crash or kill can lose the unflushed tail but never leaves half a record
    in a plain file or on stdout.
    """

    def __init__(self, path: Path | None, model_name: str, *, emit_moves: bool = False, stride: int = 1) -> None:
        self.path = path
        self.model_name = model_name
        self.emit_moves = emit_moves
        self.stride = stride
        self.records = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._out: BinaryIO
        if path is None:
            self._out = sys.stdout.buffer
        else:
            try:
                self._out = gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb", buffering=0)
            except OSError as exc:
                raise EdgecallError(f"{path}: cannot write output ({exc.strerror or exc})") from None

    def write(self, called: CalledRead) -> None:
        record = format_record(called, self.model_name, emit_moves=self.emit_moves, stride=self.stride).encode("ascii")
        self._pending.append(record)
        self._pending_bytes += len(record)
        self.records += 1
        if len(self._pending) >= FLUSH_EVERY or self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            view = memoryview(data)
            while view:
                written = self._out.write(view)
                view = view[written if written is not None else len(view):]
        self._out.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self.path is not None:
                self._out.close()
