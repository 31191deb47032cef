"""Write the README example: the first 10 reads of the Unlicense lambda R9.4.1 set.

Run from the repository root with ../shared beside it:
    python tools/make_example_reads.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pod5

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "accuracy" / "lambda_r941"
DEST = ROOT / "examples"
COUNT = 10


def main() -> None:
    DEST.mkdir(exist_ok=True)
    out = DEST / "lambda_10reads.pod5"
    out.unlink(missing_ok=True)
    with pod5.Reader(SOURCE / "lambda_r941.pod5") as reader, pod5.Writer(out) as writer:
        for i, record in enumerate(reader.reads()):
            if i == COUNT:
                break
            writer.add_read(record.to_read())
    shutil.copyfile(SOURCE / "LICENSE", DEST / "LICENSE.lambda_r941")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
