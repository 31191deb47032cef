"""``edgecall run [OPTIONS] INPUTS... > calls.fastq``: basecall pod5/fast5 files.

Exit status: 0 every read called; 1 the run stopped on an error; 2 an option
value it cannot use; 3 the run finished but some files or reads failed (each
named on stderr); 130/143 Ctrl-C/SIGTERM, after the reads already read were
finished and written.
"""

from __future__ import annotations

import shlex
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterator, Optional

import typer

from edgecall import catalog
from edgecall.chemistry import LABELS, RunChemistry
from edgecall.cli.exits import Interrupted, OutputClosed, finish_on_interrupt, signal_name
from edgecall.errors import EdgecallError
from edgecall.package import load_package
from edgecall.runtime.pipeline import Basecaller, RunOptions, minion_keep_up
from edgecall.runtime.output import open_output, output_format, require_pysam
from edgecall.runtime.read import Idle, ReadFailure
from edgecall.runtime.readers import count_reads, find_inputs, run_infos
from edgecall.runtime.resume import ResumeState, scan_output
from edgecall.runtime.summary import SummaryWriter
from edgecall.runtime.watch import watch_folder

EXIT_SOME_FAILED = 3


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


def run_command(
    inputs: Optional[list[Path]] = typer.Argument(None, help="pod5/fast5 files or folders (optional with --watch)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name, package or ONT model folder, or a tier (fast, hac, sup) for the reads' chemistry (default: the reads' chemistry picks; see 'edgecall models')."),
    models_dir: Optional[Path] = typer.Option(None, "--models-directory", help="Folder of model packages and ONT model folders (default: $EDGECALL_MODELS_DIRECTORY)."),
    device: str = typer.Option("CPU", "--device", "-d", help="CPU, GPU, NPU, MYRIAD, AUTO (OpenVINO); ort, ort:cuda, ort:tensorrt; torch. See 'edgecall devices'."),
    precision: str = typer.Option("auto", "--precision", help="auto (default: bf16 or f16 on the OpenVINO CPU where the CPU computes it natively and the package's calls in it passed 'compile --check-precision', else f32); f32; int8 (OpenVINO CPU, a package with an int8 model from 'compile --int8'); bf16 or f16 (as auto would pick them, or refused with the reason)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout: FASTQ (.gz compresses), or BAM/SAM when the name ends .bam/.sam."),
    emit_bam: bool = typer.Option(False, "--emit-bam", help="Write BAM (Dorado's header and tags) instead of FASTQ, to stdout or -o."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Align to this reference (FASTA or minimap2 .mmi) with minimap2's map-ont preset; writes aligned BAM/SAM."),
    mm2_opts: str = typer.Option("", "--mm2-opts", help="minimap2 options for --reference, e.g. '-x lr:hq -k 17 --secondary=no'."),
    bam_header: Optional[Path] = typer.Option(None, "--bam-header", help="SAM/BAM whose header BAM output uses (so a workflow's shards share one header)."),
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
    resume_from: Optional[Path] = typer.Option(None, "--resume-from", help="Output (FASTQ, SAM or BAM) of an interrupted run: keep its complete records, call only the rest (may equal -o)."),
    watch: Optional[Path] = typer.Option(None, "--watch", help="Also follow this folder, calling each new pod5/fast5 once it is complete."),
    watch_idle: Optional[float] = typer.Option(None, "--watch-idle", help="With --watch: stop after this many seconds without a new file (default: until Ctrl-C)."),
    max_memory: Optional[float] = typer.Option(None, "--max-memory", help="GB the basecaller's buffers may use (batch size and queues are sized to fit)."),
) -> None:
    """Basecall reads to FASTQ (stdout by default) or SAM/BAM (aligned with --reference); progress and a summary go to stderr."""
    if not inputs and watch is None:
        raise EdgecallError("give input files or folders, or --watch FOLDER")
    if watch is not None and not watch.is_dir():
        raise EdgecallError(f"{watch}: no such folder to watch")
    files = find_inputs(inputs, recursive=recursive) if inputs else []
    package, directory = _choose_model(model, models_dir, files)
    fmt = output_format(output, emit_bam)
    if bam_header is not None and fmt == "fastq":
        raise EdgecallError("--bam-header is for BAM/SAM output (-o x.bam, -o x.sam or --emit-bam)")
    if reference is not None and fmt == "fastq":
        raise EdgecallError("--reference writes aligned BAM/SAM: add -o calls.bam, -o calls.sam or --emit-bam")
    if mm2_opts and reference is None:
        raise EdgecallError("--mm2-opts needs --reference")
    resume = scan_output(resume_from) if resume_from is not None else None
    options = RunOptions(
        device=device, precision=precision, batch_size=batch_size, chunksize=chunksize, overlap=overlap, threads=threads,
        decode_mode=decode, read_ids=_read_ids(read_ids), max_reads=max_reads,
        skip_read_ids=resume.read_ids if resume else frozenset(),
        max_memory=int(max_memory * 1e9) if max_memory is not None else None,
    )
    aligner = _aligner(reference, mm2_opts, threads)
    header = _header(fmt, bam_header, files, watch, recursive, package, aligner)
    progress = None  # the progress bar, once open below: the closure sees it, so the decoder's note goes above it
    caller = Basecaller(package, options, warn=lambda line: sys.stderr.write(f"edgecall: warning: {line}\n"),
                        advice=lambda chemistry: _advice(chemistry, directory),
                        decoder_loaded=lambda seconds, compiled: _decoder_note(progress, seconds, compiled))
    counts = {"called": 0, "filtered": 0, "failed": 0, "bases": 0}
    met: set[str] = set()  # with --read-ids: the listed ids the inputs held
    keep_up = minion_keep_up(package.config.sample_rate)  # the run's samples are counted at the model's rate
    start = time.perf_counter()
    with ExitStack() as cleanup:  # each step runs even if one before it fails (a closed stdout)
        cleanup.push(_quiet_on_closed_output)
        cleanup.callback(caller.close)  # stops the pipeline's threads before the process may exit
        writer = open_output(output, fmt, model_name=package.config.name, stride=package.config.stride,
                             emit_moves=emit_moves, resume=resume, header=header, aligner=aligner)
        cleanup.callback(writer.close)
        summary = _open_summary(emit_summary, resume)
        if summary:
            cleanup.callback(summary.close)
        progress = _progress(len(files), _expected_reads(files, watch, options, resume) if sys.stderr.isatty() else None)
        if progress is not None:
            cleanup.callback(progress.close)
        interrupted = cleanup.enter_context(finish_on_interrupt(caller.stop_reading))
        for item in caller.run(_sources(files, watch, recursive, watch_idle, stop=caller.reading_stopped)):
            if isinstance(item, Idle):  # the input waits: what is called so far goes out now
                writer.flush()
                continue
            if options.read_ids is not None:
                met.add(item.read_id if isinstance(item, ReadFailure) else item.read.read_id)
            if isinstance(item, ReadFailure):
                counts["failed"] += item.reads
                where = f"{item.source}" + (f": read {item.read_id}" if item.read_id else "")
                _note(progress, f"edgecall: skipped {where}: {item.reason}")
                continue
            passed = item.mean_qscore >= min_qscore
            if summary:  # the row first: after a crash every read in the output has its row
                summary.called(item, passed)
            if not passed:
                counts["filtered"] += 1
            else:
                writer.write(item)
                counts["called"] += 1
                counts["bases"] += len(item.sequence)
            if progress is not None:
                elapsed = max(time.perf_counter() - start - caller.times.decoder_load, 1e-9)
                progress.update(1)
                rate = caller.times.samples / elapsed
                progress.set_postfix_str(f"{rate / 1e6:.2f} M samples/s, {rate / keep_up:.2f}x keep-up", refresh=False)
        signum = interrupted()
    elapsed = time.perf_counter() - start - caller.times.decoder_load  # the pipeline stood still while it loaded
    samples = caller.times.samples
    sys.stderr.write(
        f"edgecall: {counts['called']} reads called, {counts['filtered']} filtered (Q < {min_qscore:g}), "
        f"{counts['failed']} failed; {counts['bases']:,} bases; {samples:,} samples in {elapsed:.1f} s "
        f"= {samples / max(elapsed, 1e-9) / 1e6:.3f} M samples/s, {samples / max(elapsed, 1e-9) / keep_up:.2f}x "
        f"a {package.config.sample_rate / 1000:g} kHz MinION's keep-up rate ({caller.backend.name}, batch {caller.batch_size})\n"
    )
    if signum is not None:
        finished = counts["called"] + counts["filtered"] + counts["failed"]
        resume_hint = f"; call the rest with --resume-from {output}" if output is not None else ""
        raise Interrupted(signum, f"interrupted by {signal_name(signum)}: no more input was read; the {finished} reads "
                                  f"already read were finished and written{resume_hint}")
    if options.read_ids is not None and read_ids is not None:
        _report_missing(read_ids, options.read_ids - met - options.skip_read_ids, max_reads)
    if counts["failed"]:
        raise typer.Exit(EXIT_SOME_FAILED)


def _aligner(reference: Path | None, mm2_opts: str, threads: int | None):  # noqa: ANN202 - Aligner or None
    if reference is None:
        return None
    require_pysam()
    try:
        from edgecall.runtime.align import Aligner
    except ImportError:
        raise EdgecallError("--reference needs mappy (pip install mappy; Linux and macOS only)") from None
    return Aligner(reference, mm2_opts, threads)


def _header(fmt: str, given: Path | None, files: list[Path], watch: Path | None, recursive: bool, package, aligner) -> dict | None:  # noqa: ANN001
    """The SAM/BAM header: ``--bam-header``'s, or Dorado's for the runs of the inputs (and the watched folder's files so far)."""
    if fmt == "fastq":
        return None
    require_pysam()
    from edgecall.runtime.bam import bam_header, read_header

    references = aligner.references if aligner is not None else []
    if given is not None:
        header = read_header(given)
        if [(s["SN"], s["LN"]) for s in header.get("SQ", [])] != references:
            raise EdgecallError(f"{given}: its reference sequences (@SQ) do not match this run's --reference")
        return header
    present = find_inputs([watch], recursive=recursive) if watch is not None and _has_inputs(watch, recursive) else []
    command = " ".join(["edgecall", *map(shlex.quote, sys.argv[1:])])
    return bam_header(run_infos([*files, *present]), package.config.name, package.config.stride, command, references)


def _has_inputs(folder: Path, recursive: bool) -> bool:
    try:
        find_inputs([folder], recursive=recursive)
    except EdgecallError:
        return False
    return True


def _quiet_on_closed_output(exc_type: type | None, exc: BaseException | None, tb: object) -> None:
    """The last cleanup step: a closed stdout (``| head``) ends the run quietly, see OutputClosed."""
    if isinstance(exc, BrokenPipeError):
        raise OutputClosed() from None


def _choose_model(model: str | None, models_dir: Path | None, files: list[Path]):  # noqa: ANN202 - (ModelPackage, Path | None)
    """The package to run: ``--model`` (a tier resolved for the reads), else the one the reads' chemistry picks."""
    directory = catalog.models_directory(models_dir)
    chosen, run = catalog.choose_for_reads(model, directory, files)
    if model is None or model in catalog.TIERS:
        sys.stderr.write(f"edgecall: {catalog.describe_choice(chosen, run)}\n")
    return load_package(catalog.package_path(chosen)), directory


def _advice(chemistry: RunChemistry, directory: Path | None) -> str:
    """What a refused file's line adds: the installed models that would call it, or how to get one."""
    fitting = [m.name for m in catalog.fitting_models(chemistry, directory)] if chemistry.pore is not None else []
    label = LABELS.get(chemistry.pore or "", "these")
    if fitting:
        return f"installed {label} models: {', '.join(fitting)} (--model NAME, or leave --model out)"
    return f"no {label} model at {chemistry.sample_rate / 1000:g} kHz is installed (see 'edgecall models')"


def _open_summary(path: Path | None, resume: ResumeState | None) -> SummaryWriter | None:
    """The summary writer; when resuming, the kept reads' old rows stay."""
    if path is None:
        return None
    return SummaryWriter.resume(path, resume.read_ids) if resume is not None else SummaryWriter(path)


def _sources(
    files: list[Path], watch: Path | None, recursive: bool, idle: float | None, stop: Callable[[], bool]
) -> Iterator[Path | Idle]:
    yield from files
    if watch is not None:
        yield from watch_folder(watch, recursive=recursive, idle_seconds=idle, already=set(files), stop=stop)


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


def _expected_reads(files: list[Path], watch: Path | None, options: RunOptions, resume: ResumeState | None) -> int | None:
    """Reads the run will call, where the inputs say (pod5 counts its reads): the progress bar's total and ETA."""
    if watch is not None or options.read_ids is not None:
        return None
    total = count_reads(files)
    if total is None:
        return None
    total = max(0, total - (resume.records if resume is not None else 0))
    return min(total, options.max_reads) if options.max_reads is not None else total


def _report_missing(path: Path, missing: frozenset[str], max_reads: int | None, shown: int = 3) -> None:
    """Name the listed read ids the run never met, so a wrong list or wrong inputs do not pass unseen."""
    if not missing:
        return
    first = sorted(missing)[:shown]
    more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
    why = "not found in the inputs" + (" or not reached within --max-reads" if max_reads is not None else "")
    sys.stderr.write(f"edgecall: {len(missing)} read ids listed in {path} were {why}: {', '.join(first)}{more}\n")


def _progress(files: int, total: int | None):  # noqa: ANN202 - tqdm or None
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=" reads", desc=f"basecalling {files} file{'s' * (files != 1)}", file=sys.stderr, dynamic_ncols=True)


def _decoder_note(progress, seconds: float, compiled: bool) -> None:  # noqa: ANN001
    """Say why the first read waited, when it was the once-per-install compile (loading from numba's cache
    takes ~0.3 s): the run's speed leaves those seconds out, and a user should not be left to guess at them."""
    if compiled:
        _note(progress, f"edgecall: compiled the decoder for this CPU in {seconds:.1f} s (first run only: it is cached)")


def _note(progress, line: str) -> None:  # noqa: ANN001
    if progress is not None:
        progress.write(line, file=sys.stderr)
    else:
        sys.stderr.write(line + "\n")
