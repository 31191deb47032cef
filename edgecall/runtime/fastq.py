"""FASTQ output: whole records only, stdout or a file (.gz when the name says so)."""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path
from typing import TextIO

from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead

FLUSH_EVERY = 64  # records between flushes: a crash loses at most the unflushed tail, never half a record


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
    def __init__(self, path: Path | None, model_name: str, *, emit_moves: bool = False, stride: int = 1) -> None:
        self.path = path
        self.model_name = model_name
        self.emit_moves = emit_moves
        self.stride = stride
        self.records = 0
        self._out: TextIO
        if path is None:
            self._out = sys.stdout
        else:
            try:
                if path.suffix == ".gz":
                    self._out = io.TextIOWrapper(gzip.open(path, "wb"), encoding="ascii", newline="\n")
                else:
                    self._out = open(path, "w", encoding="ascii", newline="\n")
            except OSError as exc:
                raise EdgecallError(f"{path}: cannot write output ({exc.strerror or exc})") from None

    def write(self, called: CalledRead) -> None:
        self._out.write(format_record(called, self.model_name, emit_moves=self.emit_moves, stride=self.stride))
        self.records += 1
        if self.records % FLUSH_EVERY == 0:
            self._out.flush()

    def close(self) -> None:
        self._out.flush()
        if self.path is not None:
            self._out.close()
