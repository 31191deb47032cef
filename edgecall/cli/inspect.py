"""``edgecall inspect MODEL``: what a checkpoint or package contains and costs."""

from __future__ import annotations


from pathlib import Path

import typer

from edgecall.config import ModelConfig
from edgecall.costs import model_costs
from edgecall.errors import raise_missing_extra
from edgecall.layers import Recurrent, describe_layer
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
    _describe(package.config, original, f"package {package.path}", kept=provenance.get("neurons_kept"))
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
        shown = ckpt.config.replace(encoder=ckpt.config.encoder.with_hidden_sizes(kept))
    title = f"checkpoint {path} ({ckpt.kind}{', sparse: sizes after shrinking' if ckpt.log_alpha is not None else ''})"
    _describe(shown, list(ckpt.config.encoder.hidden_sizes), title, sparse=ckpt.log_alpha is not None)
    if not all(kept):
        typer.echo("warning: a layer keeps no neurons; this checkpoint cannot be shrunk")


def _describe(config: ModelConfig, original: list[int] | None, title: str, sparse: bool = True,
              kept: list[int] | None = None) -> None:
    """``kept``: neurons kept per recurrent layer where the written width adds zeroed padding (compile's --lstm-multiple)."""
    enc, dec = config.encoder, config.decoder
    costs = model_costs(config)
    typer.echo(title)
    typer.echo(f"name:          {config.name}")
    typer.echo(f"architecture:  {enc.architecture} ({enc.rnn_type.upper()} x{len(enc.recurrent)}, stride {enc.stride})")
    if dec.kind == "crf":
        stay = "learned stay scores" if config.blank_score is None else f"blank {config.blank_score:g}"
        typer.echo(f"decoder:       crf (state_len {config.state_len}, {config.num_outputs} outputs, {stay})")
    else:
        typer.echo(f"decoder:       ctc ({''.join(dec.labels)})")
    if config.tier:
        typer.echo(f"tier:          {config.tier}")
    typer.echo(f"chemistry:     {config.chemistry}, {config.sample_rate} Hz")
    typer.echo(f"normalisation: {config.normalisation.strategy}{', trim' if config.normalisation.trim else ''}")
    typer.echo(f"chunking:      {config.basecaller.chunksize} samples, overlap {config.basecaller.overlap}, batch {config.basecaller.batchsize}")
    typer.echo("layers:")
    k = 0
    for i, layer in enumerate(enc.sublayers):
        line = f"  {i}: {describe_layer(layer)}"
        if isinstance(layer, Recurrent):
            if original and sparse and k < len(original):
                alive = kept[k] if kept and k < len(kept) else layer.size
                padding = f"; {layer.size - alive} zeroed to width {layer.size}" if layer.size > alive else ""
                line += f" ({alive} / {original[k]} neurons, {100.0 * (1 - alive / original[k]):.1f}% removed{padding})"
            k += 1
        typer.echo(line)
    typer.echo(f"FLOPs/sample:  {costs.flops:,.0f} (recurrent {costs.rnn_flops:,.0f}, conv {costs.conv_flops:,.0f}, head {costs.head_flops:,.0f})")
    typer.echo(f"parameters:    {costs.parameters:,}")
