"""A tiny FASTA reader and writer: multi-record, plain or gzip (by magic bytes, not by name).

Enough for references and for the simulator's truth file; anything that is
not FASTA fails with one :class:`EdgecallError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path
from typing import IO, Iterable

from edgecall.errors import EdgecallError

GZIP_MAGIC = b"\x1f\x8b"
LINE_WIDTH = 70  # bases per line written
_SEQUENCE_LINE = re.compile(r"[A-Za-z*\-.]*")  # IUPAC letters, gaps, stop


def read_fasta(path: Path | str) -> dict[str, str]:
    """name (first word of the header) -> sequence, upper-cased, in file order."""
    path = Path(path)
    text = _read_text(path)
    records: dict[str, str] = {}
    name: str | None = None
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if name is not None:
                records[name] = "".join(parts)
            fields = line[1:].split()
            if not fields:
                raise EdgecallError(f"{path}: line {number}: a FASTA header without a name")
            name, parts = fields[0], []
            if name in records:
                raise EdgecallError(f"{path}: line {number}: record '{name}' appears twice")
        elif name is None:
            raise EdgecallError(f"{path}: not a FASTA file (line {number} comes before any '>' header)")
        elif not _SEQUENCE_LINE.fullmatch(line):
            raise EdgecallError(f"{path}: line {number}: not a sequence line (record '{name}')")
        else:
            parts.append(line.upper())
    if name is None:
        raise EdgecallError(f"{path}: not a FASTA file (no '>' header)")
    records[name] = "".join(parts)
    return records


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
        if data[:2] == GZIP_MAGIC:
            data = gzip.decompress(data)
        return data.decode("ascii")
    except FileNotFoundError:
        raise EdgecallError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EdgecallError(f"{path}: is a folder, not a FASTA file") from None
    except UnicodeDecodeError:
        raise EdgecallError(f"{path}: not a FASTA file (binary data)") from None
    except (OSError, EOFError) as exc:
        raise EdgecallError(f"{path}: not a FASTA file ({type(exc).__name__}: {exc})") from None


class FastaWriter:
    """Write records one at a time (flat memory); a path ending in .gz is compressed."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self._raw: IO[bytes] = open(self.path, "wb")
            stream: IO[bytes] = self._raw
            if self.path.suffix == ".gz":  # mtime=0: the same records give the same bytes
                stream = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=6, mtime=0)
            self._handle = io.TextIOWrapper(stream, encoding="ascii", newline="\n")
        except OSError as exc:
            raise EdgecallError(f"{self.path}: cannot write ({exc.strerror or exc})") from None

    def write(self, name: str, sequence: str, comment: str = "") -> None:
        header = f">{name} {comment}" if comment else f">{name}"
        lines = (sequence[i : i + LINE_WIDTH] for i in range(0, len(sequence), LINE_WIDTH))
        self._handle.write(header + "\n" + "".join(line + "\n" for line in lines))

    def close(self) -> None:
        self._handle.close()  # closes the gzip layer; the raw file below it needs its own close
        self._raw.close()

    def __enter__(self) -> "FastaWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_fasta(records: Iterable[tuple[str, str, str]] | dict[str, str], path: Path | str) -> int:
    """Write (name, sequence, comment) triples, or a name -> sequence dict; returns the count."""
    items = ((n, s, "") for n, s in records.items()) if isinstance(records, dict) else records
    count = 0
    with FastaWriter(path) as writer:
        for name, sequence, comment in items:
            writer.write(name, sequence, comment)
            count += 1
    return count
