"""The ``edgecall`` command line (``edgecall.cli.main``).

Set before numpy loads: numpy's OpenBLAS and scipy's (which numba loads with the
decoder) each start a thread per further core that spins for about 0.1 s of CPU
after starting, on cores the run needs. Nothing the commands do hands BLAS work
big enough to share between threads, so one thread each is enough; a user's own
``OPENBLAS_NUM_THREADS`` still wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
