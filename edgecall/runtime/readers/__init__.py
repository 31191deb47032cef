"""Find raw-signal files and stream their reads, one :class:`Read` at a time.

Bad data never raises here: a file or read that cannot be read becomes a
:class:`ReadFailure` with a one-line reason, so one corrupt file in a run of
thousands is counted and skipped. Only the user's own mistakes (a path that
does not exist, a folder without inputs) raise :class:`EdgecallError`.

The format modules are imported when first needed: ``pod5`` pulls in pyarrow
and polars (~0.15 s), which ``edgecall --help`` should not pay for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edgecall.errors import EdgecallError
from edgecall.runtime.read import Idle, Read, ReadFailure, RunInfo

SUFFIXES = (".pod5", ".fast5")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_REASON_CHARS = 300  # a reason is one line; library messages can be pages long


def find_inputs(paths: Sequence[Path], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of .pod5/.fast5 files.

    A file named explicitly must have one of those suffixes (its contents are
    checked only when read: a bad one becomes a ReadFailure); a folder gives
    the files with those suffixes (any case) in it, or below it with ``recursive``.
    """
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise EdgecallError(f"{path}: not a .pod5 or .fast5 file")
            found.add(path)
        elif path.is_dir():
            inputs = _inputs_in(path, recursive)
            if not inputs:
                raise EdgecallError(_empty_folder_message(path, recursive))
            found.update(inputs)
        elif path.exists():
            raise EdgecallError(f"{path}: not a file or folder")
        else:
            raise EdgecallError(f"{path}: no such file or folder")
    return sorted(found)


def iter_reads(
    paths: Iterable[Path | Idle], *, read_ids: Collection[str] | None = None, skip_ids: Collection[str] | None = None
) -> Iterator[Read | ReadFailure | Idle]:
    """Stream the reads of ``paths`` in order; with ``read_ids``, only those reads;
    reads in ``skip_ids`` (e.g. already called, when resuming) are passed over
    before their signal is loaded. ``paths`` may be a lazy iterator (watch mode)
    whose :class:`Idle` markers are passed on in place.

    Memory stays flat: one read's signal is held at a time (plus whatever the
    format library maps). Unknown suffixes and missing files yield a failure.
    """
    for entry in paths:
        if isinstance(entry, Idle):
            yield entry
            continue
        path = Path(entry)
        suffix = path.suffix.lower()
        if not path.is_file():
            yield ReadFailure(path, "no such file")
            continue
        if suffix == ".pod5":
            from edgecall.runtime.readers.pod5 import iter_pod5 as reader
        elif suffix == ".fast5":
            from edgecall.runtime.readers.isolated import iter_fast5_isolated as reader
        else:
            yield ReadFailure(path, f"unsupported file type '{path.suffix}' (expected .pod5 or .fast5)")
            continue
        try:
            yield from reader(path, read_ids, skip_ids)
        except Exception as exc:  # last resort: a reader bug or an unforeseen library error
            yield ReadFailure(path, "reading stopped: " + describe(exc))


def count_reads(paths: Iterable[Path]) -> int | None:
    """Reads in ``paths`` when every file says (pod5 stores its count); None when any cannot (fast5, unreadable)."""
    total = 0
    for path in map(Path, paths):
        if path.suffix.lower() != ".pod5":
            return None
        from edgecall.runtime.readers.pod5 import pod5_read_count

        count = pod5_read_count(path)
        if count is None:
            return None
        total += count
    return total


def run_infos(paths: Iterable[Path]) -> dict[str, RunInfo]:
    """run id -> its header facts, over the runs of ``paths``: a BAM header is written before the first read.

    pod5 files list their runs; a fast5 file is taken to hold one run, that of
    its first read (read in the isolated helper process, as calling does).
    Files that cannot be read add nothing here and fail when called.
    """
    runs: dict[str, RunInfo] = {}
    for path in map(Path, paths):
        suffix = path.suffix.lower()
        if not path.is_file():
            continue
        if suffix == ".pod5":
            from edgecall.runtime.readers.pod5 import pod5_runs

            for run_id, run in pod5_runs(path).items():
                runs.setdefault(run_id, run)
        elif suffix == ".fast5":
            from edgecall.runtime.readers.isolated import iter_fast5_isolated

            for item in iter_fast5_isolated(path):
                if isinstance(item, Read):
                    runs.setdefault(item.run_id, item.run)
                    break
    return runs


# ---- helpers shared by the format modules ---------------------------------


def describe(exc: BaseException) -> str:
    """One line for a library exception: its type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def is_read_id(text: str) -> bool:
    """ONT read ids are UUIDs; anything else would corrupt FASTQ headers and read-id filters."""
    return bool(_UUID.match(text))


def start_time_iso(acquisition_start: datetime, start_sample: int, sample_rate: int) -> str:
    """ISO-8601 UTC time of a read's first sample, as dorado writes the ``st:Z`` tag.

    dorado: acquisition start in whole ms since the epoch + round(start_sample
    * 1000 / sample_rate), printed as ``YYYY-MM-DDThh:mm:ss.mmm+00:00``. A naive
    ``acquisition_start`` is taken as UTC.
    """
    if acquisition_start.tzinfo is None:
        acquisition_start = acquisition_start.replace(tzinfo=timezone.utc)
    acquisition_ms = (acquisition_start - EPOCH) // timedelta(milliseconds=1)
    offset_ms = (2000 * start_sample + sample_rate) // (2 * sample_rate)  # round half up, exact
    moment = EPOCH + timedelta(milliseconds=acquisition_ms + offset_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond // 1000:03d}+00:00"


def _inputs_in(folder: Path, recursive: bool) -> list[Path]:
    """Input files in ``folder``; os.walk does not follow symlinked folders, so loops cannot trap it."""
    try:
        if not recursive:
            return [p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()]
        found = []
        for root, _dirs, files in os.walk(folder, onerror=_raise):
            found.extend(Path(root) / name for name in files if Path(name).suffix.lower() in SUFFIXES)
        return [p for p in found if p.is_file()]
    except OSError as exc:
        raise EdgecallError(f"{folder}: cannot list folder ({exc.strerror or exc})") from None


def _raise(exc: OSError) -> None:
    raise exc


def _empty_folder_message(folder: Path, recursive: bool) -> str:
    if not recursive and _inputs_in(folder, recursive=True):
        return f"{folder}: no .pod5 or .fast5 files here, but its subfolders have some (use -r to search them)"
    return f"{folder}: no .pod5 or .fast5 files found"


def first_read(paths: Sequence[Path], files: int = 3, tries: int = 5) -> Read | None:
    """The first readable read of the first few files: its run info picks the model when none is named."""
    for path in list(paths)[:files]:
        reads = iter_reads([path])
        try:
            for _, item in zip(range(tries), reads):
                if isinstance(item, Read):
                    return item
                if item.read_id is None:
                    break  # the whole file failed; the run will say so
        finally:
            reads.close()
    return None
