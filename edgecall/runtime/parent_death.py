"""Helper processes die with the run that started them, even when it is killed with ``kill -9``.

On Linux the kernel kills the process when its parent dies (prctl
PR_SET_PDEATHSIG), which works even while it spins inside native code holding
the GIL (a corrupt fast5 can hang libhdf5). Elsewhere (macOS), and as well, a
watchdog thread waits on a pipe the owning process holds open: the pipe
reads as closed once the owner is gone, however it died.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sentinel: int | None = None) -> None:
    """Have this process killed when its parent dies; with ``sentinel`` (a pipe's read end
    whose write end the owner holds), also leave when that pipe closes."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0 and os.getppid() != parent:
            os._exit(1)  # the parent died before the request took effect
    if sentinel is not None:
        threading.Thread(target=_leave_when_closed, args=(sentinel,), name="edgecall-parent-watch", daemon=True).start()


def _leave_when_closed(sentinel: int) -> None:
    from multiprocessing.connection import wait

    wait([sentinel])  # readable only at end of file: every write end is closed, so the owner is gone
    os._exit(1)
