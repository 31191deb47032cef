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
from edgecall.train.data import Chunk
from edgecall.train.pseudo_labels import LabelledRead, PseudoLabelledSource

BLOCK = 64  # chunks drawn per step of the source


def draw(reads: list[LabelledRead], config, chunksize: int, count: int, seed: int) -> list[Chunk]:  # noqa: ANN001
    source = PseudoLabelledSource(reads, config, chunksize, seed=seed, stream_tag=2)
    chunks: list[Chunk] = []
    for step in range(-(-count // BLOCK)):
        chunks.extend(source.chunks(step, min(BLOCK, count - len(chunks))))
    return chunks


def write(folder: Path, chunks: list[Chunk]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    width = max(c.targets.size for c in chunks)
    references = np.zeros((len(chunks), width), np.uint8)
    for row, chunk in enumerate(chunks):
        references[row, :chunk.targets.size] = chunk.targets
    np.save(folder / "chunks.npy", np.stack([c.signal for c in chunks]).astype(np.float32))
    np.save(folder / "references.npy", references)
    np.save(folder / "reference_lengths.npy", np.array([c.targets.size for c in chunks], np.uint16))
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
        width = write(args.out, draw(training, config, args.chunksize, args.chunks, args.seed))
        print(f"{args.out}: {args.chunks} chunks of {args.chunksize} samples at {config.sample_rate} Hz "
              f"({config.normalisation.strategy}) from {len(training)} reads, up to {width} bases"
              + (f"; left out: {skipped}" if skipped else ""), file=sys.stderr)
        if held:
            valid = [r for r in reads if r.read_id in held]
            write(args.out / "validation", draw(valid, config, args.chunksize, args.validation_chunks, args.seed + 1))
            print(f"{args.out}/validation: {args.validation_chunks} chunks from {len(valid)} held-out reads", file=sys.stderr)
    except EdgecallError as exc:
        print(f"write_bonito_data: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
