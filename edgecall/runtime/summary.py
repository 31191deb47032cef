"""Per-read summary TSV (``--emit-summary``): one row per read, called or not."""

from __future__ import annotations

from pathlib import Path

from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead, ReadFailure

COLUMNS = (
    "read_id", "filename", "channel", "num_samples", "trimmed_samples",
    "sequence_length", "mean_qscore", "duration", "status",
)


class SummaryWriter:
    def __init__(self, path: Path) -> None:
        try:
            self._out = open(path, "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise EdgecallError(f"{path}: cannot write summary ({exc.strerror or exc})") from None
        self._out.write("\t".join(COLUMNS) + "\n")

    def called(self, called: CalledRead, status: str = "pass") -> None:
        r = called.read
        row = (
            r.read_id, r.source.name, str(r.channel), str(r.num_samples), str(called.trimmed_samples),
            str(len(called.sequence)), f"{called.mean_qscore:.2f}", f"{r.num_samples / r.sample_rate:.3f}", status,
        )
        self._out.write("\t".join(row) + "\n")

    def failed(self, failure: ReadFailure) -> None:
        reason = " ".join(failure.reason.split()).replace("\t", " ")
        row = (failure.read_id or "-", failure.source.name, "-", "-", "-", "-", "-", "-", f"failed: {reason}")
        self._out.write("\t".join(row) + "\n")

    def close(self) -> None:
        self._out.close()
