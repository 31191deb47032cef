"""``edgecall simulate REFERENCE.fasta -n 100 -o reads.pod5 --truth truth.fasta``: simulated R9.4.1 reads."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import typer

from edgecall.errors import EdgecallError
from edgecall.train.fasta import read_fasta
from edgecall.train.kmer_model import load_kmer_model
from edgecall.train.simulate import SimulatedRead, SimulationOptions, simulate_reads, write_pod5

_DEFAULTS = SimulationOptions()


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)


def simulate_command(
    references: list[Path] = typer.Argument(..., help="Reference FASTA file(s) (.gz OK, several records OK)."),
    n: int = typer.Option(100, "--reads", "-n", help="Number of reads."),
    output: Path = typer.Option(..., "--output", "-o", help="pod5 file to write (replaced if present)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="FASTA of each read's true sequence (default: <output>.truth.fasta)."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Same seed, same reads."),
    mean_length: int = typer.Option(_DEFAULTS.mean_length, "--mean-length", help="Mean read length in bases."),
    fixed_length: bool = typer.Option(False, "--fixed-length", help="Every read exactly --mean-length bases (or its reference, if shorter)."),
    min_length: int = typer.Option(_DEFAULTS.min_length, "--min-length", help="Shortest read in bases."),
    max_length: int = typer.Option(_DEFAULTS.max_length, "--max-length", help="Longest read in bases."),
    dwell_mean: float = typer.Option(_DEFAULTS.dwell_mean, "--dwell-mean", help="Mean samples per base (4000 Hz / 450 b/s = 8.89)."),
    noise: float = typer.Option(_DEFAULTS.noise, "--noise", help="Per-sample noise, in units of the pore model's sd_mean."),
    drift: float = typer.Option(_DEFAULTS.drift, "--drift", help="Baseline random walk, pA per sqrt(second)."),
    stall_rate: float = typer.Option(_DEFAULTS.stall_rate, "--stall-rate", help="Probability that a base stalls."),
    no_open_pore: bool = typer.Option(False, "--no-open-pore", help="Start reads at the first true base (no open pore, adapter or leader)."),
    ambiguous: str = typer.Option(_DEFAULTS.ambiguous, "--ambiguous", help="Non-ACGT reference bases: skip (reads avoid them) or replace (random base)."),
    kmer_model: Optional[Path] = typer.Option(None, "--kmer-model", help="Pore model file (default: ONT's R9.4 450 b/s 6-mer template model)."),
) -> None:
    """Simulate R9.4.1 reads from references: raw signal as pod5, true sequences as FASTA."""
    if n < 0:
        raise EdgecallError(f"--reads must not be negative, got {n}")
    options = SimulationOptions(
        mean_length=mean_length, length_sigma=0.0 if fixed_length else _DEFAULTS.length_sigma,
        min_length=min_length, max_length=max_length, dwell_mean=dwell_mean, noise=noise, drift=drift,
        stall_rate=stall_rate, open_pore=not no_open_pore, ambiguous=ambiguous, seed=seed,
    )
    records: dict[str, str] = {}
    for path in references:
        for name, sequence in read_fasta(path).items():
            if name in records:
                raise EdgecallError(f"{path}: record '{name}' also appears in an earlier reference")
            records[name] = sequence
    model = load_kmer_model(kmer_model)
    truth_path = truth or output.with_name(output.name.removesuffix(".pod5") + ".truth.fasta")
    totals = {"bases": 0, "samples": 0, "base_samples": 0}
    start = time.perf_counter()
    reads = _counted(simulate_reads(records, n, options, model), n, totals)
    count = write_pod5(reads, output, truth=truth_path)
    elapsed = time.perf_counter() - start
    sys.stderr.write(
        f"edgecall: {count} reads, {totals['bases']:,} bases, {totals['samples']:,} samples "
        f"({totals['base_samples'] / max(totals['bases'], 1):.2f} samples/base) in {elapsed:.1f} s; "
        f"signal: {output}, truth: {truth_path}\n"
    )


def _counted(reads: Iterable[SimulatedRead], n: int, totals: dict[str, int]) -> Iterator[SimulatedRead]:
    """Pass reads through, adding up bases and samples (all, and those of bases), with a progress bar on a terminal."""
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=n, unit=" reads", desc="simulating", file=sys.stderr, dynamic_ncols=True)
    try:
        for read in reads:
            totals["bases"] += len(read.sequence)
            totals["samples"] += read.raw.size
            totals["base_samples"] += int(read.base_starts[-1] - read.base_starts[0])
            if progress is not None:
                progress.update(1)
            yield read
    finally:
        if progress is not None:
            progress.close()
