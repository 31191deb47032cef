"""OpenVINO backend: static-shape compiled model on CPU, GPU, NPU, MYRIAD or AUTO."""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from edgecall.devices.precision import cpu_flags
from edgecall.errors import EdgecallError
from edgecall.package import ModelPackage
from edgecall.runtime.backends import ScoreBuffers


T = TypeVar("T")
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO")  # OpenVINO devices that run on others, the CPU among them


class OpenVinoBackend:
    def __init__(
        self, package: ModelPackage, target: str, *, batch_size: int, chunksize: int, threads: int | None,
        ir_name: str | None = None, inference_precision: str = "f32",
    ) -> None:
        """``inference_precision``: f32, or bf16/f16 where the CPU computes them natively (open_backend checks)."""
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        self.batch_size, self.chunksize = batch_size, chunksize
        self.name = f"openvino:{ir_name or target}" + (f" {inference_precision}" if inference_precision != "f32" else "")
        self.precision = inference_precision
        core = ov.Core()
        ir = package.openvino_ir(ir_name) if ir_name else package.openvino_ir(target) or package.openvino_ir("CPU")
        source = ir if ir is not None else package.onnx_path
        try:
            model = core.read_model(str(source))
            model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([batch_size, 1, chunksize])})
            model = _chunk_major_output(ov, model)
            on_cpu = target == "CPU" or target.split(":")[0] in VIRTUAL_DEVICES  # AUTO calls as the CPU does
            if on_cpu and inference_precision == "f32" and ir_name is None and "avx512f" not in cpu_flags():
                _tanh_via_sigmoid(model)
        except RuntimeError as exc:
            raise EdgecallError(f"{source}: OpenVINO could not read the model ({_first_line(exc)})") from None
        config: dict = {hints.performance_mode: hints.PerformanceMode.THROUGHPUT if batch_size >= 8 else hints.PerformanceMode.LATENCY}
        # f32 unless bf16/f16 is asked for (open_backend offers it only where native and checked): OpenVINO
        # may pick bf16 where it is emulated, which ran 12-32x slower here, and bf16 calls differ from f32 ones;
        # AUTO (or MULTI/HETERO) passes these on to the CPU it may pick
        cpu: dict = {hints.inference_precision: getattr(ov.Type, inference_precision)}
        if threads:
            cpu[props.inference_num_threads] = int(threads)
        if target == "CPU":
            config.update(cpu)
        elif target.split(":")[0] in VIRTUAL_DEVICES:
            config[props.device.properties] = {"CPU": cpu}
        try:
            self._compiled = core.compile_model(model, target, config)
        except RuntimeError as exc:
            raise EdgecallError(f"OpenVINO could not compile the model for {target} ({_first_line(exc)})") from None
        self._request = self._compiled.create_infer_request()
        try:
            self.parallel_requests = max(1, int(self._compiled.get_property(props.optimal_number_of_infer_requests)))
        except RuntimeError:
            self.parallel_requests = 1
        shape = self._compiled.output(0).get_partial_shape()
        self.output_width = shape[2].get_length() if shape.rank.get_length() == 3 and shape[2].is_static else None
        self._frames = shape[1].get_length() if shape.rank.get_length() == 3 and shape[1].is_static else None
        self._tensor = ov.Tensor

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._scores(self._request, self._start(self._request, batch, None, wait=True))

    def stream(self, items: Iterable[T], data_of: Callable[[T], np.ndarray | None],
               recycled: ScoreBuffers | None = None) -> Iterator[tuple[T, np.ndarray | None]]:
        """Infer many batches with several requests in flight (OpenVINO's throughput streams),
        yielding (item, scores) in input order; an item without data drains them (see Backend.stream)."""
        requests = [self._compiled.create_infer_request() for _ in range(self.parallel_requests)]
        free = deque(requests)
        inflight: deque = deque()
        try:
            for item in items:
                data = data_of(item)
                if data is None:
                    while inflight:
                        yield self._finish(inflight, free)
                    yield item, None
                    continue
                if not free:
                    yield self._finish(inflight, free)
                request = free.popleft()
                inflight.append((request, item, self._start(request, data, recycled, wait=False)))
            while inflight:
                yield self._finish(inflight, free)
        finally:  # closed early: the requests must end before the model they run on is released
            for request, *_ in inflight:
                request.wait()

    def _start(self, request, batch: np.ndarray, recycled: ScoreBuffers | None, *, wait: bool) -> np.ndarray | None:  # noqa: ANN001 - InferRequest
        """Start ``batch`` on ``request`` with its scores written straight into an array of ours
        (chunk-major, from ``recycled`` when given), which is returned; None where the device
        keeps its own output (its shape unknown until run)."""
        out = None
        if self._frames is not None and self.output_width is not None:
            shape = (self.batch_size, self._frames, self.output_width)
            out = recycled.take(*shape) if recycled is not None else np.empty(shape, np.float32)
            request.set_output_tensor(0, self._tensor(out, shared_memory=True))
        data = {0: np.ascontiguousarray(batch, dtype=np.float32)}
        if wait:
            request.infer(data)
        else:
            request.start_async(data)
        return out

    @staticmethod
    def _scores(request, out: np.ndarray | None) -> np.ndarray:  # noqa: ANN001 - InferRequest
        """(T, N, C) view of a batch's chunk-major scores."""
        if out is None:
            out = request.get_output_tensor(0).data.copy()
        return out.transpose(1, 0, 2)

    @classmethod
    def _finish(cls, inflight: deque, free: deque) -> tuple:
        request, item, out = inflight.popleft()
        request.wait()
        scores = cls._scores(request, out)
        free.append(request)
        return item, scores

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _chunk_major_output(ov, model):  # noqa: ANN001, ANN202 - openvino module, Model
    """The model with its (T, N, C) scores transposed to (N, T, C) inside the graph.

    The decoder reads one chunk's frames in turn; in the network's own layout they
    sit N*C floats apart. OpenVINO's transpose into the caller's buffer costs about
    a tenth of copying the output into that layout afterwards in numpy (bench/RESULTS.md, issue 19).
    """
    from openvino.preprocess import PrePostProcessor

    if model.outputs[0].get_partial_shape().rank.get_length() != 3:
        return model
    ppp = PrePostProcessor(model)
    ppp.output(0).model().set_layout(ov.Layout("TNC"))
    ppp.output(0).tensor().set_layout(ov.Layout("NTC"))
    return ppp.build()


def _tanh_via_sigmoid(model) -> int:  # noqa: ANN001 - openvino Model
    """Every Tanh node recomputed as 2 * sigmoid(2x) - 1, in place; returns how many.

    A CRF head is ``scale * tanh(linear(x))``. OpenVINO's CPU plugin fuses the tanh
    into the matrix product as a post-op, and on AVX2 that post-op cost more than
    the product itself: the default model's 80 x 1,024 head took 71 of its 224 ms per
    16-chunk batch, against 37 ms with a sigmoid post-op (bench/tanh_rewrite.py --profile).
    The two forms agree to float32 rounding (1.2e-6 on scores of magnitude 5). Done only
    for f32 inference on the CPU (or AUTO, which may pick it), only where it was measured
    (CPUs without AVX-512), never to the int8 IR or a reduced precision, whose agreement
    checks ran on the graph as compiled.
    """
    import openvino.opset13 as ops

    tanhs = [node for node in model.get_ordered_ops() if node.get_type_name() == "Tanh"]
    for node in tanhs:
        two = ops.constant(np.float32(2.0))
        rewritten = ops.subtract(ops.multiply(ops.sigmoid(ops.multiply(node.input_value(0), two)), two),
                                 ops.constant(np.float32(1.0)))
        for consumer in list(node.output(0).get_target_inputs()):
            consumer.replace_source_output(rewritten.output(0))
    if tanhs:
        model.validate_nodes_and_infer_types()
    return len(tanhs)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
