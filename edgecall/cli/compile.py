"""``edgecall compile CHECKPOINT --target ...``: shrink, export and package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import typer

from edgecall.errors import MissingExtraError, UsageError, raise_missing_extra
from edgecall.layers import LSTM_WIDTH_MULTIPLE
from edgecall.package import load_package


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)


def compile_command(
    checkpoint: Path = typer.Argument(..., help="Sparse or dense checkpoint: efficient-basecallers .pt, Bonito model dir, or edgecall training checkpoint."),
    target: list[str] = typer.Option(["CPU"], "--target", "-t", help="OpenVINO target: CPU, GPU, NPU or MYRIAD (repeat for several)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Package directory (default: <checkpoint>.edgecall next to it)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name for the FASTQ RG tag (default: checkpoint name)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Bonito/edgecall config.toml to take chunking, qscore and normalisation from (checkpoints without one)."),
    int8: bool = typer.Option(False, "--int8", help="Also write an int8 CPU IR (openvino/CPU-INT8) by NNCF post-training quantisation; needs nncf."),
    int8_min_agreement: float = typer.Option(0.95, "--int8-min-agreement", min=0.0, max=1.0, help="--int8: refuse an int8 IR whose calls agree with the f32 calls on fewer bases than this (0 writes any)."),
    beam_width: Optional[int] = typer.Option(None, "--beam-width", min=1, help="Beam width the package's decoder uses (default: the checkpoint config's, else 32)."),
    check_precision: list[str] = typer.Option([], "--check-precision", help="bf16 or f16 (repeat): measure the package's calls in that precision against its f32 calls on --calibration reads, so that 'run --precision' offers it where they agree on >= 99.5% of bases (needs a CPU that computes it natively)."),
    lstm_multiple: Optional[int] = typer.Option(None, "--lstm-multiple", min=1, help=f"Pad each shrunk LSTM with zeroed neurons to a multiple of this width (same outputs; OpenVINO's kernels run such widths faster: the networks 1.4-2.1x in bf16 on AMX); 1 keeps only the kept neurons (default: {LSTM_WIDTH_MULTIPLE}; 1 with --int8, which padding breaks)."),
    calibration: list[Path] = typer.Option([], "--calibration", help="--int8, --check-precision: .pod5/.fast5 files or folders of real reads to calibrate on, not the reads you test on (default: the checkout's shared R9.4.1 test sample if present, else simulated reads)."),
) -> None:
    """Shrink a sparse checkpoint, export ONNX and OpenVINO IR, write a model package."""
    try:
        from edgecall.export.compile import compile_checkpoint
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "edgecall compile")
    from edgecall.config import ModelConfig

    if int8 and importlib.util.find_spec("nncf") is None:  # fail before the slow export, not after it
        raise MissingExtraError("nncf", "export", "edgecall compile --int8")
    if int8 and lstm_multiple not in (None, 1):
        raise UsageError("--int8 needs unpadded LSTMs (--lstm-multiple 1): int8 quantisation breaks zeroed padding neurons")
    multiple = 1 if int8 else lstm_multiple or LSTM_WIDTH_MULTIPLE
    base = ModelConfig.load(config) if config is not None else None
    targets = [t.upper() for t in target]
    if int8 and "CPU" not in targets:
        targets.append("CPU")  # the int8 IR is quantised from the CPU (f32) IR
    result = compile_checkpoint(checkpoint, output, targets=targets, name=name, base_config=base, beam_width=beam_width,
                                lstm_multiple=multiple)
    _summary(result)
    if int8:
        _quantize(result.package.path, calibration, int8_min_agreement)
    for precision in check_precision:
        _check_precision(result.package.path, precision.lower(), calibration)


def _check_precision(package: Path, precision: str, calibration: list[Path]) -> None:
    from edgecall.devices.precision import REDUCED
    from edgecall.errors import EdgecallError
    from edgecall.export.precision_check import check_precision
    from edgecall.export.quantize import default_calibration_reads
    from edgecall.runtime.readers import find_inputs, iter_reads

    if precision not in REDUCED:
        raise EdgecallError(f"--check-precision {precision}: choose {' or '.join(REDUCED)}")
    if calibration:
        reads, source = iter_reads(find_inputs(calibration)), ", ".join(map(str, calibration))
    else:
        reads, source = default_calibration_reads()
    record = check_precision(package, precision, reads, source)
    verdict = "offered by 'run --precision'" if record["passed"] else f"refused (needs {record['min_agreement']:.1%})"
    typer.echo(f"{precision}: calls agree with f32 on {record['agreement']:.2%} of bases of {record['chunks']} chunks: "
               f"{verdict}", err=True)


def _quantize(package: Path, calibration: list[Path], min_agreement: float) -> None:
    from edgecall.export.quantize import default_calibration_reads, quantize_package

    reads, source = (calibration, ", ".join(map(str, calibration))) if calibration else default_calibration_reads()
    typer.echo(f"int8: calibrating on {source}", err=True)
    xml = quantize_package(package, reads, min_agreement=min_agreement)
    int8 = load_package(package).provenance["int8"]  # what quantize_package measured
    counts = ", ".join(f"{v} {k}" for k, v in int8["ops"].items())
    typer.echo(f"  {xml} (int8: {counts}; its calls agree with f32 on {int8['agreement_with_f32_calls']:.2%} of bases)", err=True)


def _summary(result) -> None:  # noqa: ANN001 - CompileResult, imported lazily with torch
    echo = lambda s="": typer.echo(s, err=True)  # noqa: E731
    cfg = result.package.path
    echo(f"compiled {result.checkpoint.source} ({result.checkpoint.kind})")
    echo("  LSTM layer   kept / original")
    for i, (k, o, w) in enumerate(zip(result.kept, result.original, result.widths)):
        padding = f"  + {w - k} zeroed = {w} wide" if w != k else ""
        echo(f"  {i:>10}   {k:>4} / {o:<4} ({100.0 * k / o:5.1f}%){padding}")
    b, a = result.before, result.after
    echo(f"  LSTM FLOPs/sample  {b.rnn_flops:,.0f} -> {a.rnn_flops:,.0f}  ({b.rnn_flops / a.rnn_flops:.1f}x fewer)")
    echo(f"  all FLOPs/sample   {b.flops:,.0f} -> {a.flops:,.0f}  ({b.flops / a.flops:.1f}x fewer)")
    echo(f"  parameters         {b.parameters:,} -> {a.parameters:,}  ({b.parameters / a.parameters:.1f}x fewer)")
    echo(f"  ONNX vs checkpoint max |error| {result.max_abs_error:.1e}")
    echo(f"package: {cfg}")
    echo(f"  {cfg / 'model.onnx'}")
    for ir in result.package.irs:
        shape = f", static input {'x'.join(map(str, ir.static_shape))}" if ir.static_shape else ""
        echo(f"  {ir.xml} ({ir.precision}{shape})")
        for line in ir.message.splitlines():
            echo(f"    {line}")
    if not any(ir.compiled for ir in result.package.irs) and result.package.irs:
        echo("note: no target compiled on this machine; the IR files are ready for the device that has it")
