"""``edgecall train OUT_DIR``: train a CRF basecaller with neuron-selection masking, resumably.

Built for long unattended CPU runs: ``nohup edgecall train run1 --steps 20000
2> run1.log &``. Kill it at any moment (even ``kill -9``) and run the same
command again: it resumes from the newest checkpoint in OUT_DIR with the same
weights, optimiser, RNGs and batches (data are a function of the step). Every
checkpoint compiles with ``edgecall compile OUT_DIR/checkpoint_NNNNNNNN.pt``.

Data: simulated reads of the model's chemistry (R9.4.1 or R10.4.1) with exact
truth (edgecall.train.data), plus, if given, real reads labelled with their
reference through a BAM with move tables (edgecall.train.aligned) and real
reads labelled with another basecaller's calls (edgecall.train.pseudo_labels),
and Bonito-format training data (edgecall.train.bonito_data). Real reads at
another sample rate than the model's are resampled. Validation is simulated,
from its own seed stream, so its accuracy is measured against truth, not
against a teacher; with --data it is the data's held-out rows.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from edgecall.chemistry import pore
from edgecall.config import BasecallerConfig, ModelConfig, NormalisationConfig, rnn_encoder_config
from edgecall.errors import EdgecallError, UsageError, raise_missing_extra
from edgecall.layers import Convolution
from edgecall.train.chemistry import CHEMISTRIES, Chemistry, chemistry
from edgecall.train.pseudo_labels import MIN_QSCORE, Augmentation, RealReads

DATA_NAME = "data.json"  # the data options of the latest call; a resume names what changed
DEFAULT_HIDDEN, DEFAULT_LAYERS, DEFAULT_STATE_LEN = 128, 5, 4
DEFAULT_CHEMISTRY = "r9.4.1"


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def train_command(
    out_dir: Path = typer.Argument(..., help="Folder for checkpoints, train.tsv and data.json; a run already there resumes."),
    config: Optional[Path] = typer.Option(None, "--config", help="Model config TOML (edgecall or bonito); instead of the size options below."),
    hidden: Optional[int] = typer.Option(None, "--hidden", help=f"LSTM neurons per layer before masking (default {DEFAULT_HIDDEN}; with --init-from, widens its LSTMs to this: the new neurons feed the next layer through zero weights at first, so the model starts out computing what it did)."),
    layers: Optional[int] = typer.Option(None, "--layers", help=f"LSTM layers (default {DEFAULT_LAYERS})."),
    state_len: Optional[int] = typer.Option(None, "--state-len", help=f"CRF state k-mer length (default {DEFAULT_STATE_LEN}: 1024 outputs)."),
    features: Optional[int] = typer.Option(None, "--features", help="Channels of the last convolution (default: --hidden)."),
    chemistry_name: Optional[str] = typer.Option(None, "--chemistry", help=f"A new model's chemistry ({', '.join(CHEMISTRIES)}; default r9.4.1, or what --config's model or ONT folder name says): its simulator, stride, convolutions and normalisation. A resumed or --init-from run keeps its model's."),
    sample_rate: Optional[int] = typer.Option(None, "--sample-rate", help="A new model's sample rate in Hz (default: --config's, else the chemistry's first: R9.4.1 4000, R10.4.1 5000)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start a new run from this checkpoint's weights and masks (any checkpoint compile reads), at step 0; --state-len may differ (the CRF head is re-derived). A run already in OUT_DIR resumes instead."),
    steps: int = typer.Option(100_000, "--steps", help="Optimiser steps in the whole run (raise it to extend a run)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Chunks per step."),
    chunksize: int = typer.Option(4000, "--chunksize", help="Samples per chunk (a multiple of the model's stride)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (Adam; cosine decay to 1e-5 at --steps)."),
    warmup_steps: int = typer.Option(5000, "--warmup-steps", help="Linear learning-rate warm-up."),
    lambda_initial: float = typer.Option(5e-8, "--lambda-initial", help="L0 weight before --lambda-step (delayed masking)."),
    lambda_target: float = typer.Option(6e-7, "--lambda-target", help="L0 weight from --lambda-step on (paper: 2e-7, 6e-7, 2e-6)."),
    lambda_step: int = typer.Option(10_000, "--lambda-step", help="Step at which lambda switches to --lambda-target."),
    reference: list[Path] = typer.Option([], "--reference", help="FASTA to simulate reads from (repeat). Default: the shared phiX, monkeypox and human chr4 references, if present."),
    random_fraction: float = typer.Option(0.3, "--random-fraction", help="Share of simulated chunks drawn from random sequence instead of a reference."),
    sim_level_noise: Optional[float] = typer.Option(None, "--sim-level-noise", help="Simulated per-base level jitter, in units of the pore model's level stdv (default: the chemistry's fitted value, 0.4 for R9.4.1, 0.9 for R10.4.1): how hard the simulated signal is, for measuring sim-to-real transfer."),
    real_reads: list[Path] = typer.Option([], "--real-reads", help="R9.4.1 4 kHz pod5/fast5 files or folders with pseudo-labels (repeat; needs --real-calls)."),
    real_calls: list[Path] = typer.Option([], "--real-calls", help="FASTQ of those reads from 'edgecall run --emit-moves' (repeat; the labels: a teacher's calls, with its errors)."),
    real_summary: list[Path] = typer.Option([], "--real-summary", help="Those runs' --emit-summary TSVs (their trims; repeat); default: recompute the trims."),
    real_min_qscore: float = typer.Option(MIN_QSCORE, "--real-min-qscore", help="Leave out reads whose mean call Q is below this (wrong chemistry, junk)."),
    real_fraction: float = typer.Option(0.25, "--real-fraction", help="Share of each batch from the real reads."),
    aligned_reads: list[Path] = typer.Option([], "--aligned-reads", help="pod5/fast5 files or folders of real reads whose truth is their reference alignment (repeat; needs --aligned-bam)."),
    aligned_bam: list[Path] = typer.Option([], "--aligned-bam", help="BAMs of those reads' calls with mv move tables and MD tags, aligned to their genome (repeat)."),
    aligned_fraction: float = typer.Option(0.5, "--aligned-fraction", help="Share of each batch from the reference-labelled reads."),
    holdout_read: list[str] = typer.Option([], "--holdout-read", help="Read id kept out of --aligned-reads (repeat): an independent check."),
    augment: str = typer.Option("", "--augment-real", help="Randomly change each chunk of the real reads (--real-reads, --aligned-reads, --unlabelled), so few reads teach the signal rather than themselves: SPEED,GAIN,OFFSET,NOISE (e.g. 0.1,0.1,0.1,0.1: time stretched by up to 10%, level scaled by up to 10% and shifted by up to 0.1, white noise of up to 0.1, normalised units); default: none."),
    data_dir: Optional[Path] = typer.Option(None, "--data", help="Bonito training data folder (chunks.npy, references.npy, reference_lengths.npy; 'bonito download --training' or 'bonito basecaller --save-ctc'), memory-mapped; validation from its validation/ folder or its last rows."),
    valid_data: Optional[Path] = typer.Option(None, "--valid-data", help="Bonito-format validation folder (default: DATA/validation, else DATA's last rows)."),
    check_data_speed: bool = typer.Option(True, "--check-data-speed/--no-check-data-speed", help="Refuse --data whose median samples per base lie over 15% from the model's rate over its speed (data of another chemistry, speed or sample rate)."),
    data_fraction: float = typer.Option(1.0, "--data-fraction", help="Share of each batch from --data (the rest simulated or from the other real sources)."),
    teacher: Optional[str] = typer.Option(None, "--teacher", help="Distillation: the model (name, package or ONT folder) whose calls of --unlabelled reads are the targets."),
    unlabelled: list[Path] = typer.Option([], "--unlabelled", help="Distillation: pod5/fast5 files or folders without truth, called once by --teacher (repeat)."),
    teacher_fraction: float = typer.Option(0.5, "--teacher-fraction", help="Share of each batch from the teacher-labelled reads."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N] (checkpoints resume on either)."),
    precision: str = typer.Option("auto", "--precision", help="The network's precision: f32, or bf16 autocast (weights, optimiser and CRF loss stay f32). auto: bf16 on a GPU, f32 on a CPU; bf16 on a CPU needs native bf16 (AMX or AVX512_BF16), where it trains wide models at large batches faster."),
    validation_size: int = typer.Option(32, "--validation-size", help="Simulated validation chunks (their own seed stream); 0: no validation."),
    gate_lr_scale: float = typer.Option(1.0, "--gate-lr-scale", help="Learning rate of the neuron gates as a multiple of the weights' (raise it when a short run does not prune)."),
    threads: int = typer.Option(0, "--threads", help="Torch threads (0: torch's default). On a busy shared CPU 1 is steadier and often faster."),
    seed: int = typer.Option(25, "--seed", help="Seeds the weights and every batch."),
    checkpoint_every: int = typer.Option(200, "--checkpoint-every", help="Steps per checkpoint (the newest 3 are kept)."),
    validate_every: int = typer.Option(500, "--validate-every", help="Steps per validation."),
    log_every: int = typer.Option(20, "--log-every", help="Steps per progress line (stderr) and train.tsv row."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Resume a run found in OUT_DIR (--no-resume refuses to touch one)."),
) -> None:
    """Train a Bonito-style CRF model with neuron-selection (L0) masking; resumes after a kill."""
    try:
        import torch  # noqa: F401 - the export extra

        from edgecall.train import loop
        from edgecall.train.aligned import AlignedReads
        from edgecall.train.data import (
            VALIDATION_STREAM, MixedSource, SimulatedData, SimulatedSource, default_references, load_references, to_batch,
        )
        from edgecall.train.simulate import SimulationOptions
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "edgecall train")
    found = loop.checkpoints(out_dir)
    if found and not resume:
        raise EdgecallError(f"{out_dir}: holds a run (newest {found[-1][1].name}); use --resume or another folder")
    size = {"hidden": hidden, "layers": layers, "state_len": state_len, "features": features}
    if found or init_from is None:
        model_config = _model_config(out_dir, config, size, stored=found[-1][1] if found else None,
                                     chemistry_name=chemistry_name, sample_rate=sample_rate)
    else:
        model_config = _pretrained_config(out_dir, init_from, config, size)
    _check_kept_chemistry(model_config, chemistry_name, sample_rate)
    options = loop.TrainOptions(
        out_dir=out_dir, steps=steps, batch_size=batch_size, chunksize=chunksize, lr=lr, warmup_steps=warmup_steps,
        lambda_initial=lambda_initial, lambda_target=lambda_target, lambda_step=lambda_step,
        gate_lr_scale=gate_lr_scale, log_every=log_every,
        checkpoint_every=checkpoint_every, validate_every=validate_every, seed=seed, threads=threads,
        init_from=init_from, device=device, precision=precision,
    )
    trained_in = loop.network_precision(options)  # an impossible precision is refused before any data is read
    if teacher is not None and unlabelled:
        real_reads, real_calls, real_summary = list(unlabelled), *_teacher_calls(out_dir, teacher, unlabelled)
        real_fraction = teacher_fraction
    elif teacher is not None or unlabelled:
        raise EdgecallError("--teacher and --unlabelled go together")
    if bool(real_reads) != bool(real_calls) or not 0.0 <= real_fraction <= 1.0:
        raise EdgecallError("--real-reads and --real-calls go together, and --real-fraction must be in [0, 1]")
    if bool(aligned_reads) != bool(aligned_bam) or not 0.0 <= aligned_fraction <= 1.0:
        raise EdgecallError("--aligned-reads and --aligned-bam go together, and --aligned-fraction must be in [0, 1]")
    if not 0.0 <= data_fraction <= 1.0:
        raise EdgecallError(f"--data-fraction must be in [0, 1], got {data_fraction}")
    shares = ((real_fraction if real_reads else 0.0) + (aligned_fraction if aligned_reads else 0.0)
              + (data_fraction if data_dir is not None else 0.0))
    if shares > 1.0 + 1e-9:
        raise EdgecallError(f"the shares of --real-fraction, --aligned-fraction, --teacher-fraction and --data-fraction "
                            f"add up to {shares:g}, more than the whole batch")
    augmentation = _augmentation(augment)
    if sim_level_noise is not None and sim_level_noise < 0:
        raise UsageError(f"--sim-level-noise must not be negative, got {sim_level_noise:g}")
    references = list(reference) or list(default_references())
    data_options = {
        "references": [str(p) for p in references], "random_fraction": random_fraction, "seed": seed,
        "real_reads": [str(p) for p in real_reads], "real_calls": [str(p) for p in real_calls],
        "real_summary": [str(p) for p in real_summary], "real_min_qscore": real_min_qscore,
        "real_fraction": real_fraction if real_reads else 0.0,
        "batch_size": batch_size, "chunksize": chunksize, "validation_size": validation_size,
    }
    if data_dir is not None:
        data_options.update({"data": str(data_dir), "valid_data": str(valid_data) if valid_data else None,
                             "data_fraction": data_fraction})
    if sim_level_noise is not None:  # recorded only when used, so runs without it resume without a note
        data_options["sim_level_noise"] = sim_level_noise
    if augmentation is not None:  # recorded only when used, so runs without it resume without a note
        data_options["augment_real"] = augment
    if aligned_reads:  # recorded only when used, so runs without them resume without a note
        data_options.update({"aligned_reads": [str(p) for p in aligned_reads], "aligned_bam": [str(p) for p in aligned_bam],
                             "aligned_fraction": aligned_fraction, "holdout_read": sorted(holdout_read)})
    parts: list[tuple[Any, float]] = []
    if real_reads:
        real = RealReads(tuple(real_reads), tuple(real_calls), tuple(real_summary), min_qscore=real_min_qscore)
        parts.append((_real_source(model_config, chunksize, real, seed, augmentation), real_fraction))
    if aligned_reads:
        aligned = AlignedReads(tuple(aligned_reads), tuple(aligned_bam), holdout=frozenset(holdout_read))
        parts.append((_aligned_source(model_config, chunksize, aligned, seed, augmentation), aligned_fraction))
    bonito_valid = None
    if data_dir is not None:
        from edgecall.train.bonito_data import training_and_validation

        bonito, bonito_valid = training_and_validation(data_dir, valid_data, model_config, chunksize, validation_size, seed,
                                                       check_data_speed)
        _say(f"Bonito data: {bonito.data.rows:,} chunks in {data_dir} ({len(bonito.rows):,} for training)"
             + (f", {len(bonito_valid.rows)} for validation from {bonito_valid.data.folder}" if bonito_valid else ""))
        parts.append((bonito, data_fraction))
    simulated_share = max(0.0, 1.0 - shares)
    simulated_validation = bonito_valid is None and validation_size > 0
    simulated = "no simulated chunks"
    val = None if bonito_valid is None else to_batch(bonito_valid.all_chunks())
    if simulated_share > 1e-9 or simulated_validation:
        # the simulated part goes first: MixedSource gives the first part what the others' rounding leaves
        chem = _config_chemistry(model_config, needed_for="simulated chunks" if simulated_share > 1e-9 else "validation")
        records = load_references(references)
        overrides = {} if sim_level_noise is None else {"level_noise": sim_level_noise}
        simulation = SimulationOptions.for_chemistry(chem.name, model_config.sample_rate, **overrides)
        sim = SimulatedData(random_fraction=random_fraction if records else 1.0, seed=seed, simulation=simulation)
        parts.insert(0, (SimulatedSource(model_config, chunksize, records, sim), simulated_share))
        if simulated_validation:
            val_source = SimulatedSource(model_config, chunksize, records, sim, stream=VALIDATION_STREAM)
            val = to_batch(val_source.chunks(0, validation_size))
        simulated = (f"{chem.name} simulated from {len(records)} reference records "
                     f"({sum(map(len, records.values())):,} bases) + {sim.random_fraction:.0%} random")
    data = MixedSource(parts, batch_size)
    _record(out_dir, data_options, options, found[-1][1] if found else None)
    _say(f"model {model_config.name} ({model_config.chemistry}, {model_config.sample_rate} Hz, stride {model_config.stride}, "
         f"{model_config.normalisation.strategy}): LSTM {','.join(map(str, model_config.encoder.hidden_sizes))}, features "
         f"{model_config.encoder.features}, state_len {model_config.state_len}; {simulated}; "
         f"batch {batch_size} x {chunksize} samples, {device} {trained_in}; "
         + (f"resuming {found[-1][1].name}" if found else f"starting from {init_from}" if init_from else "fresh start")
         + f" -> step {steps}")
    _suggest_bf16(options)
    result = loop.train(model_config, options, data, val)
    _say(f"step {result.step}: {result.checkpoint}; package it with: edgecall compile {result.checkpoint}")


def _model_config(out_dir: Path, config: Path | None, size: dict[str, int | None], stored: Path | None,
                  chemistry_name: str | None, sample_rate: int | None) -> ModelConfig:
    """--config, else the size options (and the chemistry's defaults), else (on resume) the run's own config."""
    given = {k: v for k, v in size.items() if v is not None}
    if config is not None and stored is None:
        if given:
            raise EdgecallError(f"--config and --{'/--'.join(k.replace('_', '-') for k in given)} exclude each other")
        return _config_file_model(out_dir, config, chemistry_name, sample_rate)
    if stored is not None and not given:
        from edgecall.model.checkpoint import load_checkpoint

        return load_checkpoint(stored).config
    chem = chemistry(chemistry_name or DEFAULT_CHEMISTRY)
    hidden = size["hidden"] or DEFAULT_HIDDEN
    features = size["features"] or hidden
    return ModelConfig(
        name=out_dir.name, chemistry=chem.config_chemistry,
        sample_rate=chem.check_rate(sample_rate or chem.sample_rates[0]),
        encoder=rnn_encoder_config(conv_channels=(*chem.conv_channels, features), stride=chem.stride,
                                   hidden_sizes=(hidden,) * (size["layers"] or DEFAULT_LAYERS),
                                   state_len=size["state_len"] or DEFAULT_STATE_LEN),
        normalisation=NormalisationConfig(strategy=chem.normalisation),
        basecaller=BasecallerConfig(chunksize=chem.chunk[0], overlap=chem.chunk[1]),
    )


def _config_file_model(out_dir: Path, path: Path, chemistry_name: str | None, sample_rate: int | None) -> ModelConfig:
    """A new model of --config's layers. Its chemistry and rate are the config's own, or its ONT folder name's
    (``dna_r10.4.1_e8.2_260bps_fast@v4.0.0/config.toml``); --chemistry and --sample-rate fill what it leaves open
    and may not contradict it. Batchnorm is trained as part of its convolution: edgecall's layers hold it folded."""
    from edgecall.catalog import with_folder_identity
    from edgecall.config import read_toml

    doc = read_toml(path)
    config = with_folder_identity(path.resolve().parent, ModelConfig.from_toml(doc, str(path)))
    named = config.chemistry != ModelConfig().chemistry or "chemistry" in doc.get("edgecall", {})
    if chemistry_name is not None:
        wanted = chemistry(chemistry_name)
        if named and pore(config.chemistry) != wanted.name:
            raise EdgecallError(f"--chemistry {chemistry_name}: {path} is a {config.chemistry} model; "
                                f"drop --chemistry or give a {wanted.name} config")
        if not named:
            config = config.replace(chemistry=wanted.config_chemistry)
    if sample_rate is not None and sample_rate != config.sample_rate:
        if "sample_rate" in doc.get("run_info", {}):
            raise EdgecallError(f"--sample-rate {sample_rate}: {path} is a {config.sample_rate} Hz model")
        config = config.replace(sample_rate=sample_rate)
    folded = tuple(dataclasses.replace(x, norm=None) if isinstance(x, Convolution) and x.norm else x
                   for x in config.encoder.sublayers)
    if folded != config.encoder.sublayers:
        _say(f"{path}: its convolutions' batchnorm is trained folded into them (edgecall's layer list holds "
             f"batchnorm folded; the compiled network is the same)")
    return config.replace(name=out_dir.name, encoder=dataclasses.replace(config.encoder, sublayers=folded))


def _suggest_bf16(options: Any) -> None:
    """On a CPU with native bf16, large batches of wide models train faster in it (bench/RESULTS.md); f32 stays
    the CPU's default, so a run is never changed behind the user's back."""
    from edgecall.devices.precision import native_precisions

    if options.device == "cpu" and options.precision == "auto" and "bf16" in native_precisions():
        _say("this CPU computes bf16 natively (AMX or AVX512_BF16): --precision bf16 may train faster (2.4x for "
             "ONT's hac size at batch 64 x 12,000 on an AMX Xeon); compare with bench/train_step.py --precisions f32 bf16")


def _check_kept_chemistry(config: ModelConfig, chemistry_name: str | None, sample_rate: int | None) -> None:
    """A resumed or --init-from model keeps its chemistry and rate: an option asking for others is refused, not
    ignored, since training it on another chemistry's signal would be silently wrong."""
    if chemistry_name is not None and pore(config.chemistry) != chemistry(chemistry_name).name:
        raise EdgecallError(f"--chemistry {chemistry_name}: the model being trained is {config.chemistry} "
                            f"({config.name}); drop --chemistry, or start a new run")
    if sample_rate is not None and sample_rate != config.sample_rate:
        raise EdgecallError(f"--sample-rate {sample_rate}: the model being trained is {config.sample_rate} Hz "
                            f"({config.name}); drop --sample-rate, or start a new run")


def _config_chemistry(config: ModelConfig, needed_for: str = "") -> Chemistry:
    """The chemistry whose reads the model's config asks for (its simulator makes the training signal)."""
    for chem in CHEMISTRIES.values():
        if chem.config_chemistry == config.chemistry:
            chem.check_rate(config.sample_rate)
            return chem
    known = ", ".join(c.config_chemistry for c in CHEMISTRIES.values())
    advice = ("; train it on real data alone (--data with --data-fraction 1, or reads whose fractions add up to 1) "
              "and validate on --data's held-out rows or with --validation-size 0") if needed_for else ""
    raise EdgecallError(f"model '{config.name}' is for chemistry '{config.chemistry}'; edgecall simulates {known}"
                        + (f", which {needed_for} would need" if needed_for else "") + advice)


def _pretrained_config(out_dir: Path, init_from: Path, config: Path | None, size: dict[str, int | None]) -> ModelConfig:
    """The model of ``init_from``, with --state-len and a wider --hidden if given; other size options would not fit
    its weights."""
    from edgecall.model.checkpoint import load_checkpoint
    from edgecall.train.masked_model import check_widening

    given = [k for k, v in size.items() if v is not None and k not in ("state_len", "hidden")]
    if config is not None or given:
        names = (["config"] if config is not None else []) + given
        raise EdgecallError(
            f"--init-from takes the model from {init_from}; drop --{', --'.join(n.replace('_', '-') for n in names)}"
        )
    base = load_checkpoint(init_from).config
    hidden = size["hidden"]
    if hidden is not None:
        stored = base.encoder.hidden_sizes
        check_widening(f"--hidden {hidden}: {init_from}", stored, (hidden,) * len(stored))
        base = base.replace(encoder=base.encoder.with_hidden_sizes((hidden,) * len(stored)))
    return base.with_state_len(size["state_len"] or base.state_len).replace(name=out_dir.name)


def _teacher_calls(out_dir: Path, teacher: str, reads: list[Path]) -> tuple[list[Path], list[Path]]:
    """The teacher's calls of the unlabelled reads (with moves and trims), made once by 'edgecall run' and kept
    in OUT_DIR/teacher/: an interrupted call resumes, a finished one is reused."""
    import subprocess

    folder = out_dir / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    calls, summary, done = folder / "calls.fastq", folder / "summary.tsv", folder / "done"
    if not done.is_file():
        command = [sys.executable, "-m", "edgecall", "run", "--model", teacher, "--emit-moves", "-o", str(calls),
                   "--emit-summary", str(summary), "-r", *map(str, reads)]
        if calls.is_file():
            command += ["--resume-from", str(calls)]
        _say(f"labelling {', '.join(map(str, reads))} with the teacher {teacher} (once; kept in {folder})")
        status = subprocess.run(command).returncode
        if status not in (0, 3):  # 3: some reads were skipped (named above), the rest are labelled
            raise EdgecallError(f"the teacher's run failed (exit status {status}); its partial calls stay in {calls}")
        done.write_text(teacher + "\n")
    return [calls], [summary]


def _aligned_source(config: ModelConfig, chunksize: int, aligned: Any, seed: int, augment: Augmentation | None) -> Any:
    from edgecall.train.aligned import load_aligned
    from edgecall.train.pseudo_labels import PseudoLabelledSource

    reads, skipped = load_aligned(aligned, config)
    bases = sum(r.bases.size for r in reads)
    left_out = "; ".join(f"{n} {reason}" for reason, n in skipped.items())
    _say(f"reference-labelled reads: {len(reads)} from {', '.join(p.name for p in aligned.bams)} ({bases:,} bases, "
         f"{sum(r.signal.size for r in reads):,} samples at {config.sample_rate} Hz)" + (f"; left out: {left_out}" if left_out else ""))
    return PseudoLabelledSource(reads, config, chunksize, seed=seed, stream_tag=2, augment=augment)


def _real_source(config: ModelConfig, chunksize: int, real: RealReads, seed: int, augment: Augmentation | None) -> Any:
    from edgecall.train.pseudo_labels import PseudoLabelledSource, load_pseudo_labelled

    reads, skipped = load_pseudo_labelled(real, config)
    bases = sum(r.bases.size for r in reads)
    left_out = "; ".join(f"{n} {reason}" for reason, n in skipped.items())
    _say(f"real reads: {len(reads)} labelled by {', '.join(p.name for p in real.calls)} ({bases:,} bases)"
         + (f"; left out: {left_out}" if left_out else ""))
    return PseudoLabelledSource(reads, config, chunksize, seed=seed, augment=augment)


def _augmentation(text: str) -> Augmentation | None:
    """--augment-real SPEED,GAIN,OFFSET,NOISE as an Augmentation; None when not given."""
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",")]
        if len(values) != 4:
            raise ValueError
    except ValueError:
        raise UsageError(f"--augment-real takes four numbers SPEED,GAIN,OFFSET,NOISE (e.g. 0.1,0.1,0.1,0.1), got '{text}'") from None
    try:
        return Augmentation(*values)
    except EdgecallError as exc:
        raise UsageError(f"--augment-real: {exc}") from None


def _record(out_dir: Path, data_options: dict[str, Any], options: Any, stored: Path | None) -> None:
    """On resume, name every option that changed since the last call; then write this call's data options."""
    path = out_dir / DATA_NAME
    if stored is not None:
        import torch

        before = dict(torch.load(stored, map_location="cpu", weights_only=True).get("options", {}))
        before.update(json.loads(path.read_text()) if path.is_file() else {})
        from edgecall.train.loop import options_dict

        now = {k: v for k, v in options_dict(options).items() if k != "out_dir"}
        for key, value in {**now, **data_options}.items():
            if key in before and before[key] != value:
                _say(f"note: {key} was {before[key]!r} in the previous call, now {value!r}"
                     + (": batches from here on differ from a straight run" if key in data_options else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data_options, indent=1) + "\n")


def _say(line: str) -> None:
    sys.stderr.write(f"edgecall train: {line}\n")
    sys.stderr.flush()
