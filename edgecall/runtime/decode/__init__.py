"""CRF and CTC decoders: numba kernels, cached on disk per CPU after their first compile."""

from __future__ import annotations

import sys


def kernels_compiled() -> int:
    """How many of the decoders' kernels numba has compiled in this process instead of loading them from its
    disk cache: the exact sign of a first run after an install, which the wall time of loading only hints at
    (on a loaded machine, loading alone can take over a second)."""
    from numba.core.dispatcher import Dispatcher

    prefix = f"{__name__}."
    return sum(sum(value.stats.cache_misses.values())
               for name, module in list(sys.modules.items()) if name.startswith(prefix)
               for value in vars(module).values() if isinstance(value, Dispatcher))
