"""``edgecall compile CHECKPOINT --target ...``: shrink, export and package."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecall.errors import raise_missing_extra


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_command)


def compile_command(
    checkpoint: Path = typer.Argument(..., help="Sparse or dense checkpoint: efficient-basecallers .pt, Bonito model dir, or edgecall training checkpoint."),
    target: list[str] = typer.Option(["CPU"], "--target", "-t", help="OpenVINO target: CPU, GPU, NPU or MYRIAD (repeat for several)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Package directory (default: <checkpoint>.edgecall next to it)."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name for the FASTQ RG tag (default: checkpoint name)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Bonito/edgecall config.toml to take chunking, qscore and normalisation from (checkpoints without one)."),
) -> None:
    """Shrink a sparse checkpoint, export ONNX and OpenVINO IR, write a model package."""
    try:
        from edgecall.export.compile import compile_checkpoint
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "edgecall compile")
    from edgecall.config import ModelConfig

    base = ModelConfig.load(config) if config is not None else None
    result = compile_checkpoint(checkpoint, output, targets=target, name=name, base_config=base)
    _summary(result)


def _summary(result) -> None:  # noqa: ANN001 - CompileResult, imported lazily with torch
    echo = lambda s="": typer.echo(s, err=True)  # noqa: E731
    cfg = result.package.path
    echo(f"compiled {result.checkpoint.source} ({result.checkpoint.kind})")
    echo("  LSTM layer   kept / original")
    for i, (k, o) in enumerate(zip(result.kept, result.original)):
        echo(f"  {i:>10}   {k:>4} / {o:<4} ({100.0 * k / o:5.1f}%)")
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
