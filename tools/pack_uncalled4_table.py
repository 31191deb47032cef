"""Pack Uncalled4's R10.4.1 9-mer table into ``edgecall/train/data`` (run once; the output is committed).

    python tools/pack_uncalled4_table.py ../shared/data/kmer_models/uncalled4/dna_r10.4.1_400bps_9mer.npz

Why: the source table holds float32 columns and k-mer strings (5.6 MB); the
simulator needs three columns. Each is stored as uint16 fixed point over its
own range (step < 1e-4 normalised units, ~0.002 pA), k-mers implied by the row
order (base-4 index, A=0 C=1 G=2 T=3), and the metadata (k, shift, pA
conversion) kept, in a compressed .npz of about 1.2 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from edgecall.train.kmer_model import PACKED_COLUMNS, R10_PACKAGED_MODEL, encode

SOURCE_COLUMNS = {"level_mean": "current.mean", "level_stdv": "current.stdv", "sd_mean": "current_sd.mean"}


def main(source: Path, out: Path = R10_PACKAGED_MODEL) -> None:
    z = np.load(source, allow_pickle=False)
    k = int(z["_k"])
    kmers = z["kmer"]
    index = np.array([int(encode(s) @ (4 ** np.arange(k - 1, -1, -1))) for s in kmers])
    if sorted(index) != list(range(4**k)):
        raise SystemExit(f"{source}: k-mers are not each of the 4^{k} once")
    packed: dict[str, np.ndarray] = {}
    for name in PACKED_COLUMNS:
        column = np.empty(4**k, np.float64)
        column[index] = z[SOURCE_COLUMNS[name]]
        lo, hi = float(column.min()), float(column.max())
        packed[f"{name}_q"] = np.rint((column - lo) / (hi - lo) * 65535).astype(np.uint16)
        packed[f"{name}_range"] = np.array([lo, hi])
    meta = {key: z[key] for key in ("_name", "_k", "_shift", "_pa_mean", "_pa_stdv", "_flowcell", "_kit")}
    np.savez_compressed(out, **packed, **{key[1:]: value for key, value in meta.items()})
    print(f"{out}: {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
