"""OpenVINO backend: static-shape compiled model on CPU, GPU, NPU, MYRIAD or AUTO."""

from __future__ import annotations

import numpy as np

from edgecall.errors import EdgecallError
from edgecall.package import ModelPackage


class OpenVinoBackend:
    def __init__(self, package: ModelPackage, target: str, *, batch_size: int, chunksize: int, threads: int | None) -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.batch_size, self.chunksize = batch_size, chunksize
        self.name = f"openvino:{target}"
        core = ov.Core()
        ir = package.openvino_ir(target) or package.openvino_ir("CPU")
        source = ir if ir is not None else package.onnx_path
        try:
            model = core.read_model(str(source))
            model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([batch_size, 1, chunksize])})
        except RuntimeError as exc:
            raise EdgecallError(f"{source}: OpenVINO could not read the model ({_first_line(exc)})") from None
        config: dict = {hints.performance_mode: hints.PerformanceMode.THROUGHPUT if batch_size >= 8 else hints.PerformanceMode.LATENCY}
        if target == "CPU":
            # f32 explicitly: OpenVINO may pick bf16 where it is emulated, which ran 12-32x slower here
            config[hints.inference_precision] = ov.Type.f32
            if threads:
                config[props.inference_num_threads] = int(threads)
        try:
            self._compiled = core.compile_model(model, target, config)
        except RuntimeError as exc:
            raise EdgecallError(f"OpenVINO could not compile the model for {target} ({_first_line(exc)})") from None
        self._request = self._compiled.create_infer_request()
        shape = self._compiled.output(0).get_partial_shape()
        self.output_width = shape[2].get_length() if shape.rank.get_length() == 3 and shape[2].is_static else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return self._request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
