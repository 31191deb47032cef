"""The Bonito CRF "rnn encoder" model with a hidden size per LSTM layer.

A shrunk model is an ordinary instance with smaller layers, so export, the
torch backend and training all share this one definition. Parameter names
(``conv.{0,2,4}``, ``rnns.{i}.rnn.*``, ``head.*``) are edgecall's canonical
state-dict layout; checkpoint readers map other layouts onto it.
"""

from __future__ import annotations

import torch
from torch import nn

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError

ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "tanh": nn.Tanh, "relu": nn.ReLU}


class DirectionalLSTM(nn.Module):
    """One unidirectional LSTM layer; a reversed layer flips time around it."""

    def __init__(self, insize: int, size: int, reverse: bool) -> None:
        super().__init__()
        self.rnn = nn.LSTM(insize, size)
        self.reverse = reverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reverse:
            x = x.flip(0)
        y, _ = self.rnn(x)
        return y.flip(0) if self.reverse else y


def conv_stack(config: ModelConfig) -> nn.Sequential:
    enc = config.encoder
    act = ACTIVATIONS.get(enc.activation)
    if act is None:
        raise EdgecallError(f"unknown activation '{enc.activation}' (known: {', '.join(ACTIVATIONS)})")
    layers: list[nn.Module] = []
    insize = 1
    last = len(enc.conv_channels) - 1
    for i, (size, winlen) in enumerate(zip(enc.conv_channels, enc.conv_winlens)):
        stride = enc.stride if i == last else 1
        layers += [nn.Conv1d(insize, size, winlen, stride=stride, padding=winlen // 2), act()]
        insize = size
    return nn.Sequential(*layers)


class BonitoCRF(nn.Module):
    """(N, 1, T) normalised signal -> (T/stride, N, 4^(state_len+1)) CRF scores."""

    layer_type: type[nn.Module] = DirectionalLSTM  # (insize, size, reverse) -> (T, N, I) -> (T, N, H) module

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.encoder.architecture != "bonito-lstm" or config.decoder.kind != "crf":
            raise EdgecallError(f"{config.name}: not a Bonito LSTM CRF model config")
        enc = config.encoder
        self.config = config
        self.conv = conv_stack(config)
        sizes = (enc.features, *enc.layers)
        self.rnns = nn.ModuleList(
            self.layer_type(sizes[i], sizes[i + 1], enc.layer_reversed(i)) for i in range(len(enc.layers))
        )
        self.head = nn.Linear(enc.layers[-1], config.num_outputs)
        self.scale = enc.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).permute(2, 0, 1)
        for rnn in self.rnns:
            x = rnn(x)
        return torch.tanh(self.head(x)) * self.scale


def lstm_key(layer: int, name: str) -> str:
    """Canonical key of an LSTM tensor: name in weight_ih, weight_hh, bias_ih, bias_hh."""
    return f"rnns.{layer}.rnn.{name}_l0"


def build_model(config: ModelConfig, state: dict[str, torch.Tensor] | None = None) -> BonitoCRF:
    """Instantiate and (strictly) load a canonical state dict, in eval mode."""
    model = BonitoCRF(config)
    if state is not None:
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatch
            detail = " ".join(str(exc).split())[:300]
            raise EdgecallError(f"{config.name}: weights do not fit the model config ({detail})") from None
        if missing or unexpected:
            raise EdgecallError(
                f"{config.name}: weights do not fit the model "
                f"(missing: {', '.join(missing) or '-'}; unexpected: {', '.join(unexpected) or '-'})"
            )
    return model.eval()
