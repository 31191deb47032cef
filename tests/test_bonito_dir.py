"""Bonito model directories (config.toml + weights_N.tar) compile like any checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgecall.config import ModelConfig  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.compile import compile_checkpoint  # noqa: E402
from edgecall.model.crf import BonitoCRF  # noqa: E402

CONFIG = """
[model]
package = "bonito.crf"
[labels]
labels = ["N", "A", "C", "G", "T"]
[input]
features = 1
[global_norm]
state_len = 4
[qscore]
scale = 0.9356
bias = -0.1721
[encoder]
scale = 5.0
rnn_type = "lstm"
winlen = 19
features = 24
activation = "swish"
stride = 5
blank_score = 2.0
[basecaller]
batchsize = 512
chunksize = 10000
overlap = 500
"""


def bonito_state(model: BonitoCRF) -> dict[str, torch.Tensor]:
    """Bonito's own training checkpoints name tensors as its Serial encoder does (edgecall's names too)."""
    return {f"module.{k}": v for k, v in model.state_dict().items()}  # as saved from a DataParallel model


def test_bonito_directory_compiles_and_matches(tmp_path: Path) -> None:
    model_dir = tmp_path / "dna_r9.4.1_e8_tiny@v3.3"
    model_dir.mkdir()
    (model_dir / "config.toml").write_text(CONFIG)
    config = ModelConfig.load(model_dir / "config.toml")
    assert config.decoder.qscale == pytest.approx(0.9356) and config.basecaller.chunksize == 10000
    torch.manual_seed(0)
    model = BonitoCRF(config).eval()
    torch.save(bonito_state(model), model_dir / "weights_1.tar")
    torch.save({k: v * 0 for k, v in bonito_state(model).items()}, model_dir / "weights_0.tar")  # older epoch
    result = compile_checkpoint(model_dir, tmp_path / "pkg")
    assert result.checkpoint.kind == "bonito" and result.kept == (24,) * 5
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 1, 1000)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(tmp_path / "pkg/model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"signal": x})[0]
    assert np.abs(got - expected).max() < 1e-4  # the newest weights (weights_1) were used


def test_weights_that_do_not_fit_the_config_are_named(tmp_path: Path) -> None:
    model_dir = tmp_path / "v3"
    model_dir.mkdir()
    (model_dir / "config.toml").write_text(CONFIG.replace("state_len = 4", "state_len = 2"))
    config = ModelConfig.load(model_dir / "config.toml")
    state = bonito_state(BonitoCRF(config))
    state["module.encoder.9.linear.weight"] = torch.zeros(5 * 16, 24)  # learned stays; the config says a fixed blank
    state["module.encoder.9.linear.bias"] = torch.zeros(5 * 16)
    torch.save(state, model_dir / "weights_3.tar")
    with pytest.raises(EdgecallError, match=r"'encoder.9.linear.weight' has shape \(80, 24\), config.toml says \(64, 24\)"):
        compile_checkpoint(model_dir, tmp_path / "pkg")
