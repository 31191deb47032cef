"""PyTorch eager backend: the reference the fast backends are checked against."""

from __future__ import annotations

import numpy as np

from edgecall.errors import raise_missing_extra
from edgecall.package import ModelPackage


class TorchBackend:
    def __init__(self, package: ModelPackage, *, batch_size: int, chunksize: int, threads: int | None) -> None:
        try:
            import torch

            from edgecall.model.build import model_from_arrays
        except ModuleNotFoundError as exc:
            raise_missing_extra(exc, "--device torch")
        self.batch_size, self.chunksize = batch_size, chunksize
        self.name = "torch:cpu"
        self.precision = "f32"
        if threads:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._model = model_from_arrays(package.config, package.weights())
        self.output_width = None  # the module is built from the config, so it cannot disagree

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._model(self._torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))).numpy()

    def stream(self, items, data_of, recycled=None):  # noqa: ANN001, ANN201 - see Backend.stream
        from edgecall.runtime.backends import sequential_stream

        return sequential_stream(self, items, data_of)

    def close(self) -> None:
        self._model = None
