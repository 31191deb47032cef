"""Read trained checkpoints and model folders into edgecall's state-dict layout.

Understood:

* efficient-basecallers (the seed paper's code): a ``torch.save`` dict with
  ``model_state`` holding ``convolution.{0,2,4}.*``, ``encoder.i.lstm.{W,U,b,
  log_alpha_s}`` and ``decoder.linear.*`` (``encoder.i.inference_lstm.*`` is a
  stale cache and ignored);
* a Bonito model folder: ``config.toml`` + ``weights_N.tar`` (highest N);
* a Dorado model folder: ``config.toml`` + one ``<i>.<param>.tensor`` per tensor
  (numbered without the clamp layers when the config has clamps before the head);
* edgecall's own training checkpoints: ``{"format": "edgecall-train", "config":
  ..., "model_state": ...}`` with ``encoder.i.log_alpha`` gates.

The layout is the config's layer list with Bonito's module names
(``encoder.{i}.conv|rnn|linear``); batchnorm is folded into its convolution.
Weights are checked against the config (names and shapes), one line on a
mismatch. Nothing is unpickled beyond tensors (``torch.load(weights_only=True)``,
:mod:`edgecall.model.dorado_tensors`): a file from the internet cannot run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgecall.catalog import with_folder_identity
from edgecall.config import ModelConfig, read_toml, rnn_encoder_config
from edgecall.errors import EdgecallError
from edgecall.layers import Clamp, Convolution, CRFHead, Linear, Recurrent, recurrent_indices
from edgecall.model.crf import gate_key, recurrent_key, upgrade_format1_state
from edgecall.model.dorado_tensors import read_tensor_folder

EDGECALL_FORMAT = "edgecall-train"
BATCHNORM_EPS = 1e-5  # torch.nn.BatchNorm1d's default, which Bonito's BatchNorm keeps


@dataclass(frozen=True)
class LoadedCheckpoint:
    source: Path  # the file or directory read
    kind: str  # efficient-basecallers | bonito | dorado | edgecall
    sha256: str  # of the weights file(s), for provenance
    config: ModelConfig  # sizes as stored (dense for sparse checkpoints), batchnorm folded
    state: dict[str, torch.Tensor]  # encoder.{i}.* keys, float32
    log_alpha: tuple[torch.Tensor, ...] | None  # per recurrent layer (H_i,), None when not sparse


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_checkpoint(path: Path, base_config: ModelConfig | None = None) -> LoadedCheckpoint:
    """Detect the layout of ``path`` and load it; every failure is one clear line."""
    path = Path(path)
    if not path.exists():
        raise EdgecallError(f"{path}: no such file or directory")
    if path.is_dir():
        return load_model_folder(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == EDGECALL_FORMAT:
        return _from_edgecall(path, obj)
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        return _from_efficient_basecallers(path, obj["model_state"], base_config or ModelConfig())
    keys = ", ".join(list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
    raise EdgecallError(
        f"{path}: not a checkpoint edgecall knows (expected 'model_state' from efficient-basecallers, "
        f"an edgecall training checkpoint, or a Bonito or Dorado model folder; found {keys})"
    )


def _torch_load(path: Path) -> Any:
    if path.stat().st_size == 0:
        raise EdgecallError(f"{path}: empty file, not a checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise EdgecallError(
                f"{path}: refused: the checkpoint holds '{found.group(1)}', not only tensors, "
                "and could run code when loaded; edgecall loads plain weights only"
            ) from None
        raise EdgecallError(f"{path}: not a PyTorch checkpoint (unreadable pickle data)") from None
    except Exception as exc:  # torch.load raises many types on arbitrary bytes; all mean "not a checkpoint"
        detail = " ".join(str(exc).split())[:160]
        raise EdgecallError(f"{path}: not a PyTorch checkpoint or truncated ({detail})") from None


# ---- the tensors a config needs -------------------------------------------------


def expected_tensors(config: ModelConfig, norm_fused: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor name and shape the config's layer list needs (batchnorm unless already fused)."""
    out: dict[str, tuple[int, ...]] = {}
    for i, layer in enumerate(config.encoder.sublayers):
        if isinstance(layer, Convolution):
            out[f"encoder.{i}.conv.weight"] = (layer.size, layer.insize, layer.winlen)
            if layer.bias:
                out[f"encoder.{i}.conv.bias"] = (layer.size,)
            if layer.norm == "batchnorm" and not norm_fused:
                for name in ("weight", "bias", "running_mean", "running_var"):
                    out[f"encoder.{i}.norm.bn.{name}"] = (layer.size,)
        elif isinstance(layer, Recurrent):
            gates = 4 if layer.kind == "lstm" else 3
            out[recurrent_key(i, "weight_ih")] = (gates * layer.size, layer.insize)
            out[recurrent_key(i, "weight_hh")] = (gates * layer.size, layer.size)
            out[recurrent_key(i, "bias_ih")] = (gates * layer.size,)
            out[recurrent_key(i, "bias_hh")] = (gates * layer.size,)
        elif isinstance(layer, (Linear, CRFHead)):
            size = layer.outputs if isinstance(layer, CRFHead) else layer.size
            out[f"encoder.{i}.linear.weight"] = (size, layer.insize)
            if layer.bias:
                out[f"encoder.{i}.linear.bias"] = (size,)
    return out


def gather_state(config: ModelConfig, tensors: dict[str, torch.Tensor], source: Path,
                 norm_fused: bool = False) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Check ``tensors`` against the config, fold batchnorm; the folded config and state.

    ``norm_fused``: the batchnorm is already in the convolution (Dorado folders:
    Bonito's exporter fuses it and keeps ``norm`` in the config).
    """
    expected = expected_tensors(config, norm_fused)
    ignored = re.compile(r".*\.num_batches_tracked$")
    unknown = sorted(k for k in tensors if k not in expected and not ignored.match(k))
    if unknown:
        raise EdgecallError(f"{source}: tensors the config has no layer for: {', '.join(unknown[:4])}")
    state: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        if key not in tensors:
            raise EdgecallError(f"{source}: missing tensor '{key}' (the weights do not match config.toml)")
        value = tensors[key]
        if not isinstance(value, torch.Tensor):
            raise EdgecallError(f"{source}: '{key}' is not a tensor")
        if tuple(value.shape) != shape:
            raise EdgecallError(f"{source}: '{key}' has shape {tuple(value.shape)}, config.toml says {shape}")
        state[key] = value.detach().to(torch.float32)
    layers = list(config.encoder.sublayers)
    for i, layer in enumerate(layers):
        if isinstance(layer, Convolution) and layer.norm == "batchnorm":
            if not norm_fused:
                _fold_batchnorm(state, i, layer)
            layers[i] = dataclasses.replace(layer, norm=None, bias=True)
    folded = config.replace(encoder=dataclasses.replace(config.encoder, sublayers=tuple(layers)))
    return folded, state


def _fold_batchnorm(state: dict[str, torch.Tensor], index: int, layer: Convolution) -> None:
    """conv then batchnorm (eval) is one convolution: w' = w·g/σ, b' = (b − μ)·g/σ + β."""
    bn = {n: state.pop(f"encoder.{index}.norm.bn.{n}") for n in ("weight", "bias", "running_mean", "running_var")}
    factor = bn["weight"] / torch.sqrt(bn["running_var"] + BATCHNORM_EPS)
    weight = state[f"encoder.{index}.conv.weight"]
    bias = state.get(f"encoder.{index}.conv.bias", torch.zeros(layer.size))
    state[f"encoder.{index}.conv.weight"] = weight * factor[:, None, None]
    state[f"encoder.{index}.conv.bias"] = (bias - bn["running_mean"]) * factor + bn["bias"]


# ---- readers ----------------------------------------------------------------------


def _from_efficient_basecallers(path: Path, state: dict[str, Any], base: ModelConfig) -> LoadedCheckpoint:
    layer_ids = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.(\d+)\.lstm\.W$", k))})
    if not layer_ids or layer_ids != list(range(len(layer_ids))):
        raise EdgecallError(f"{path}: no masked LSTM layers 'encoder.i.lstm.W' found in model_state")
    known = re.compile(
        r"(convolution\.\d+\.(weight|bias)|encoder\.\d+\.lstm\.(W|U|b|log_alpha_s)|"
        r"encoder\.\d+\.inference_lstm\..*|decoder\.linear\.(weight|bias))$"
    )
    unknown = [k for k in state if not known.match(k)]
    if unknown:
        raise EdgecallError(f"{path}: unknown keys in model_state: {', '.join(unknown[:5])}")
    convs = sorted(int(m.group(1)) for k in state if (m := re.match(r"convolution\.(\d+)\.weight$", k)))
    weights = [_tensor(state, f"convolution.{i}.weight", path) for i in convs]
    if len(weights) != 3 or any(w.dim() != 3 for w in weights):
        raise EdgecallError(f"{path}: expected three Conv1d weights 'convolution.{{0,2,4}}.weight'")
    hidden = tuple(int(_tensor(state, f"encoder.{i}.lstm.log_alpha_s", path).shape[0]) for i in layer_ids)
    head = _tensor(state, "decoder.linear.weight", path)
    base_head = base.encoder.head
    config = base.replace(encoder=rnn_encoder_config(
        conv_channels=tuple(int(w.shape[0]) for w in weights), conv_winlens=tuple(int(w.shape[2]) for w in weights),
        stride=base.stride, hidden_sizes=hidden, state_len=_state_len(int(head.shape[0]), path),
        scale=base_head.scale if base_head else 5.0, blank_score=base_head.blank_score if base_head else 2.0,
    ))
    tensors: dict[str, torch.Tensor] = {}
    conv_at = [i for i, x in enumerate(config.encoder.sublayers) if isinstance(x, Convolution)]
    for at, i in zip(conv_at, convs):
        tensors[f"encoder.{at}.conv.weight"] = _tensor(state, f"convolution.{i}.weight", path)
        tensors[f"encoder.{at}.conv.bias"] = _tensor(state, f"convolution.{i}.bias", path)
    alphas = []
    insize = config.encoder.features
    for k, at, size in zip(layer_ids, recurrent_indices(config.encoder.sublayers), hidden):
        p = f"encoder.{k}.lstm"
        tensors[recurrent_key(at, "weight_ih")] = _tensor(state, f"{p}.W", path, (4 * size, insize))
        tensors[recurrent_key(at, "weight_hh")] = _tensor(state, f"{p}.U", path, (4 * size, size))
        bias = _tensor(state, f"{p}.b", path, (4 * size,))
        insize = size
        tensors[recurrent_key(at, "bias_ih")] = bias
        tensors[recurrent_key(at, "bias_hh")] = torch.zeros_like(bias)
        alphas.append(_tensor(state, f"{p}.log_alpha_s", path))
    head_at = config.encoder.head_index
    tensors[f"encoder.{head_at}.linear.weight"] = head
    tensors[f"encoder.{head_at}.linear.bias"] = _tensor(state, "decoder.linear.bias", path)
    config, canonical = gather_state(config, tensors, path)
    return LoadedCheckpoint(path, "efficient-basecallers", sha256_of(path), config, canonical, tuple(alphas))


def _tensor(state: dict[str, Any], key: str, source: Path, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise EdgecallError(f"{source}: missing tensor '{key}'")
    if shape is not None and tuple(value.shape) != shape:
        raise EdgecallError(f"{source}: '{key}' has shape {tuple(value.shape)}, expected {shape}")
    return value.detach().to(torch.float32)


def _state_len(outputs: int, path: Path) -> int:
    for state_len in range(1, 8):
        if 4 ** (state_len + 1) == outputs:
            return state_len
    raise EdgecallError(f"{path}: CRF head has {outputs} outputs, not 4^(state_len+1) for any state_len")


def load_model_folder(path: Path) -> LoadedCheckpoint:
    """A Bonito (``weights_N.tar``) or Dorado (``*.tensor``) model folder."""
    config_file = path / "config.toml"
    weights = sorted(path.glob("weights_*.tar"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    tensor_files = sorted(path.glob("*.tensor"))
    if not config_file.is_file() or not (weights or tensor_files):
        raise EdgecallError(
            f"{path}: not a model folder (a Bonito folder has config.toml and weights_N.tar; "
            "a Dorado folder has config.toml and *.tensor files)"
        )
    config = with_folder_identity(path, ModelConfig.from_toml(read_toml(config_file), str(config_file)))
    if weights:
        state = _torch_load(weights[-1])
        if not isinstance(state, dict):
            raise EdgecallError(f"{weights[-1]}: not a state dict")
        tensors = {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in state.items()}
        tensors = {k if k.startswith("encoder.") else f"encoder.{k}": v for k, v in tensors.items()}
        config, canonical = gather_state(config, tensors, weights[-1])
        return LoadedCheckpoint(path, "bonito", sha256_of(weights[-1]), config, canonical, None)
    tensors = _dorado_names(config, read_tensor_folder(path))
    config, canonical = gather_state(config, tensors, path, norm_fused=True)
    digest = hashlib.sha256(b"".join(bytes.fromhex(sha256_of(p)) for p in tensor_files)).hexdigest()
    return LoadedCheckpoint(path, "dorado", digest, config, canonical, None)


def _dorado_names(config: ModelConfig, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Dorado numbers layers without the clamps when clamps sit before the head (Bonito's exporter)."""
    layers = config.encoder.sublayers
    if not any(isinstance(x, Clamp) for x in layers[:-1]):
        return {f"encoder.{k}": v for k, v in tensors.items()}
    position, skipped = {}, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, Clamp):
            skipped += 1
        else:
            position[str(i - skipped)] = str(i)
    out = {}
    for key, value in tensors.items():
        index, _, rest = key.partition(".")
        out[f"encoder.{position.get(index, index)}.{rest}"] = value
    return out


def _from_edgecall(path: Path, obj: dict[str, Any]) -> LoadedCheckpoint:
    if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("model_state"), dict):
        raise EdgecallError(f"{path}: edgecall checkpoint without 'config' or 'model_state'")
    config = ModelConfig.from_toml(obj["config"], str(path))
    raw = upgrade_format1_state(config, dict(obj["model_state"]))
    gates = {k: v for k, v in raw.items() if k.endswith(".log_alpha")}
    config, state = gather_state(config, {k: v for k, v in raw.items() if k not in gates}, path)
    indices = recurrent_indices(config.encoder.sublayers)
    alphas = tuple(gates[gate_key(i)].detach().float() for i in indices if gate_key(i) in gates)
    if alphas and len(alphas) != len(indices):
        raise EdgecallError(f"{path}: masks for {len(alphas)} of {len(indices)} LSTM layers")
    return LoadedCheckpoint(path, "edgecall", sha256_of(path), config, state, alphas or None)
