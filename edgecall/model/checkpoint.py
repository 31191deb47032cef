"""Read trained checkpoints into edgecall's canonical state-dict layout.

Three layouts are understood:

* efficient-basecallers (the seed paper's code): a ``torch.save`` dict with
  ``model_state`` holding ``convolution.{0,2,4}.*``, ``encoder.i.lstm.{W,U,b,
  log_alpha_s}`` and ``decoder.linear.*`` (``encoder.i.inference_lstm.*`` is a
  stale cache and ignored);
* a Bonito model directory: ``config.toml`` + ``weights_N.tar`` (highest N);
* edgecall's own training checkpoints: ``{"format": "edgecall-train", "config":
  ..., "model_state": ...}`` with ``rnns.i.log_alpha`` masks.

Everything is loaded with ``torch.load(weights_only=True)``: a checkpoint from
the internet must not be able to run code.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from edgecall.config import DecoderConfig, EncoderConfig, ModelConfig
from edgecall.errors import EdgecallError
from edgecall.model.crf import lstm_key

EDGECALL_FORMAT = "edgecall-train"
CONV_INDICES = (0, 2, 4)  # Conv1d positions in the Sequential (SiLU between)


@dataclass(frozen=True)
class LoadedCheckpoint:
    source: Path  # the file or directory read
    kind: str  # efficient-basecallers | bonito | edgecall
    sha256: str  # of the weights file, for provenance
    config: ModelConfig  # sizes as stored (dense for sparse checkpoints)
    state: dict[str, torch.Tensor]  # canonical keys, float32
    log_alpha: tuple[torch.Tensor, ...] | None  # per LSTM layer (H_i,), None when not sparse


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
        return _load_bonito_dir(path)
    obj = _torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == EDGECALL_FORMAT:
        return _from_edgecall(path, obj)
    if isinstance(obj, dict) and isinstance(obj.get("model_state"), dict):
        return _from_efficient_basecallers(path, obj["model_state"], base_config or ModelConfig())
    keys = ", ".join(list(obj)[:5]) if isinstance(obj, dict) else type(obj).__name__
    raise EdgecallError(
        f"{path}: not a checkpoint edgecall knows (expected 'model_state' from efficient-basecallers, "
        f"an edgecall training checkpoint, or a Bonito model directory; found {keys})"
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


def _tensor(state: dict[str, Any], key: str, source: Path, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    if key not in state:
        raise EdgecallError(f"{source}: missing tensor '{key}'")
    value = state[key]
    if not isinstance(value, torch.Tensor):
        raise EdgecallError(f"{source}: '{key}' is not a tensor")
    if shape is not None and tuple(value.shape) != shape:
        raise EdgecallError(f"{source}: '{key}' has shape {tuple(value.shape)}, expected {shape}")
    return value.detach().to(torch.float32)


def _conv_config(state: dict[str, Any], prefix: str, source: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    channels, winlens = [], []
    for i in CONV_INDICES:
        w = _tensor(state, f"{prefix}.{i}.weight", source)
        if w.dim() != 3:
            raise EdgecallError(f"{source}: '{prefix}.{i}.weight' is not a Conv1d weight (shape {tuple(w.shape)})")
        channels.append(int(w.shape[0]))
        winlens.append(int(w.shape[2]))
    return tuple(channels), tuple(winlens)


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
    channels, winlens = _conv_config(state, "convolution", path)
    canonical: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(CONV_INDICES):
        canonical[f"conv.{idx}.weight"] = _tensor(state, f"convolution.{idx}.weight", path)
        canonical[f"conv.{idx}.bias"] = _tensor(state, f"convolution.{idx}.bias", path, (channels[i],))
    sizes, alphas = [], []
    insize = channels[-1]
    for i in layer_ids:
        hidden = int(_tensor(state, f"encoder.{i}.lstm.log_alpha_s", path).shape[0])
        p = f"encoder.{i}.lstm"
        canonical[lstm_key(i, "weight_ih")] = _tensor(state, f"{p}.W", path, (4 * hidden, insize))
        canonical[lstm_key(i, "weight_hh")] = _tensor(state, f"{p}.U", path, (4 * hidden, hidden))
        bias = _tensor(state, f"{p}.b", path, (4 * hidden,))
        canonical[lstm_key(i, "bias_ih")] = bias
        canonical[lstm_key(i, "bias_hh")] = torch.zeros_like(bias)
        alphas.append(_tensor(state, f"{p}.log_alpha_s", path))
        sizes.append(hidden)
        insize = hidden
    weight = _tensor(state, "decoder.linear.weight", path)
    if weight.dim() != 2 or weight.shape[1] != insize:
        raise EdgecallError(f"{path}: 'decoder.linear.weight' has shape {tuple(weight.shape)}, expected (C, {insize})")
    canonical["head.weight"] = weight
    canonical["head.bias"] = _tensor(state, "decoder.linear.bias", path, (int(weight.shape[0]),))
    state_len = _state_len(int(weight.shape[0]), path)
    config = base.replace(
        encoder=EncoderConfig(
            conv_channels=channels, conv_winlens=winlens, stride=base.encoder.stride,
            activation=base.encoder.activation, layers=tuple(sizes), scale=base.encoder.scale,
        ),
        decoder=_crf_decoder(base.decoder, state_len),
    )
    return LoadedCheckpoint(path, "efficient-basecallers", sha256_of(path), config, canonical, tuple(alphas))


def _state_len(outputs: int, path: Path) -> int:
    for state_len in range(1, 8):
        if 4 ** (state_len + 1) == outputs:
            return state_len
    if any(5 * 4**s == outputs for s in range(1, 8)):
        raise EdgecallError(
            f"{path}: the CRF head has learned stay scores ({outputs} outputs); edgecall supports "
            "models with a fixed blank_score (4^(state_len+1) outputs)"
        )
    raise EdgecallError(f"{path}: CRF head has {outputs} outputs, not 4^(state_len+1) for any state_len")


def _crf_decoder(base: DecoderConfig, state_len: int) -> DecoderConfig:
    from dataclasses import replace

    return replace(base, kind="crf", state_len=state_len)


def _load_bonito_dir(path: Path) -> LoadedCheckpoint:
    config_file = path / "config.toml"
    weights = sorted(path.glob("weights_*.tar"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not config_file.is_file() or not weights:
        raise EdgecallError(f"{path}: a Bonito model directory needs config.toml and weights_N.tar")
    base = ModelConfig.load(config_file)
    state = _torch_load(weights[-1])
    if not isinstance(state, dict):
        raise EdgecallError(f"{weights[-1]}: not a state dict")
    n = len(base.encoder.layers)
    canonical: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(CONV_INDICES):
        canonical[f"conv.{idx}.weight"] = _tensor(state, f"encoder.{i}.conv.weight", weights[-1])
        canonical[f"conv.{idx}.bias"] = _tensor(state, f"encoder.{i}.conv.bias", weights[-1])
    for i in range(n):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            canonical[lstm_key(i, name)] = _tensor(state, f"encoder.{4 + i}.rnn.{name}_l0", weights[-1])
    head = f"encoder.{4 + n}.linear"
    canonical["head.weight"] = _tensor(state, f"{head}.weight", weights[-1])
    canonical["head.bias"] = _tensor(state, f"{head}.bias", weights[-1])
    _state_len(int(canonical["head.weight"].shape[0]), weights[-1])
    extra = sorted(set(state) - {f"encoder.{i}.conv.{p}" for i in range(3) for p in ("weight", "bias")}
                   - {f"encoder.{4 + i}.rnn.{nm}_l0" for i in range(n) for nm in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
                   - {f"{head}.weight", f"{head}.bias"})
    if extra:
        raise EdgecallError(f"{weights[-1]}: unknown keys for an rnn-encoder model: {', '.join(extra[:5])}")
    return LoadedCheckpoint(path, "bonito", sha256_of(weights[-1]), base.replace(name=path.name), canonical, None)


def _from_edgecall(path: Path, obj: dict[str, Any]) -> LoadedCheckpoint:
    if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("model_state"), dict):
        raise EdgecallError(f"{path}: edgecall checkpoint without 'config' or 'model_state'")
    config = ModelConfig.from_toml(obj["config"], str(path))
    state = {k: v.detach().float() for k, v in obj["model_state"].items() if not k.endswith(".log_alpha")}
    n = len(config.encoder.layers)
    alphas = tuple(
        obj["model_state"][f"rnns.{i}.log_alpha"].detach().float()
        for i in range(n)
        if f"rnns.{i}.log_alpha" in obj["model_state"]
    )
    if alphas and len(alphas) != n:
        raise EdgecallError(f"{path}: masks for {len(alphas)} of {n} LSTM layers")
    return LoadedCheckpoint(path, "edgecall", sha256_of(path), config, state, alphas or None)
