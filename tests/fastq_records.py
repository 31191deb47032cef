"""Parse FASTQ output strictly, for assertions."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Record:
    read_id: str
    tags: dict[str, str]  # "qs" -> "f:12.3"
    sequence: str
    quality: str


def parse(text: str) -> list[Record]:
    lines = text.split("\n")
    assert lines[-1] == "", "output must end with a newline"
    lines = lines[:-1]
    assert len(lines) % 4 == 0, "FASTQ must have 4 lines per record"
    records = []
    for i in range(0, len(lines), 4):
        header, seq, plus, qual = lines[i : i + 4]
        assert header.startswith("@") and plus == "+", f"bad record at line {i + 1}"
        assert len(seq) == len(qual), f"sequence and quality lengths differ at line {i + 1}"
        assert set(seq) <= set("ACGT"), f"bad bases at line {i + 2}"
        assert all(33 <= ord(c) <= 33 + 50 for c in qual)
        fields = header[1:].split("\t")
        tags = {}
        for field in fields[1:]:
            key, value = field.split(":", 1)
            tags[key] = value
        records.append(Record(fields[0], tags, seq, qual))
    return records


def read_fastq(path: Path) -> list[Record]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return parse(fh.read())
