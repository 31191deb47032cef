"""``edgecall run [OPTIONS] INPUTS... > calls.fastq``: basecall pod5/fast5 files.

Exit status: 0 every read called; 1 the run stopped on an error; 3 the run
finished but some files or reads failed (each named on stderr).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from edgecall.errors import EdgecallError
from edgecall.package import DEFAULT_MODEL, load_package
from edgecall.runtime.fastq import FastqWriter
from edgecall.runtime.pipeline import Basecaller, RunOptions
from edgecall.runtime.read import ReadFailure
from edgecall.runtime.readers import find_inputs
from edgecall.runtime.summary import SummaryWriter

EXIT_SOME_FAILED = 3


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


def run_command(
    inputs: list[Path] = typer.Argument(..., help="pod5/fast5 files or folders."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Bundled model name or package directory."),
    device: str = typer.Option("CPU", "--device", "-d", help="CPU, GPU, NPU, MYRIAD, AUTO (OpenVINO); ort, ort:cuda, ort:tensorrt; torch. See 'edgecall devices'."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write FASTQ here instead of stdout (.gz compresses)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders recursively."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Chunks per inference call (default: automatic)."),
    chunksize: Optional[int] = typer.Option(None, "--chunksize", help="Samples per chunk (default: the model's)."),
    overlap: Optional[int] = typer.Option(None, "--overlap", help="Samples of overlap between chunks (default: the model's)."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads for inference and decoding (default: all)."),
    decode: str = typer.Option("beam", "--decode", help="beam (default), viterbi (CRF models) or greedy (CTC models)."),
    read_ids: Optional[Path] = typer.Option(None, "--read-ids", "-l", help="File of read ids to call, one per line."),
    max_reads: Optional[int] = typer.Option(None, "--max-reads", help="Stop after this many reads."),
    min_qscore: float = typer.Option(0.0, "--min-qscore", help="Leave out reads whose mean Q is below this."),
    emit_moves: bool = typer.Option(False, "--emit-moves", help="Add the move table as an mv:B:c tag."),
    emit_summary: Optional[Path] = typer.Option(None, "--emit-summary", help="Write a per-read summary TSV here."),
) -> None:
    """Basecall reads to FASTQ (stdout by default); progress and a summary go to stderr."""
    files = find_inputs(inputs, recursive=recursive)
    package = load_package(model)
    options = RunOptions(
        device=device, batch_size=batch_size, chunksize=chunksize, overlap=overlap, threads=threads,
        decode_mode=decode, read_ids=_read_ids(read_ids), max_reads=max_reads,
    )
    caller = Basecaller(package, options)
    writer = FastqWriter(output, package.config.name, emit_moves=emit_moves, stride=package.config.stride)
    summary = SummaryWriter(emit_summary) if emit_summary else None
    counts = {"called": 0, "filtered": 0, "failed": 0, "bases": 0}
    start = time.perf_counter()
    progress = _progress(len(files))
    try:
        for item in caller.run(files):
            if isinstance(item, ReadFailure):
                counts["failed"] += 1
                where = f"{item.source}" + (f": read {item.read_id}" if item.read_id else "")
                _note(progress, f"edgecall: skipped {where}: {item.reason}")
                if summary:
                    summary.failed(item)
                continue
            if item.mean_qscore < min_qscore:
                counts["filtered"] += 1
                if summary:
                    summary.called(item, status="filtered")
            else:
                writer.write(item)
                counts["called"] += 1
                counts["bases"] += len(item.sequence)
                if summary:
                    summary.called(item)
            if progress is not None:
                elapsed = max(time.perf_counter() - start, 1e-9)
                progress.update(1)
                progress.set_postfix_str(f"{caller.times.samples / elapsed / 1e6:.2f} M samples/s", refresh=False)
    finally:
        writer.close()
        if summary:
            summary.close()
        if progress is not None:
            progress.close()
        caller.close()
    elapsed = time.perf_counter() - start
    samples = caller.times.samples
    sys.stderr.write(
        f"edgecall: {counts['called']} reads called, {counts['filtered']} filtered (Q < {min_qscore:g}), "
        f"{counts['failed']} failed; {counts['bases']:,} bases; {samples:,} samples in {elapsed:.1f} s "
        f"= {samples / max(elapsed, 1e-9) / 1e6:.3f} M samples/s ({caller.backend.name})\n"
    )
    if counts["failed"]:
        raise typer.Exit(EXIT_SOME_FAILED)


def _read_ids(path: Path | None) -> frozenset[str] | None:
    if path is None:
        return None
    try:
        lines = path.read_text().split("\n")
    except OSError as exc:
        raise EdgecallError(f"{path}: cannot read the read-id list ({exc.strerror or exc})") from None
    ids = frozenset(line.split()[0] for line in lines if line.strip() and not line.startswith("read_id"))
    if not ids:
        raise EdgecallError(f"{path}: the read-id list is empty")
    return ids


def _progress(files: int):  # noqa: ANN202 - tqdm or None
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(unit=" reads", desc=f"basecalling {files} file{'s' * (files != 1)}", file=sys.stderr, dynamic_ncols=True)


def _note(progress, line: str) -> None:  # noqa: ANN001
    if progress is not None:
        progress.write(line, file=sys.stderr)
    else:
        sys.stderr.write(line + "\n")
