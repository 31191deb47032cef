"""Median identity of an R10.4.1 model (package or training checkpoint) on real reads, 4 kHz reads resampled.

    python bench/r10_identity.py train-runs/r1041-v1/checkpoint_00001000.pt            # the dev set
    python bench/r10_identity.py PKG --reads ../shared/data/r10/remora/mod_reads.pod5 \
        --reference-from-bam ../shared/data/r10/remora/mod_mappings.bam                 # held-out reads

A checkpoint is compiled first (``edgecall compile``, CPU IR) into a temporary
folder. Reads recorded at another rate than the model's are resampled with
:func:`edgecall.runtime.resample.resample_read`, the same function training
used, before the pipeline prepares them; everything else is ``edgecall run``'s
pipeline. Identity as in ``bench/accuracy.py`` (minimap2 map-ont, matches /
alignment columns of the primary alignment, median over mapped reads).
``--reference-from-bam`` scores against each record's aligned reference (rebuilt
from its MD tag) instead of a FASTA.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import compiled, measure  # noqa: E402
from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.pipeline import Basecaller, RunOptions  # noqa: E402
from edgecall.runtime.read import Read, ReadFailure  # noqa: E402
from edgecall.runtime.resample import resample_read  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEV_READS = SHARED / "pod5" / "remora" / "can_reads.pod5"
DEV_REFERENCE = SHARED / "pod5" / "remora" / "can_reads_ref_segments.fa"


class ResamplingBasecaller(Basecaller):
    """The pipeline with each read first resampled to the model's rate."""

    def _reads(self, inputs: Iterable[Path]) -> Iterator[Read | ReadFailure]:
        for item in super()._reads(inputs):
            yield resample_read(item, self.config.sample_rate) if isinstance(item, Read) else item


def bam_reference(bam: Path, out: Path) -> Path:
    """FASTA of every primary record's aligned reference stretch (from MD), named by read id."""
    import pysam

    with pysam.AlignmentFile(str(bam), check_sq=False) as f, open(out, "w") as fh:
        for r in f:
            if not (r.is_unmapped or r.is_secondary or r.is_supplementary):
                fh.write(f">{r.query_name}\n{r.get_reference_sequence().upper()}\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="model package folder or edgecall training checkpoint (.pt)")
    parser.add_argument("--reads", type=Path, nargs="+", default=[DEV_READS])
    parser.add_argument("--reference", type=Path, default=DEV_REFERENCE)
    parser.add_argument("--reference-from-bam", type=Path, help="score against this BAM's aligned references")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--beam-width", type=int, help="decode with this beam width (default: the package's)")
    parser.add_argument("--per-read", action="store_true", help="also print each read's identity (or 'unmapped')")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package = load_package(str(compiled(args.model, Path(tmp) / "pkg")))
        if args.beam_width:
            import dataclasses

            config = package.config
            package = dataclasses.replace(package, config=config.replace(
                decoder=dataclasses.replace(config.decoder, beam_width=args.beam_width)))
        reference = bam_reference(args.reference_from_bam, Path(tmp) / "ref.fa") if args.reference_from_bam else args.reference
        caller = ResamplingBasecaller(package, RunOptions(threads=args.threads))
        calls, failures = [], 0
        t0 = time.perf_counter()
        for item in caller.run(args.reads):
            if isinstance(item, ReadFailure):
                failures += 1
                print(f"failed: {item.read_id}: {item.reason}", file=sys.stderr)
            else:
                calls.append((item.read.read_id, item.sequence))
        caller.close()
        report = measure(calls, reference)
        print(f"{args.model}: {report.line()}; {failures} failed; {time.perf_counter() - t0:.1f} s")
        for read_id, sequence in calls if args.per_read else ():
            identity = report.identities.get(read_id)
            print(f"  {read_id} {len(sequence):>6} bases  " + (f"{identity:.4f}" if identity is not None else "unmapped"))


if __name__ == "__main__":
    main()
