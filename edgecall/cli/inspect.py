"""``edgecall inspect MODEL``: what a checkpoint or package contains and costs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer

from edgecall.config import ModelConfig
from edgecall.costs import model_costs
from edgecall.errors import raise_missing_extra
from edgecall.package import is_package, load_package


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)


def inspect_command(
    model: str = typer.Argument(..., help="Model package directory, bundled model name, or checkpoint."),
) -> None:
    """Architecture, per-layer sizes, sparsity, FLOPs per sample, chemistry and sample rate."""
    path = Path(model)
    if path.exists() and not is_package(path):
        _inspect_checkpoint(path)
        return
    package = load_package(model)
    provenance = package.provenance
    original = provenance.get("neurons_original")
    _describe(package.config, original, f"package {package.path}")
    targets = sorted(p.name for p in (package.path / "openvino").iterdir()) if (package.path / "openvino").is_dir() else []
    typer.echo(f"OpenVINO IR:   {', '.join(targets) or 'none (ONNX only)'}")
    if provenance.get("source"):
        typer.echo(f"source:        {provenance['source']} ({provenance.get('source_kind', '?')}, sha256 {provenance.get('source_sha256', '?')[:12]})")


def _inspect_checkpoint(path: Path) -> None:
    try:
        from edgecall.export.shrink import layer_masks
        from edgecall.model.checkpoint import load_checkpoint
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "inspecting a checkpoint")
    ckpt = load_checkpoint(path)
    kept = tuple(int(m.sum()) for m in layer_masks(ckpt))
    shown = ckpt.config
    if all(kept):
        shown = ckpt.config.replace(encoder=replace(ckpt.config.encoder, layers=kept))
    title = f"checkpoint {path} ({ckpt.kind}{', sparse: sizes after shrinking' if ckpt.log_alpha is not None else ''})"
    _describe(shown, list(ckpt.config.encoder.layers), title, sparse=ckpt.log_alpha is not None)
    if not all(kept):
        typer.echo("warning: a layer keeps no neurons; this checkpoint cannot be shrunk")


def _describe(config: ModelConfig, original: list[int] | None, title: str, sparse: bool = True) -> None:
    enc, dec = config.encoder, config.decoder
    costs = model_costs(config)
    typer.echo(title)
    typer.echo(f"name:          {config.name}")
    typer.echo(f"architecture:  {enc.architecture} ({enc.rnn_type.upper()} x{len(enc.layers)}, conv {list(enc.conv_channels)}, stride {enc.stride})")
    typer.echo(f"decoder:       {dec.kind}" + (f" (state_len {dec.state_len}, {dec.num_outputs} outputs)" if dec.kind == "crf" else f" ({''.join(dec.labels)})"))
    typer.echo(f"chemistry:     {config.chemistry}, {config.sample_rate} Hz")
    typer.echo(f"normalisation: {config.normalisation.strategy}{', trim' if config.normalisation.trim else ''}")
    typer.echo(f"chunking:      {config.basecaller.chunksize} samples, overlap {config.basecaller.overlap}, batch {config.basecaller.batchsize}")
    typer.echo("layers:")
    for i, hidden in enumerate(enc.layers):
        direction = "rev" if enc.layer_reversed(i) else "fwd"
        if original and sparse:
            typer.echo(f"  {i}: {hidden:>4} / {original[i]:<4} neurons ({direction}, {100.0 * (1 - hidden / original[i]):.1f}% removed)")
        else:
            typer.echo(f"  {i}: {hidden:>4} neurons ({direction})")
    typer.echo(f"FLOPs/sample:  {costs.flops:,.0f} (recurrent {costs.rnn_flops:,.0f}, conv {costs.conv_flops:,.0f}, head {costs.head_flops:,.0f})")
    typer.echo(f"parameters:    {costs.parameters:,}")
