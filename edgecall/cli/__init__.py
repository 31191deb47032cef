"""The ``edgecall`` command line (``edgecall.cli.main``).

Two settings are made here, before numpy or numba loads, unless the user made them:

- ``OPENBLAS_NUM_THREADS=1``: numpy's OpenBLAS and scipy's (which numba loads
  with the decoder) each start a thread per further core that spins for about
  0.1 s of CPU after starting, on cores the run needs. Nothing the commands do
  hands BLAS work big enough to share between threads.
- ``NUMBA_CACHE_DIR``: the decoder's compiled kernels go to the user's cache
  (``$XDG_CACHE_HOME/edgecall/numba``, else ``~/.cache/edgecall/numba``), not
  beside the installed sources, where numba puts them by default. Files there
  that pip never installed outlive ``pip uninstall``, and the leftover folder
  then hid an editable install of edgecall made afterwards in the same
  environment (``No module named 'edgecall.runtime.bam'``).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault(
    "NUMBA_CACHE_DIR",
    os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "edgecall", "numba"),
)
