"""ONNX Runtime backend: CPU everywhere, CUDA/TensorRT where installed (Jetson)."""

from __future__ import annotations

import numpy as np

from edgecall.errors import EdgecallError
from edgecall.package import ModelPackage


class OrtBackend:
    def __init__(self, package: ModelPackage, provider: str, *, batch_size: int, chunksize: int, threads: int | None) -> None:
        import onnxruntime as ort

        self.batch_size, self.chunksize = batch_size, chunksize
        self.name = f"onnxruntime:{provider}"
        self.precision = "f32"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(package.onnx_path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise EdgecallError(f"{package.onnx_path}: ONNX Runtime could not load the model ({str(exc).strip()[:200]})") from None
        self._input = self._session.get_inputs()[0].name
        shape = self._session.get_outputs()[0].shape
        self.output_width = shape[2] if len(shape) == 3 and isinstance(shape[2], int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def stream(self, items, data_of, recycled=None):  # noqa: ANN001, ANN201 - see Backend.stream
        from edgecall.runtime.backends import sequential_stream

        return sequential_stream(self, items, data_of)

    def close(self) -> None:
        self._session = None
