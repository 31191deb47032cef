"""The OpenVINO backend's graph changes compute what the package's ONNX model computes."""

from __future__ import annotations

import numpy as np
import pytest

from edgecall.package import load_package
from edgecall.runtime.backends.openvino import OpenVinoBackend, _tanh_via_sigmoid

ov = pytest.importorskip("openvino")


def test_tanh_via_sigmoid_agrees_to_float32_rounding() -> None:
    import openvino.opset13 as ops

    weights = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)

    def crf_head():  # noqa: ANN202 - a fresh openvino Model of 5 * tanh(x W) each time
        x = ops.parameter([4, 8], np.float32)
        linear = ops.matmul(x, ops.constant(weights), False, False)
        return ov.Model([ops.multiply(ops.tanh(linear), ops.constant(np.float32(5.0)))], [x])

    original, rewritten = crf_head(), crf_head()
    assert _tanh_via_sigmoid(rewritten) == 1
    assert "Tanh" not in {node.get_type_name() for node in rewritten.get_ordered_ops()}
    core = ov.Core()
    inputs = np.concatenate([np.zeros((1, 8)), np.linspace(-30, 30, 24).reshape(3, 8)]).astype(np.float32)
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    expected = core.compile_model(original, "CPU", f32)({0: inputs})[0]
    got = core.compile_model(rewritten, "CPU", f32)({0: inputs})[0]
    assert np.abs(got - expected).max() < 5e-6  # saturated rows stay at +-5, zero at 0
    assert np.abs(got[0]).max() < 1e-6  # 2 * sigmoid(0) - 1 == 0


def test_default_model_scores_match_onnxruntime() -> None:
    """The package as the OpenVINO backend runs it (its tanh rewritten on CPUs without AVX-512) against the same
    package's ONNX model in ONNX Runtime: the scores the decoder sees must not move."""
    ort = pytest.importorskip("onnxruntime")
    package = load_package("edgecall-r941-v2")
    model = ov.Core().read_model(str(package.openvino_ir("CPU")))
    assert _tanh_via_sigmoid(model) == 1  # the CRF head's: scale * tanh(linear(x))
    chunksize = package.config.basecaller.chunksize
    batch = np.random.default_rng(1).standard_normal((2, 1, chunksize)).astype(np.float32)
    backend = OpenVinoBackend(package, "CPU", batch_size=2, chunksize=chunksize, threads=1)
    got = backend(batch)
    session = ort.InferenceSession(str(package.onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: batch})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4  # 4e-6 here, on scores of magnitude up to 5
    assert np.abs(got - expected).mean() < 1e-6
