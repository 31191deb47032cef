"""Export a torch basecaller to ONNX with native ``LSTM``/``GRU`` nodes.

The TorchScript exporter (``dynamo=False``) keeps recurrent layers as single
ONNX nodes with dynamic batch and time axes in ~2 s; the dynamo exporter
unrolls them and, with a dynamic time axis, did not finish in 13 minutes.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

INPUT_NAME = "signal"  # (N, 1, T) float32 normalised signal
OUTPUT_NAME = "scores"  # (T/stride, N, C) float32
OPSET = 17


def export_onnx(model: torch.nn.Module, path: Path, *, stride: int, example_samples: int = 1000) -> Path:
    """Write ``model`` to ``path``; the example length must be stride-aligned."""
    model = model.eval()
    example = torch.zeros(2, 1, example_samples - example_samples % stride, dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter warns about LSTM batch sizes it handles fine
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "samples"}, OUTPUT_NAME: {0: "frames", 1: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def onnx_recurrent_sizes(path: Path) -> list[tuple[str, int]]:
    """(op type, hidden size) of every recurrent node, in graph order."""
    import onnx

    model = onnx.load(str(path))
    sizes = []
    for node in model.graph.node:
        if node.op_type in ("LSTM", "GRU", "RNN"):
            hidden = next(a.i for a in node.attribute if a.name == "hidden_size")
            sizes.append((node.op_type, int(hidden)))
    return sizes
