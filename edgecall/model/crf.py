"""Bonito CRF encoders as one ``nn.Sequential`` built from the config's layer list.

Module names follow Bonito's ``Serial`` (``encoder.{i}.conv``, ``encoder.{i}.rnn``,
``encoder.{i}.linear``, i the position in the layer list), so a Bonito
``weights_N.tar`` loads as it is and a Dorado folder's tensor files map by
name. A shrunk model is an ordinary instance with smaller layers: export, the
torch backend and training share this one definition.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError
from edgecall.layers import Clamp, Convolution, CRFHead, Layer, Linear, Permute, Recurrent

ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "tanh": nn.Tanh, "relu": nn.ReLU}


def _activation(name: str | None) -> nn.Module | None:
    return None if name is None else ACTIVATIONS[name]()


class ConvolutionLayer(nn.Module):
    def __init__(self, spec: Convolution) -> None:
        super().__init__()
        if spec.norm is not None:
            raise EdgecallError("a convolution with batchnorm must be folded before building (load it through a checkpoint reader)")
        self.conv = nn.Conv1d(spec.insize, spec.size, spec.winlen, stride=spec.stride, padding=spec.pad, bias=spec.bias)
        self.activation = _activation(spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.activation(x) if self.activation is not None else x


class ClampLayer(nn.Module):
    def __init__(self, spec: Clamp) -> None:
        super().__init__()
        self.min, self.max = spec.min, spec.max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.min, self.max)


class PermuteLayer(nn.Module):
    def __init__(self, spec: Permute) -> None:
        super().__init__()
        self.dims = spec.dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class DirectionalLSTM(nn.Module):
    """One unidirectional LSTM layer; a reversed layer flips time around it."""

    def __init__(self, spec: Recurrent) -> None:
        super().__init__()
        if spec.kind != "lstm":
            raise EdgecallError(f"Bonito CRF encoders use LSTM layers, not {spec.kind}")
        self.rnn = nn.LSTM(spec.insize, spec.size)
        self.reverse = spec.reverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reverse:
            x = x.flip(0)
        y, _ = self.rnn(x)
        return y.flip(0) if self.reverse else y


class LinearLayer(nn.Module):
    def __init__(self, spec: Linear) -> None:
        super().__init__()
        self.linear = nn.Linear(spec.insize, spec.size, bias=spec.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class CRFHeadLayer(nn.Module):
    """Linear, activation, scale; the fixed blank is the decoder's, never an output column."""

    def __init__(self, spec: CRFHead) -> None:
        super().__init__()
        self.linear = nn.Linear(spec.insize, spec.outputs, bias=spec.bias)
        self.activation = _activation(spec.activation)
        self.scale = spec.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if self.activation is not None:
            x = self.activation(x)
        return x * self.scale if self.scale is not None else x


def build_layer(spec: Layer, recurrent: type[nn.Module] = DirectionalLSTM) -> nn.Module:
    if isinstance(spec, Convolution):
        return ConvolutionLayer(spec)
    if isinstance(spec, Clamp):
        return ClampLayer(spec)
    if isinstance(spec, Permute):
        return PermuteLayer(spec)
    if isinstance(spec, Recurrent):
        return recurrent(spec)
    if isinstance(spec, Linear):
        return LinearLayer(spec)
    return CRFHeadLayer(spec)


class BonitoCRF(nn.Module):
    """(N, 1, T) normalised signal -> (T/stride, N, C) CRF scores."""

    layer_type: type[nn.Module] = DirectionalLSTM  # builds each Recurrent spec

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.encoder.architecture != "bonito-lstm" or config.decoder.kind != "crf":
            raise EdgecallError(f"{config.name}: not a Bonito LSTM CRF model config")
        self.config = config
        self.encoder = nn.Sequential(*(build_layer(x, self.layer_type) for x in config.encoder.sublayers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def recurrent_key(index: int, name: str) -> str:
    """Key of an LSTM tensor of layer-list position ``index``: weight_ih, weight_hh, bias_ih, bias_hh."""
    return f"encoder.{index}.rnn.{name}_l0"


def gate_key(index: int) -> str:
    """Key of the neuron-gate vector of the gated LSTM at layer-list position ``index``."""
    return f"encoder.{index}.log_alpha"


def weight_key(config: ModelConfig, index: int, name: str = "weight") -> str:
    """Key of a convolution's, linear's or CRF head's weight/bias at position ``index``."""
    spec = config.encoder.sublayers[index]
    return f"encoder.{index}.{'conv' if isinstance(spec, Convolution) else 'linear'}.{name}"


def upgrade_format1_state(config: ModelConfig, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename format-1 keys (``conv.{0,2,4}``, ``rnns.k.rnn``, ``rnns.k.log_alpha``, ``head``).

    Earlier packages and training checkpoints name tensors by role; the layer list
    names them by position. Keys already in the new layout pass unchanged.
    """
    layers = config.encoder.sublayers
    convs = [i for i, x in enumerate(layers) if isinstance(x, Convolution)]
    rnns = [i for i, x in enumerate(layers) if isinstance(x, Recurrent)]
    head = config.encoder.head_index
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := re.fullmatch(r"conv\.(\d+)\.(weight|bias)", key):
            out[f"encoder.{convs[int(m.group(1)) // 2]}.conv.{m.group(2)}"] = value
        elif m := re.fullmatch(r"rnns\.(\d+)\.rnn\.(.+)", key):
            out[f"encoder.{rnns[int(m.group(1))]}.rnn.{m.group(2)}"] = value
        elif m := re.fullmatch(r"rnns\.(\d+)\.log_alpha", key):
            out[gate_key(rnns[int(m.group(1))])] = value
        elif (m := re.fullmatch(r"head\.(weight|bias)", key)) and head is not None:
            out[f"encoder.{head}.linear.{m.group(1)}"] = value
        else:
            out[key] = value
    return out


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> nn.Module:
    """Load every tensor, refuse any missing or unexpected one, one line on a mismatch."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        detail = " ".join(str(exc).split())[:300]
        raise EdgecallError(f"{name}: weights do not fit the model config ({detail})") from None
    if missing or unexpected:
        raise EdgecallError(
            f"{name}: weights do not fit the model "
            f"(missing: {', '.join(missing[:5]) or '-'}; unexpected: {', '.join(unexpected[:5]) or '-'})"
        )
    return model


def build_model(config: ModelConfig, state: dict[str, torch.Tensor] | None = None) -> BonitoCRF:
    """Instantiate and (strictly) load a state dict, in eval mode."""
    model = BonitoCRF(config)
    if state is not None:
        load_strict(model, upgrade_format1_state(config, state), config.name)
    return model.eval()
