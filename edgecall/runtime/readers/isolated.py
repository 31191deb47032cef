"""Read fast5 files in a helper process, so a corrupt file cannot hang or crash the run.

libhdf5 can loop forever on some corrupt files (seen here: a mutated slow5tools
file spun inside H5HG__cache_heap_deserialize for minutes) and a native crash
would take the whole run down. Neither can be interrupted inside one process,
so each fast5 file is read by a child forked from a clean forkserver; a child
that yields nothing for ``stall_seconds`` is killed and the file is reported.
The server and its children die with the run, even a killed one (see
edgecall.runtime.parent_death), and leave Ctrl-C to the run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Collection, Iterator
from pathlib import Path

from edgecall.runtime.read import Read, ReadFailure

STALL_SECONDS = float(os.environ.get("EDGECALL_READ_STALL_SECONDS", "60"))  # no read for this long: give up on the file
CRASH_POLL_SECONDS = 0.5  # how often a silent child is checked for having died
PASS_SKIP_IDS_BELOW = 50_000  # larger skip sets are applied in the parent rather than pickled per file
_END = "__end__"
_context: mp.context.BaseContext | None = None


def _ctx() -> mp.context.BaseContext:
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(["edgecall.runtime.readers.forkserver_init"])
    return _context


def _work(path: Path, read_ids: Collection[str] | None, skip_ids: Collection[str] | None, out: mp.Queue) -> None:
    from edgecall.runtime.parent_death import die_with_parent
    from edgecall.runtime.readers.fast5 import iter_fast5

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the run's: it finishes what this child reads
    owner = mp.parent_process()  # its sentinel closes when the run that asked for this child is gone
    die_with_parent(owner.sentinel if owner is not None else None)

    for item in iter_fast5(path, read_ids, skip_ids):
        out.put(item)
    out.put(_END)


def iter_fast5_isolated(
    path: Path, read_ids: Collection[str] | None = None, skip_ids: Collection[str] | None = None,
    stall_seconds: float | None = None,
) -> Iterator[Read | ReadFailure]:
    """:func:`~edgecall.runtime.readers.fast5.iter_fast5` run in a child process with a watchdog."""
    stall = STALL_SECONDS if stall_seconds is None else stall_seconds
    ids = set(read_ids) if read_ids is not None else None
    skip = set(skip_ids) if skip_ids and len(skip_ids) < PASS_SKIP_IDS_BELOW else None
    ctx = _ctx()
    out = ctx.Queue(maxsize=16)
    child = ctx.Process(target=_work, args=(path, ids, skip, out), daemon=True)
    child.start()
    try:
        waited = 0.0  # seconds since the child's last item
        while True:
            alive = child.is_alive()  # asked first: a child gone by now has flushed all it put into the pipe
            wait = min(CRASH_POLL_SECONDS, stall - waited)
            try:
                item = out.get(timeout=max(wait, 0.0))
            except queue.Empty:
                if not alive:  # a native crash is reported at once, not after the stall limit
                    yield ReadFailure(path, f"the fast5 reader crashed on this file (exit status {child.exitcode}); the rest of the file is skipped")
                    return
                waited += wait
                if waited >= stall:
                    yield ReadFailure(path, f"reading stalled for {stall:g} s inside HDF5 (a corrupt file?); the rest of the file is skipped")
                    return
                continue
            waited = 0.0
            if isinstance(item, str) and item == _END:
                return
            if skip_ids and skip is None and isinstance(item, Read) and item.read_id in skip_ids:
                continue
            yield item
    finally:
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
        out.close()
