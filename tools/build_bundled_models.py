#!/usr/bin/env python
"""Regenerate edgecall/models/deepnano-blitz-w{48,56,64,80,96} from ../shared/data.

Usage: python tools/build_bundled_models.py [DATA_DIR] [--out DIR] [--widths 48 64]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgecall.export.deepnano import main  # noqa: E402

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        args = [str(ROOT.parent / "shared" / "data"), *args]
    sys.exit(main(args))
