"""Write Bonito-format training data from reads labelled with their reference alignment.

What ``bonito basecaller --save-ctc --reference`` writes, made instead from a
BAM with move tables and MD tags (as ``edgecall train --aligned-reads`` reads
it): ``chunks.npy`` (float32, normalised and resampled as MODEL expects),
``references.npy`` (uint8, 1-4 = ACGT, zero-padded) and
``reference_lengths.npy``, plus a ``validation/`` folder of the same layout cut
from the reads named by ``--validation-read`` only, which training never sees.
Chunks are drawn as ``edgecall train`` draws them (``--seed``), so the folder is
a function of its arguments.

    python tools/write_bonito_data.py OUT --model MODEL --aligned-reads R.pod5 --aligned-bam R.bam \\
        --chunks 4000 --chunksize 6000 --validation-read READ_ID --validation-chunks 128
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edgecall.errors import EdgecallError
from edgecall.model.checkpoint import load_checkpoint
from edgecall.train.aligned import AlignedReads, load_aligned
from edgecall.train.pseudo_labels import LabelledRead, PseudoLabelledSource

BLOCK = 64  # chunks drawn per step of the source


def write(folder: Path, reads: list[LabelledRead], config, chunksize: int, count: int, seed: int) -> int:  # noqa: ANN001
    """Draw ``count`` chunks as the trainer's source draws them, block by block. The signal goes straight to a
    memory-mapped ``chunks.npy`` (a set of ONT's size does not fit in memory); the bases, a fiftieth of its
    size as uint8, are kept until the widest is known."""
    folder.mkdir(parents=True, exist_ok=True)
    source = PseudoLabelledSource(reads, config, chunksize, seed=seed, stream_tag=2)
    signal = np.lib.format.open_memmap(folder / "chunks.npy", mode="w+", dtype=np.float32, shape=(count, chunksize))
    targets: list[np.ndarray] = []
    for step in range(-(-count // BLOCK)):
        for chunk in source.chunks(step, min(BLOCK, count - len(targets))):
            signal[len(targets)] = chunk.signal
            targets.append(chunk.targets.astype(np.uint8))
    signal.flush()
    del signal
    width = max(t.size for t in targets)
    references = np.zeros((count, width), np.uint8)
    for row, bases in enumerate(targets):
        references[row, :bases.size] = bases
    np.save(folder / "references.npy", references)
    np.save(folder / "reference_lengths.npy", np.array([t.size for t in targets], np.uint16))
    return width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint or model folder: its rate and normalisation")
    parser.add_argument("--aligned-reads", type=Path, nargs="+", required=True)
    parser.add_argument("--aligned-bam", type=Path, nargs="+", required=True)
    parser.add_argument("--chunks", type=int, default=4000)
    parser.add_argument("--chunksize", type=int, default=6000)
    parser.add_argument("--validation-read", action="append", default=[], help="read id for validation/ only (repeat)")
    parser.add_argument("--validation-chunks", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = load_checkpoint(args.model).config
        reads, skipped = load_aligned(AlignedReads(tuple(args.aligned_reads), tuple(args.aligned_bam)), config)
        held = set(args.validation_read)
        missing = held - {r.read_id for r in reads}
        if missing:
            raise EdgecallError(f"--validation-read {', '.join(sorted(missing))}: not among the usable aligned reads")
        training = [r for r in reads if r.read_id not in held]
        width = write(args.out, training, config, args.chunksize, args.chunks, args.seed)
        print(f"{args.out}: {args.chunks} chunks of {args.chunksize} samples at {config.sample_rate} Hz "
              f"({config.normalisation.strategy}) from {len(training)} reads, up to {width} bases"
              + (f"; left out: {skipped}" if skipped else ""), file=sys.stderr)
        if held:
            valid = [r for r in reads if r.read_id in held]
            write(args.out / "validation", valid, config, args.chunksize, args.validation_chunks, args.seed + 1)
            print(f"{args.out}/validation: {args.validation_chunks} chunks from {len(valid)} held-out reads", file=sys.stderr)
    except EdgecallError as exc:
        print(f"write_bonito_data: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
