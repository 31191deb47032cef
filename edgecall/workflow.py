"""The two steps of ``workflow/Snakefile`` that are not ``edgecall run``: one header for all shards, and the merge.

``python -m edgecall.workflow header --model M [--reference R] --out header.sam INPUTS...``
writes the BAM header a run over all the inputs would write, so every shard
(``edgecall run --bam-header header.sam``) carries identical ``@RG``/``@PG``
lines and the shards merge cleanly. ``python -m edgecall.workflow merge
--bam calls.bam --summary summary.tsv SHARD.bam... --summaries SHARD.tsv...``
concatenates them in shard order, each read once: a read id that an earlier
shard already holds (the same read in two input files) is left out, and counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecall.errors import EdgecallError


def write_header(inputs: list[Path], model: str, out: Path, reference: Path | None = None, mm2_opts: str = "") -> None:
    """The shared header of a sharded run, as SAM text (header lines only)."""
    import pysam

    from edgecall.package import load_package
    from edgecall.runtime.bam import bam_header
    from edgecall.runtime.readers import find_inputs, run_infos

    config = load_package(model).config
    references: list[tuple[str, int]] = []
    if reference is not None:
        from edgecall.runtime.align import Aligner

        references = Aligner(reference, mm2_opts, threads=1).references
    command = f"edgecall run --model {model}" + (f" --reference {reference}" if reference else "") + \
        (f" --mm2-opts '{mm2_opts}'" if mm2_opts else "") + " (workflow/Snakefile: one job per shard of the inputs)"
    header = bam_header(run_infos(find_inputs(inputs)), config.name, config.stride, command, references)
    with pysam.AlignmentFile(str(out), "w", header=header):
        pass


def merge(shards: list[Path], summaries: list[Path], bam_out: Path, summary_out: Path | None) -> tuple[int, int]:
    """Concatenate shard BAMs (identical headers required) and their summaries; (reads written, duplicates left out)."""
    import pysam

    if not shards:
        raise EdgecallError("no shards to merge")
    headers = []
    for shard in shards:
        with pysam.AlignmentFile(str(shard), "rb", check_sq=False) as handle:
            headers.append(str(handle.header))
    if any(h != headers[0] for h in headers[1:]):
        odd = next(s for s, h in zip(shards, headers) if h != headers[0])
        raise EdgecallError(f"{odd}: its header differs from {shards[0]}'s; the shards were not made with one --bam-header")
    seen: set[str] = set()
    duplicates = 0
    with pysam.AlignmentFile(str(shards[0]), "rb", check_sq=False) as first:
        header = first.header
    with pysam.AlignmentFile(str(bam_out), "wb", header=header) as out:
        for shard in shards:
            here: set[str] = set()
            with pysam.AlignmentFile(str(shard), "rb", check_sq=False) as handle:
                for record in handle.fetch(until_eof=True):
                    name = record.query_name
                    if name in seen and name not in here:
                        if not (record.is_secondary or record.is_supplementary):
                            duplicates += 1
                        continue
                    here.add(name)
                    out.write(record)
            seen |= here
    if summary_out is not None:
        _merge_summaries(summaries, summary_out)
    return len(seen), duplicates


def _merge_summaries(summaries: list[Path], out: Path) -> None:
    """One header line, then each read's row from the first shard that has it (as the BAM merge keeps reads)."""
    written: set[str] = set()
    header: str | None = None
    with open(out, "w", encoding="utf-8", newline="\n") as target:
        for path in summaries:
            lines = path.read_text(encoding="utf-8").splitlines()
            if not lines:
                continue
            if header is None:
                header = lines[0]
                target.write(header + "\n")
            elif lines[0] != header:
                raise EdgecallError(f"{path}: its summary columns differ from {summaries[0]}'s")
            column = header.split("\t").index("read_id")
            for line in lines[1:]:
                read_id = line.split("\t")[column]
                if read_id not in written:
                    written.add(read_id)
                    target.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgecall.workflow", description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    head = steps.add_parser("header", help="the header every shard shares")
    head.add_argument("--model", required=True)
    head.add_argument("--reference", type=Path)
    head.add_argument("--mm2-opts", default="")
    head.add_argument("--out", type=Path, required=True)
    head.add_argument("inputs", type=Path, nargs="+")
    join = steps.add_parser("merge", help="the shards into one BAM and one summary")
    join.add_argument("--bam", type=Path, required=True)
    join.add_argument("--summary", type=Path)
    join.add_argument("--summaries", type=Path, nargs="*", default=[])
    join.add_argument("shards", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.step == "header":
            write_header(args.inputs, args.model, args.out, args.reference, args.mm2_opts)
        else:
            reads, duplicates = merge(args.shards, args.summaries, args.bam, args.summary)
            again = f"; {duplicates} reads found again in a later shard left out" if duplicates else ""
            sys.stderr.write(f"edgecall: merged {len(args.shards)} shards into {args.bam}: {reads} reads{again}\n")
    except EdgecallError as exc:
        sys.stderr.write(f"edgecall: error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
