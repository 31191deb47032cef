"""What the fast5 reader's forkserver imports as it starts (see isolated._ctx).

It loads the fast5 reader once for every child forked from the server, and
has the server die with the run that started it (see parent_death): its
children in turn die with it. On Linux the kernel signals the server when the
thread that started it ends (the run's reading thread): a later run's first
fast5 starts a new server, as multiprocessing restarts a dead one. Imported
anywhere else, this module changes nothing.
"""

from __future__ import annotations

import sys

from edgecall.runtime.parent_death import die_with_parent
from edgecall.runtime.readers import fast5  # noqa: F401  (preloaded for the children)


def _in_forkserver_start() -> bool:
    """True while multiprocessing's forkserver main() imports its preload modules."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    frame = sys._getframe(1)
    while forkserver is not None and frame is not None:
        if frame.f_code is forkserver.main.__code__:
            return True
        frame = frame.f_back
    return False


if _in_forkserver_start():
    die_with_parent()
