"""One small inference interface over OpenVINO, ONNX Runtime and PyTorch.

``scores = backend(batch)``: batch (N, 1, T) float32 normalised signal with
N == backend.batch_size and T == backend.chunksize; scores (T/stride, N, C)
float32. All session setup (threads, static shapes, precision) happens once in
:func:`open_backend`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgecall.devices import resolve_device
from edgecall.package import ModelPackage


class Backend(Protocol):
    name: str  # e.g. "openvino:CPU", "onnxruntime:CPUExecutionProvider", "torch:cpu"
    batch_size: int  # chunks per call (static)
    chunksize: int  # samples per chunk (static)

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def open_backend(
    package: ModelPackage, device: str, *, batch_size: int, chunksize: int, threads: int | None = None
) -> Backend:
    """Open ``package`` on ``device`` (see :mod:`edgecall.devices.discovery`)."""
    found = resolve_device(device)
    if found.backend == "openvino":
        from edgecall.runtime.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(package, found.target, batch_size=batch_size, chunksize=chunksize, threads=threads)
    if found.backend == "onnxruntime":
        from edgecall.runtime.backends.onnxruntime import OrtBackend

        return OrtBackend(package, found.target, batch_size=batch_size, chunksize=chunksize, threads=threads)
    from edgecall.runtime.backends.torch import TorchBackend

    return TorchBackend(package, batch_size=batch_size, chunksize=chunksize, threads=threads)
