"""Per-read sequencing summary (``--emit-summary``) with the columns QC tools read.

Column names are those of Dorado's sequencing summary (``dorado summary``,
Guppy's ``sequencing_summary.txt`` before it): NanoPlot ``--summary``
(nanoget) reads ``channel start_time duration sequence_length_template
mean_qscore_template``; pycoQC adds ``read_id run_id passes_filtering``.
``start_time`` is seconds since the acquisition started, ``template_*`` the
part after the trimmed start. ``num_samples`` and ``trimmed_samples`` are
edgecall's own (exact sample counts for training on the calls).

One row per called read: kept reads pass, reads under ``--min-qscore`` have
``passes_filtering`` FALSE (as MinKNOW and Dorado write them); reads that could
not be called are named on stderr, not here. Each row reaches the OS before
its read's record is handed to the read output, so after a crash every read in
the output has its row; :meth:`SummaryWriter.resume` keeps the rows of the
reads a resumed output keeps and drops the rest, which are called again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from pathlib import Path

from edgecall.errors import EdgecallError
from edgecall.runtime.read import CalledRead

COLUMNS = (
    "filename", "read_id", "run_id", "channel", "mux", "start_time", "duration", "passes_filtering",
    "template_start", "num_events_template", "template_duration", "sequence_length_template",
    "mean_qscore_template", "end_reason", "sample_id", "experiment_id", "num_samples", "trimmed_samples",
)


def summary_row(called: CalledRead, passed: bool) -> dict[str, str]:
    """One read's summary values as text, keyed by column."""
    r = called.read
    rate = r.sample_rate
    start = r.start_sample / rate
    return {
        "filename": r.source.name, "read_id": r.read_id, "run_id": r.run_id, "channel": str(r.channel),
        "mux": str(r.mux), "start_time": f"{start:.6f}", "duration": f"{r.num_samples / rate:.6f}",
        "passes_filtering": "TRUE" if passed else "FALSE",
        "template_start": f"{start + called.trimmed_samples / rate:.6f}", "num_events_template": "0",
        "template_duration": f"{(r.num_samples - called.trimmed_samples) / rate:.6f}",
        "sequence_length_template": str(len(called.sequence)), "mean_qscore_template": f"{called.mean_qscore:.2f}",
        "end_reason": r.end_reason or "unknown", "sample_id": r.run.sample_id, "experiment_id": r.run.experiment_id,
        "num_samples": str(r.num_samples), "trimmed_samples": str(called.trimmed_samples),
    }


class SummaryWriter:
    """Writes the header, then one flushed row per read."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self.rows = 0
        try:
            self._out = open(path, "a" if append else "w", encoding="utf-8", newline="\n")
        except OSError as exc:
            raise EdgecallError(f"{path}: cannot write summary ({exc.strerror or exc})") from None
        if not append:
            self._write("\t".join(COLUMNS) + "\n")

    @classmethod
    def resume(cls, path: Path, kept_ids: Collection[str]) -> SummaryWriter:
        """Keep the old summary's rows of ``kept_ids`` (the reads the resumed output keeps), once each; drop the rest.

        Old rows are matched by column name, so a summary from an older edgecall
        keeps what its columns hold. Kept reads without a row are counted on stderr.
        """
        kept = 0
        if path.is_file():
            temporary = path.with_name(path.name + ".resume-tmp")
            try:
                kept = _filter_rows(path, temporary, kept_ids)
                os.replace(temporary, path)
            except OSError as exc:
                raise EdgecallError(f"{path}: cannot rewrite the summary to resume ({exc.strerror or exc})") from None
            writer = cls(path, append=True)
        else:
            writer = cls(path)
        missing = len(kept_ids) - kept
        if missing:
            sys.stderr.write(f"edgecall: {missing} of the {len(kept_ids)} reads kept from the old output have no row in {path}\n")
        writer.rows = kept
        return writer

    def called(self, called: CalledRead, passed: bool = True) -> None:
        row = summary_row(called, passed)
        self._write("\t".join(row[c] for c in COLUMNS) + "\n")
        self.rows += 1

    def _write(self, text: str) -> None:
        try:
            self._out.write(text)
            self._out.flush()  # a row is whole on disk before its read's record is written
        except OSError as exc:
            raise EdgecallError(f"{self.path}: writing the summary failed ({exc.strerror or exc})") from None

    def close(self) -> None:
        self._out.close()


def _filter_rows(source: Path, target: Path, kept_ids: Collection[str]) -> int:
    """Copy the header and the first whole row of each kept read from ``source`` to ``target``; rows copied."""
    seen: set[str] = set()
    with open(source, encoding="utf-8", errors="replace", newline="") as old, \
            open(target, "w", encoding="utf-8", newline="\n") as new:
        new.write("\t".join(COLUMNS) + "\n")
        lines = iter(old)
        header_line = next(lines, "")
        if not header_line.endswith("\n"):
            return 0
        header = header_line.rstrip("\n").split("\t")
        for line in lines:
            if not line.endswith("\n"):
                break  # cut off by the crash
            values = dict(zip(header, line.rstrip("\n").split("\t")))
            read_id = values.get("read_id", "")
            if read_id in kept_ids and read_id not in seen:
                seen.add(read_id)
                new.write("\t".join(values.get(c, "") for c in COLUMNS) + "\n")
    return len(seen)
