"""Checkpoint -> shrunk, exported, verified model package."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from edgecall import __version__
from edgecall.config import ModelConfig
from edgecall.costs import ModelCosts, model_costs
from edgecall.errors import EdgecallError
from edgecall.export.onnx_export import INPUT_NAME, export_onnx
from edgecall.export.package import PackageResult, write_package
from edgecall.export.shrink import masked_state, shrink
from edgecall.layers import LSTM_WIDTH_MULTIPLE
from edgecall.model.checkpoint import LoadedCheckpoint, load_checkpoint
from edgecall.model.crf import build_model

VERIFY_TOLERANCE = 1e-4  # max |ONNX - masked dense torch| accepted, in score units


@dataclass(frozen=True)
class CompileResult:
    package: PackageResult
    checkpoint: LoadedCheckpoint
    kept: tuple[int, ...]  # neurons per LSTM layer after shrinking
    original: tuple[int, ...]  # before
    widths: tuple[int, ...]  # per LSTM layer as written: the kept neurons and zeroed padding
    before: ModelCosts  # dense (as stored) model
    after: ModelCosts  # shrunk model
    max_abs_error: float  # ONNX Runtime vs the masked dense PyTorch model


def default_output_dir(checkpoint: Path) -> Path:
    """Next to the checkpoint: ``<dir>/<stem>.edgecall``."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent / f"{checkpoint.name if checkpoint.is_dir() else checkpoint.stem}.edgecall"


def compile_checkpoint(
    checkpoint: Path,
    out_dir: Path | None = None,
    *,
    targets: Sequence[str] = ("CPU",),
    name: str | None = None,
    base_config: ModelConfig | None = None,
    beam_width: int | None = None,
    lstm_multiple: int = LSTM_WIDTH_MULTIPLE,
) -> CompileResult:
    """``beam_width``: the package decoder's beam (None: the checkpoint config's); ``lstm_multiple``: each
    shrunk LSTM's width is padded with zeroed neurons to a multiple of it (same outputs; see shrink)."""
    ckpt = load_checkpoint(Path(checkpoint), base_config)
    shrunk = shrink(ckpt, lstm_multiple)
    stored_name = shrunk.config.name if shrunk.config.name != "model" else Path(checkpoint).stem
    config = shrunk.config.replace(name=name or stored_name)
    if beam_width is not None:
        config = config.replace(decoder=dataclasses.replace(config.decoder, beam_width=beam_width))
    dense = build_model(ckpt.config, masked_state(ckpt))
    small = build_model(config, shrunk.state)
    out_dir = Path(out_dir) if out_dir is not None else default_output_dir(Path(checkpoint))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = export_onnx(small, Path(tmp) / "model.onnx", stride=config.stride)
        error = _verify(dense, onnx_file, config)
        before, after = model_costs(ckpt.config), model_costs(config)
        provenance = {
            "edgecall_version": __version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "source": str(Path(checkpoint).resolve()),
            "source_kind": ckpt.kind,
            "source_sha256": ckpt.sha256,
            "neurons_original": list(shrunk.original),
            "neurons_kept": list(shrunk.kept),
            "lstm_widths": list(shrunk.widths),
            "lstm_width_multiple": lstm_multiple,
            "parameters_before": before.parameters,
            "parameters_after": after.parameters,
            "flops_per_sample_before": before.flops,
            "flops_per_sample_after": after.flops,
            "lstm_flops_per_sample_before": before.rnn_flops,
            "lstm_flops_per_sample_after": after.rnn_flops,
            "onnx_vs_torch_max_abs_error": error,
        }
        weights = {k: v.numpy() for k, v in small.state_dict().items()}
        package = write_package(out_dir, config, onnx_file, targets=targets, weights=weights, provenance=provenance)
    return CompileResult(package, ckpt, shrunk.kept, shrunk.original, shrunk.widths, before, after, error)


def _verify(dense: torch.nn.Module, onnx_file: Path, config: ModelConfig) -> float:
    """The exported graph must reproduce the masked dense model; else refuse to write."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    samples = 2 * config.stride * 200
    x = rng.standard_normal((2, 1, samples)).astype(np.float32)
    with torch.no_grad():
        expected = dense(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: x})[0]
    error = float(np.abs(got - expected).max())
    if not error <= VERIFY_TOLERANCE:
        raise EdgecallError(f"exported model differs from the checkpoint by {error:.2e} (> {VERIFY_TOLERANCE}); not written")
    return error
