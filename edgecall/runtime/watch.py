"""Follow a folder MinKNOW is writing to: yield each input file once, when it is complete.

A file counts as complete when its size and modification time did not change
between two looks and it opens cleanly (a pod5 being written has no footer yet
and does not open). A file that never opens cleanly but stops changing for
``give_up_seconds`` is handed on anyway, so the reader names it as bad.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from edgecall.runtime.read import IDLE, Idle
from edgecall.runtime.readers import SUFFIXES


def _opens_cleanly(path: Path) -> bool:
    try:
        if path.suffix.lower() == ".pod5":
            import pod5

            with pod5.Reader(path):
                return True
        import h5py

        with h5py.File(path, "r"):
            return True
    except Exception:  # any failure to open means: not finished (yet)
        return False


def _candidates(folder: Path, recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    try:
        return sorted(p for p in folder.glob(pattern) if p.suffix.lower() in SUFFIXES and p.is_file())
    except OSError:
        return []


def watch_folder(
    folder: Path,
    *,
    recursive: bool = False,
    idle_seconds: float | None = None,
    poll_seconds: float = 1.0,
    give_up_seconds: float = 60.0,
    already: set[Path] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Path | Idle]:
    """Yield complete input files of ``folder`` (those present first), then new ones as they finish.

    Once no complete file is waiting, :data:`IDLE` follows the files yielded
    before it, so the reads already in the pipeline are finished and written
    now rather than when the next file comes. Stops after ``idle_seconds``
    without a new complete file (never when None), or when ``stop()`` says so.
    """
    seen: set[Path] = set(p.resolve() for p in (already or set()))
    looks: dict[Path, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, first seen unchanged)
    last_new = time.monotonic()
    announced = False
    owe_idle = True  # files given before the watch (or yielded since the last IDLE) are not flushed yet
    while not stop():
        found = False
        for path in _candidates(folder, recursive):
            key = path.resolve()
            if key in seen:
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            now = time.monotonic()
            previous = looks.get(key)
            if previous is None or previous[:2] != (st.st_size, st.st_mtime_ns):
                looks[key] = (st.st_size, st.st_mtime_ns, now)
                continue
            if st.st_size > 0 and _opens_cleanly(path) or now - previous[2] >= give_up_seconds:
                seen.add(key)
                looks.pop(key, None)
                found = True
                last_new = time.monotonic()
                owe_idle = True
                yield path
        if idle_seconds is not None and time.monotonic() - last_new >= idle_seconds:
            return
        if not found:
            if owe_idle and not stop():
                owe_idle = False
                yield IDLE
            if not announced:
                sys.stderr.write(f"edgecall: watching {folder} for new files" +
                                 (f" (stopping after {idle_seconds:g} s without one)" if idle_seconds is not None else " (Ctrl-C to stop)") + "\n")
                announced = True
            time.sleep(poll_seconds)
