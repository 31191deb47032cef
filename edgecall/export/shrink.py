"""Physically remove masked LSTM neurons (Frensel, Al-Ars & Hofstee, BCB'24).

At inference the hard-concrete gate of neuron k is the binary
``clamp(sigmoid(log_alpha_k) * (zeta - gamma) + gamma, 0, 1) > 0.3``. A masked
neuron's gates, cell and output are exactly zero, so dropping its gate rows in
W, U and b, its column in U, and its input column in the layer that consumes it
(the next LSTM, a bottleneck linear or the CRF head, through any clamp)
changes nothing: the shrunk model is exact, only smaller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError
from edgecall.model.checkpoint import LoadedCheckpoint
from edgecall.layers import consumer_index, recurrent_indices
from edgecall.model.crf import recurrent_key, weight_key

BETA = 2.0 / 3.0  # hard-concrete temperature
GAMMA = -0.1  # stretch interval lower end
ZETA = 1.1  # stretch interval upper end
KEEP_THRESHOLD = 0.3  # deterministic gate value above which a neuron is kept
LSTM_GATES = 4


def gate_value(log_alpha: torch.Tensor) -> torch.Tensor:
    """Deterministic (inference-time) hard-concrete gate in [0, 1]."""
    return torch.clamp(torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def keep_mask(log_alpha: torch.Tensor) -> torch.Tensor:
    """(H,) bool: the neurons that survive (equivalent to log_alpha > -ln 2)."""
    return gate_value(log_alpha) > KEEP_THRESHOLD


def nonzero_probability(log_alpha: torch.Tensor) -> torch.Tensor:
    """P(gate != 0) = sigmoid(log_alpha - beta * ln(-gamma / zeta)), the L0 penalty term."""
    return torch.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


@dataclass(frozen=True)
class ShrinkResult:
    config: ModelConfig  # with the shrunk layers' widths
    state: dict[str, torch.Tensor]  # canonical, shrunk
    kept: tuple[int, ...]  # neurons kept per layer
    original: tuple[int, ...]  # neurons per layer before shrinking
    widths: tuple[int, ...]  # neurons per layer after shrinking: the kept ones and the zeroed padding


def _gate_rows(mask: torch.Tensor) -> torch.Tensor:
    """Row indices g*H + k for every gate g and kept neuron k."""
    hidden = mask.shape[0]
    kept = torch.nonzero(mask).flatten()
    return torch.cat([kept + g * hidden for g in range(LSTM_GATES)])


def layer_masks(ckpt: LoadedCheckpoint) -> list[torch.Tensor]:
    """Keep masks per recurrent layer; all-true for a dense checkpoint."""
    if ckpt.log_alpha is None:
        return [torch.ones(h, dtype=torch.bool) for h in ckpt.config.encoder.hidden_sizes]
    return [keep_mask(a) for a in ckpt.log_alpha]


def masked_state(ckpt: LoadedCheckpoint) -> dict[str, torch.Tensor]:
    """The dense state with masked neurons zeroed: the reference a shrink must match."""
    state = {k: v.clone() for k, v in ckpt.state.items()}
    for i, mask in zip(recurrent_indices(ckpt.config.encoder.sublayers), layer_masks(ckpt)):
        gate_mask = mask.repeat(LSTM_GATES).float()
        for name in ("weight_ih", "weight_hh"):
            state[recurrent_key(i, name)] *= gate_mask[:, None]
        state[recurrent_key(i, "weight_hh")] *= mask.float()[None, :]
        for name in ("bias_ih", "bias_hh"):
            state[recurrent_key(i, name)] *= gate_mask
    return state


def _consumer_weight(ckpt: LoadedCheckpoint, index: int) -> str:
    layers = ckpt.config.encoder.sublayers
    j = consumer_index(layers, index)
    if j is None:
        raise EdgecallError(f"{ckpt.source}: nothing consumes LSTM layer {index}'s output; cannot shrink it")
    return recurrent_key(j, "weight_ih") if j in recurrent_indices(layers) else weight_key(ckpt.config, j)


def padded_masks(masks: list[torch.Tensor], multiple: int) -> list[torch.Tensor]:
    """Each keep mask with its first masked neurons added back until the count is a multiple of ``multiple``
    (at most the layer's size). Zeroed, such a neuron's output is exactly 0, so the function is unchanged,
    while OpenVINO's LSTM kernels get the widths they are fast at: in bf16 on AMX the default model's LSTMs
    took 1.8x as long at their pruned widths as padded to multiples of 8 (bench/lstm_padding.py)."""
    padded = []
    for mask in masks:
        kept = int(mask.sum())
        want = min(mask.numel(), -(-kept // multiple) * multiple)
        extra = torch.nonzero(~mask).flatten()[: want - kept]
        mask = mask.clone()
        mask[extra] = True
        padded.append(mask)
    return padded


def shrink(ckpt: LoadedCheckpoint, multiple: int = 1) -> ShrinkResult:
    """Drop masked neurons, keeping each layer's width a multiple of ``multiple`` with zeroed ones;
    raise a clear error when a layer keeps none."""
    if multiple < 1:
        raise EdgecallError(f"the LSTM width multiple must be at least 1, got {multiple}")
    if ckpt.config.encoder.rnn_type != "lstm":
        raise EdgecallError(f"{ckpt.source}: shrinking needs LSTM layers, not {ckpt.config.encoder.rnn_type}")
    masks = layer_masks(ckpt)
    original = tuple(int(m.numel()) for m in masks)
    kept = tuple(int(m.sum()) for m in masks)
    empty = [i for i, k in enumerate(kept) if k == 0]
    if empty:
        raise EdgecallError(
            f"{ckpt.source}: LSTM layer(s) {', '.join(map(str, empty))} keep no neurons, so the model "
            "cannot be shrunk (its output would not depend on the signal); train with a smaller lambda"
        )
    state = masked_state(ckpt)  # the padding neurons taken back below are zeroed in it
    widths = []
    for i, mask, keep in zip(recurrent_indices(ckpt.config.encoder.sublayers), masks, padded_masks(masks, multiple)):
        rows = _gate_rows(keep)
        cols = torch.nonzero(keep).flatten()
        state[recurrent_key(i, "weight_ih")] = state[recurrent_key(i, "weight_ih")][rows].contiguous()
        state[recurrent_key(i, "weight_hh")] = state[recurrent_key(i, "weight_hh")][rows][:, cols].contiguous()
        for name in ("bias_ih", "bias_hh"):
            state[recurrent_key(i, name)] = state[recurrent_key(i, name)][rows].contiguous()
        consumer = _consumer_weight(ckpt, i)
        state[consumer] = (state[consumer] * mask.to(state[consumer].dtype))[:, cols].contiguous()
        widths.append(int(keep.sum()))
    config = ckpt.config.replace(encoder=ckpt.config.encoder.with_hidden_sizes(tuple(widths)))
    return ShrinkResult(config, state, kept, original, tuple(widths))
