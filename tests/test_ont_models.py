"""ONT's R10.4.1 models (Bonito and Dorado folders) compile to exactly Bonito's network.

Random weights in each of Dorado's test configs, built and written by Bonito's
own code (``bonito.nn.from_dict``, ``bonito.cli.export.export_to_dorado``): the
compiled ONNX must equal Bonito's PyTorch forward. Batchnorm statistics are
randomised so that folding them is tested, not assumed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
ort = pytest.importorskip("onnxruntime")

from bonito_reference import bonito_export, bonito_nn  # noqa: E402

from edgecall.config import ModelConfig, TransformerModelError, read_toml  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.compile import compile_checkpoint  # noqa: E402
from edgecall.model.checkpoint import load_checkpoint  # noqa: E402

R10_CONFIGS = (
    "dna_r10.4.1_e8.2_260bps_fast@v4.0.0",
    "dna_r10.4.1_e8.2_400bps_hac@v4.2.0",
    "dna_r10.4.1_e8.2_400bps_hac@v4.3.0",
)


def bonito_encoder(config_file: Path, seed: int) -> torch.nn.Module:
    """Bonito's Serial encoder for the config, random weights and batchnorm statistics, eval mode."""
    nn = bonito_nn()
    torch.manual_seed(seed)
    encoder = nn.from_dict(read_toml(config_file)["encoder"])
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return encoder.eval()


def bonito_scores(encoder: torch.nn.Module, x: np.ndarray, config_doc: dict) -> np.ndarray:
    """Bonito's forward, with the inserted fixed-blank columns (expand_blanks) dropped: Dorado's layout."""
    with torch.no_grad():
        out = encoder(torch.from_numpy(x)).numpy()
    head = [s for s in config_doc["encoder"]["sublayers"] if s["type"] == "linearcrfencoder"][0]
    if head.get("blank_score") is not None and head.get("expand_blanks", True):
        keep = np.arange(out.shape[-1]) % 5 != 0
        out = out[..., keep]
    return out


class _Model(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder


def write_bonito_folder(folder: Path, config_file: Path, encoder: torch.nn.Module) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(config_file, folder / "config.toml")
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, folder / "weights_2.tar")
    return folder


def write_dorado_folder(folder: Path, config_file: Path, encoder: torch.nn.Module) -> Path:
    """What ``bonito export`` writes for Dorado: batchnorm fused, one .tensor per parameter."""
    export = bonito_export()
    import copy

    model = _Model(copy.deepcopy(encoder)).apply(bonito_nn().fuse_bn_)
    export.export_to_dorado(model, read_toml(config_file), folder)
    return folder


def onnx_scores(package: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"signal": x})[0]


@pytest.mark.parametrize("name", R10_CONFIGS)
def test_ont_folders_compile_to_bonitos_network(shared_data: Path, tmp_path: Path, name: str, torch_one_thread) -> None:
    config_file = shared_data / "configs" / "dorado_tests" / name / "config.toml"
    doc = read_toml(config_file)
    encoder = bonito_encoder(config_file, seed=len(name))
    x = np.random.default_rng(0).standard_normal((2, 1, 1200)).astype(np.float32)
    expected = bonito_scores(encoder, x, doc)
    folders = {
        "bonito": write_bonito_folder(tmp_path / "bonito" / name, config_file, encoder),
        "dorado": write_dorado_folder(tmp_path / "dorado" / name, config_file, encoder),
    }
    assert sorted(p.name for p in folders["dorado"].glob("*.tensor"))  # Bonito's exporter wrote tensor files
    for kind, folder in folders.items():
        result = compile_checkpoint(folder, tmp_path / f"{kind}.edgecall", targets=["CPU"])
        assert result.checkpoint.kind == kind
        config = ModelConfig.load(tmp_path / f"{kind}.edgecall" / "config.toml")
        assert config.name == name and config.chemistry.startswith("dna_r10.4.1_e8.2_")
        assert config.tier == name.split("_")[-1].split("@")[0]
        got = onnx_scores(tmp_path / f"{kind}.edgecall", x)
        assert got.shape == expected.shape == (1200 // config.stride, 2, 4 ** (config.state_len + 1))
        assert np.abs(got - expected).max() < 1e-4, kind


def test_compile_cli_takes_a_dorado_folder(shared_data: Path, tmp_path: Path) -> None:
    name = R10_CONFIGS[0]
    config_file = shared_data / "configs" / "dorado_tests" / name / "config.toml"
    folder = write_dorado_folder(tmp_path / name, config_file, bonito_encoder(config_file, seed=1))
    out = tmp_path / "pkg"
    run = subprocess.run([sys.executable, "-m", "edgecall", "compile", str(folder), "--target", "CPU", "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert (out / "model.onnx").is_file() and (out / "openvino" / "CPU" / "model.xml").is_file()


def test_sparse_serial_model_shrinks_exactly(shared_data: Path, tmp_path: Path, torch_one_thread) -> None:
    """Masks on hac@v4.2.0 (clamps, the 384->128 bottleneck): the shrunk package equals the masked model."""
    from edgecall.train.loop import EDGECALL_FORMAT
    from edgecall.train.masked_model import from_loaded, to_checkpoint_state

    name = R10_CONFIGS[1]
    config_file = shared_data / "configs" / "dorado_tests" / name / "config.toml"
    dense = load_checkpoint(write_bonito_folder(tmp_path / name, config_file, bonito_encoder(config_file, seed=3)))
    model = from_loaded(dense).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.log_alpha.copy_(torch.randn(layer.log_alpha.shape, generator=generator) * 3)
    sparse = tmp_path / "sparse.pt"
    torch.save({"format": EDGECALL_FORMAT, "config": dense.config.to_toml(), "model_state": to_checkpoint_state(model)}, sparse)
    result = compile_checkpoint(sparse, tmp_path / "sparse.edgecall", targets=["CPU"])
    assert all(0 < k < 384 for k in result.kept)
    linear = ModelConfig.load(tmp_path / "sparse.edgecall" / "config.toml").encoder.sublayers[-3]
    assert (linear.insize, linear.size) == (result.widths[-1], 128)  # the bottleneck takes the last LSTM's neurons
    x = np.random.default_rng(1).standard_normal((2, 1, 1200)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(onnx_scores(tmp_path / "sparse.edgecall", x) - expected).max() < 1e-4


def test_a_tensor_file_that_would_run_code_is_refused(shared_data: Path, tmp_path: Path) -> None:
    name = R10_CONFIGS[0]
    config_file = shared_data / "configs" / "dorado_tests" / name / "config.toml"
    folder = write_dorado_folder(tmp_path / name, config_file, bonito_encoder(config_file, seed=2))
    victim = sorted(folder.glob("*.tensor"))[0]
    with zipfile.ZipFile(victim) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    pkl = next(n for n in entries if n.endswith("/data.pkl"))
    marker = tmp_path / "pwned"
    entries[pkl] = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."  # pickle: os.system("touch ...")
    with zipfile.ZipFile(victim, "w") as archive:
        for n, data in entries.items():
            archive.writestr(n, data)
    with pytest.raises(EdgecallError, match=r"refused: the tensor file refers to 'os.system'"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_a_folder_whose_tensors_do_not_fit_its_config_names_the_tensor(shared_data: Path, tmp_path: Path) -> None:
    name = R10_CONFIGS[0]
    config_file = shared_data / "configs" / "dorado_tests" / name / "config.toml"
    folder = write_bonito_folder(tmp_path / name, config_file, bonito_encoder(config_file, seed=2))
    state = torch.load(folder / "weights_2.tar", weights_only=True)
    state["encoder.4.rnn.weight_hh_l0"] = torch.zeros(4 * 64, 64)
    torch.save(state, folder / "weights_2.tar")
    with pytest.raises(EdgecallError) as info:
        load_checkpoint(folder)
    assert str(info.value) == (f"{folder / 'weights_2.tar'}: 'encoder.4.rnn.weight_hh_l0' has shape (256, 64), "
                               "config.toml says (384, 96)")


def test_transformer_models_are_refused_naming_the_alternative(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dna_r10.4.1_e8.2_400bps_sup@v5.0.0"
    folder.mkdir()
    shutil.copy(shared_data / "configs" / "dorado_tests" / folder.name / "config.toml", folder / "config.toml")
    (folder / "0.conv.weight.tensor").write_bytes(b"")
    with pytest.raises(TransformerModelError, match="not supported on the edge.*hac"):
        load_checkpoint(folder)
    run = subprocess.run([sys.executable, "-m", "edgecall", "compile", str(folder), "-o", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
