"""edgecall: nanopore basecalling for the edge.

Importing the package never imports torch: the runtime (``edgecall run``) must
install and start light on a field laptop. torch lives behind the ``export``
extra and is imported only by ``edgecall.model``, ``edgecall.export`` and
``edgecall.train``.
"""

__version__ = "0.1.0"
