"""``edgecall simulate REFERENCE.fasta -n 100 -o reads.pod5 --truth truth.fasta``: simulated R9.4.1 or R10.4.1 reads."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import typer

from edgecall.errors import EdgecallError
from edgecall.train.chemistry import CHEMISTRIES, chemistry, default_kmer_model_path
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
    chemistry_name: str = typer.Option("r9.4.1", "--chemistry", help=f"Pore chemistry: {' or '.join(CHEMISTRIES)} (pore model, speed, noise, calibration, run info)."),
    sample_rate: Optional[int] = typer.Option(None, "--sample-rate", help="Hz: 4000 (R9.4.1; R10.4.1 before 2023) or 5000 (R10.4.1, the default for it)."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="FASTA of each read's true sequence (default: <output>.truth.fasta)."),
    seed: int = typer.Option(_DEFAULTS.seed, "--seed", help="Same seed, same reads."),
    mean_length: int = typer.Option(_DEFAULTS.mean_length, "--mean-length", help="Mean read length in bases."),
    fixed_length: bool = typer.Option(False, "--fixed-length", help="Every read exactly --mean-length bases (or its reference, if shorter)."),
    min_length: int = typer.Option(_DEFAULTS.min_length, "--min-length", help="Shortest read in bases."),
    max_length: int = typer.Option(_DEFAULTS.max_length, "--max-length", help="Longest read in bases."),
    dwell_mean: Optional[float] = typer.Option(None, "--dwell-mean", help="Mean samples per base (default: sample rate / bases per second: R9.4.1 4000/450 = 8.89, R10.4.1 5000/400 = 12.5)."),
    noise: Optional[float] = typer.Option(None, "--noise", help="Per-sample noise, in units of the pore model's sd_mean (default: the chemistry's fitted value)."),
    drift: float = typer.Option(_DEFAULTS.drift, "--drift", help="Baseline random walk, pA per sqrt(second)."),
    stall_rate: float = typer.Option(_DEFAULTS.stall_rate, "--stall-rate", help="Probability that a base stalls."),
    no_open_pore: bool = typer.Option(False, "--no-open-pore", help="Start reads at the first true base (no open pore, adapter or leader)."),
    ambiguous: str = typer.Option(_DEFAULTS.ambiguous, "--ambiguous", help="Non-ACGT reference bases: skip (reads avoid them) or replace (random base)."),
    kmer_model: Optional[Path] = typer.Option(None, "--kmer-model", help="Pore model file (default: the chemistry's: ONT's R9.4 450 b/s 6-mer model, Uncalled4's R10.4.1 9-mer table)."),
) -> None:
    """Simulate reads from references: raw signal as pod5, true sequences as FASTA."""
    if n < 0:
        raise EdgecallError(f"--reads must not be negative, got {n}")
    chem = chemistry(chemistry_name)
    overrides = {k: v for k, v in {"dwell_mean": dwell_mean, "noise": noise}.items() if v is not None}
    options = SimulationOptions.for_chemistry(
        chem.name, sample_rate, mean_length=mean_length, length_sigma=0.0 if fixed_length else _DEFAULTS.length_sigma,
        min_length=min_length, max_length=max_length, drift=drift, stall_rate=stall_rate, open_pore=not no_open_pore,
        ambiguous=ambiguous, seed=seed, **overrides,
    )
    records: dict[str, str] = {}
    for path in references:
        for name, sequence in read_fasta(path).items():
            if name in records:
                raise EdgecallError(f"{path}: record '{name}' also appears in an earlier reference")
            records[name] = sequence
    model = load_kmer_model(kmer_model or default_kmer_model_path(chem))
    truth_path = truth or output.with_name(output.name.removesuffix(".pod5") + ".truth.fasta")
    totals = {"bases": 0, "samples": 0, "base_samples": 0}
    start = time.perf_counter()
    reads = _counted(simulate_reads(records, n, options, model), n, totals)
    count = write_pod5(reads, output, truth=truth_path)
    elapsed = time.perf_counter() - start
    sys.stderr.write(
        f"edgecall: {count} reads, {totals['bases']:,} bases, {totals['samples']:,} samples "
        f"({totals['base_samples'] / max(totals['bases'], 1):.2f} samples/base, {chem.name} at {options.sample_rate} Hz) in {elapsed:.1f} s; "
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
