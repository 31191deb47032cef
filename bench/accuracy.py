"""Read accuracy against a reference genome, the way basecaller papers measure it.

Each read is mapped with minimap2 (mappy, map-ont preset); its identity is the
BLAST identity of the primary alignment: matches / alignment columns (matches,
mismatches, insertions and deletions). Unmapped reads are counted, not scored.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(frozen=True)
class AccuracyReport:
    reads: int  # reads given
    mapped: int  # reads with a primary alignment
    median_identity: float  # over mapped reads
    mean_identity: float
    identities: dict[str, float]  # read id -> identity

    def line(self) -> str:
        return (f"median identity {self.median_identity:.4f} (mean {self.mean_identity:.4f}) "
                f"over {self.mapped}/{self.reads} mapped reads")


def measure(calls: Iterable[tuple[str, str]], reference: Path) -> AccuracyReport:
    """``calls``: (read id, sequence) pairs."""
    import mappy

    aligner = mappy.Aligner(str(reference), preset="map-ont")
    if not aligner:
        raise RuntimeError(f"{reference}: minimap2 could not index it")
    identities: dict[str, float] = {}
    total = 0
    for read_id, sequence in calls:
        total += 1
        hits = [h for h in aligner.map(sequence) if h.is_primary]
        if hits:
            best = max(hits, key=lambda h: h.mlen)
            identities[read_id] = best.mlen / best.blen
    values = list(identities.values())
    return AccuracyReport(
        reads=total,
        mapped=len(values),
        median_identity=statistics.median(values) if values else 0.0,
        mean_identity=statistics.fmean(values) if values else 0.0,
        identities=identities,
    )


def compiled(model: Path, folder: Path) -> Path:
    """``model`` itself if it is a package (or a bundled name), else (a training checkpoint, a Bonito or Dorado
    folder) its package compiled for the CPU into ``folder``."""
    package = (model / "model.onnx").is_file()
    source = model.suffix == ".pt" or (model / "config.toml").is_file()
    if package or not source:
        return model
    from edgecall.export.compile import compile_checkpoint

    t0 = time.perf_counter()
    compile_checkpoint(model, folder, targets=["CPU"], name=model.parent.name if model.suffix == ".pt" else model.name)
    print(f"compiled {model} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return folder


def fastq_calls(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text().split("\n")
    return [(lines[i][1:].split()[0], lines[i + 1]) for i in range(0, len(lines) - 3, 4)]
