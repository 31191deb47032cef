"""Shrinking is exact, export keeps LSTMs native at the shrunk sizes, compile writes a package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from factories import PAPER_KEPT, efficient_basecallers_state, write_efficient_basecallers  # noqa: E402

from edgecall.config import ModelConfig, rnn_encoder_config  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.compile import compile_checkpoint  # noqa: E402
from edgecall.export.onnx_export import export_onnx, onnx_recurrent_sizes  # noqa: E402
from edgecall.export.shrink import keep_mask, masked_state, shrink  # noqa: E402
from edgecall.model.checkpoint import load_checkpoint  # noqa: E402
from edgecall.model.crf import build_model  # noqa: E402
from edgecall.package import load_package  # noqa: E402


def test_keep_rule_is_log_alpha_above_minus_ln2() -> None:
    log_alpha = torch.tensor([-0.70, -0.69, 0.0, -5.0, 3.0])
    assert keep_mask(log_alpha).tolist() == [False, True, True, False, True]


def test_shrunk_model_equals_masked_dense_model(tmp_path: Path) -> None:
    ckpt = load_checkpoint(write_efficient_basecallers(tmp_path / "s.pt", (7, 3, 5, 9, 11), hidden=24, features=24))
    result = shrink(ckpt)
    assert result.kept == (7, 3, 5, 9, 11)
    assert result.state["encoder.5.rnn.weight_ih_l0"].shape == (4 * 3, 7)
    assert result.state["encoder.9.linear.weight"].shape == (1024, 11)
    x = torch.randn(3, 1, 1500, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dense = build_model(ckpt.config, masked_state(ckpt))(x)
        small = build_model(result.config, result.state)(x)
    assert dense.shape == (300, 3, 1024)
    torch.testing.assert_close(small, dense, rtol=0, atol=1e-5)
    # and masking really matters: the unmasked dense model differs
    with torch.no_grad():
        unmasked = build_model(ckpt.config, ckpt.state)(x)
    assert (unmasked - dense).abs().max() > 1e-2


def test_padding_to_a_width_multiple_adds_zeroed_neurons_and_changes_nothing(tmp_path: Path) -> None:
    ckpt = load_checkpoint(write_efficient_basecallers(tmp_path / "s.pt", (7, 3, 5, 9, 24), hidden=24, features=24))
    result = shrink(ckpt, 8)
    assert result.kept == (7, 3, 5, 9, 24) and result.widths == (8, 8, 8, 16, 24)  # never wider than the layer
    assert result.config.encoder.hidden_sizes == result.widths
    assert result.state["encoder.5.rnn.weight_ih_l0"].shape == (4 * 8, 8)
    x = torch.randn(3, 1, 1500, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dense = build_model(ckpt.config, masked_state(ckpt))(x)
        padded = build_model(result.config, result.state)(x)
    torch.testing.assert_close(padded, dense, rtol=0, atol=1e-5)
    # the padding neurons: every gate row zero, so their output is exactly 0 whatever their input
    rows = result.state["encoder.4.rnn.weight_ih_l0"].reshape(4, 8, -1)
    assert int((rows.abs().sum(dim=(0, 2)) == 0).sum()) == 1
    with pytest.raises(EdgecallError, match="multiple must be at least 1"):
        shrink(ckpt, 0)


def test_layer_without_neurons_is_refused(tmp_path: Path) -> None:
    ckpt = load_checkpoint(write_efficient_basecallers(tmp_path / "s.pt", (4, 0, 4, 4, 4), hidden=8, features=8))
    with pytest.raises(EdgecallError, match="layer\\(s\\) 1 keep no neurons"):
        shrink(ckpt)


def test_paper_sizes_compile_to_matching_onnx(tmp_path: Path) -> None:
    ckpt_path = write_efficient_basecallers(tmp_path / "lambda6e-7.pt", PAPER_KEPT)
    result = compile_checkpoint(ckpt_path, tmp_path / "pkg", targets=["CPU", "MYRIAD"], lstm_multiple=1)
    assert result.kept == result.widths == PAPER_KEPT
    assert onnx_recurrent_sizes(tmp_path / "pkg" / "model.onnx") == [("LSTM", k) for k in PAPER_KEPT]
    assert result.max_abs_error <= 1e-4
    assert result.before.rnn_flops / result.after.rnn_flops == pytest.approx(7.24, abs=0.01)
    # independent check: ONNX Runtime on the package vs the masked dense torch model on fresh input
    import onnxruntime as ort

    ckpt = load_checkpoint(ckpt_path)
    x = np.random.default_rng(5).standard_normal((2, 1, 4000)).astype(np.float32)
    with torch.no_grad():
        expected = build_model(ckpt.config, masked_state(ckpt))(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(tmp_path / "pkg" / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"signal": x})[0]
    assert np.abs(got - expected).max() <= 1e-4
    package = load_package(tmp_path / "pkg")
    assert package.config.encoder.hidden_sizes == PAPER_KEPT
    assert package.provenance["neurons_kept"] == list(PAPER_KEPT)
    assert package.provenance["source_sha256"] == ckpt.sha256


def test_export_has_dynamic_batch_and_time(tmp_path: Path) -> None:
    import onnxruntime as ort

    config = ModelConfig().replace(encoder=rnn_encoder_config(hidden_sizes=(8, 6, 8, 6, 8), conv_channels=(4, 16, 16)))
    model = build_model(config)
    path = export_onnx(model, tmp_path / "m.onnx", stride=config.stride)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, samples in ((1, 500), (5, 2000)):
        x = np.random.default_rng(batch).standard_normal((batch, 1, samples)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run(None, {"signal": x})[0]
        assert got.shape == (samples // 5, batch, 1024)
        assert np.abs(got - expected).max() < 1e-4


def test_openvino_ir_matches(tmp_path: Path) -> None:
    import openvino as ov

    compile_checkpoint(write_efficient_basecallers(tmp_path / "s.pt", (9, 5, 7, 9, 11), hidden=16, features=16), tmp_path / "pkg", targets=["CPU", "GPU"])
    ckpt = load_checkpoint(tmp_path / "s.pt")
    x = np.random.default_rng(2).standard_normal((2, 1, 2000)).astype(np.float32)
    with torch.no_grad():
        expected = build_model(ckpt.config, masked_state(ckpt))(torch.from_numpy(x)).numpy()
    core = ov.Core()
    fp32 = core.compile_model(str(tmp_path / "pkg/openvino/CPU/model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    assert np.abs(fp32(x)[0] - expected).max() < 1e-4
    fp16 = core.read_model(str(tmp_path / "pkg/openvino/GPU/model.xml"))
    weights = [op for op in fp16.get_ops() if op.get_type_name() == "Constant" and op.get_output_element_type(0) == ov.Type.f16]
    assert weights, "GPU IR should carry FP16 weights"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda st: st.pop("decoder.linear.weight"), "missing tensor 'decoder.linear.weight'"),
        (lambda st: st.__setitem__("encoder.2.lstm.U", torch.zeros(5, 5)), "'encoder.2.lstm.U' has shape"),
        (lambda st: st.__setitem__("encoder.0.extra", torch.zeros(1)), "unknown keys"),
    ],
)
def test_bad_checkpoints_get_one_clear_error(tmp_path: Path, mutate, message: str) -> None:
    st = efficient_basecallers_state((3, 3, 3, 3, 3), hidden=8, features=8)
    mutate(st)
    torch.save({"model_state": st}, tmp_path / "bad.pt")
    with pytest.raises(EdgecallError, match=message) as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert str(tmp_path / "bad.pt") in str(info.value)


class _RunsCode:
    """Unpickling this calls a function: what a malicious checkpoint does."""

    def __reduce__(self):
        return (print, ("this checkpoint ran code",))


def test_checkpoint_with_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save({"model_state": {}, "payload": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(EdgecallError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "ran code" not in capsys.readouterr().out


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(EdgecallError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "notes.pt")
