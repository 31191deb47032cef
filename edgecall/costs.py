"""Parameter and FLOP counts from a config alone (no torch), for inspect/compile.

FLOPs count a multiply-add as 2. An LSTM step costs 8·H·(I+H) (4 gates), a GRU
step 6·H·(I+H); per-sample figures divide per-frame costs by the stride.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecall.config import ModelConfig


@dataclass(frozen=True)
class ModelCosts:
    conv_flops: float  # per input sample
    rnn_flops: float  # per input sample, all recurrent layers
    head_flops: float  # per input sample
    parameters: int  # total parameter count

    @property
    def flops(self) -> float:
        return self.conv_flops + self.rnn_flops + self.head_flops


def model_costs(config: ModelConfig) -> ModelCosts:
    enc = config.encoder
    conv_flops = 0.0
    params = 0
    insize = 1 if enc.architecture == "bonito-lstm" else 2
    last = len(enc.conv_channels) - 1
    for i, (size, winlen) in enumerate(zip(enc.conv_channels, enc.conv_winlens)):
        per_output = 2.0 * insize * size * winlen
        conv_flops += per_output / (enc.stride if i == last else 1)
        params += insize * size * winlen + size
        insize = size
    gates = 4 if enc.rnn_type == "lstm" else 3
    rnn_flops = 0.0
    for hidden in enc.layers:
        rnn_flops += 2.0 * gates * hidden * (insize + hidden) / enc.stride
        params += gates * hidden * (insize + hidden) + 2 * gates * hidden
        insize = hidden
    outputs = config.num_outputs
    head_flops = 2.0 * insize * outputs / enc.stride
    params += insize * outputs + outputs
    return ModelCosts(conv_flops, rnn_flops, head_flops, params)


def lstm_step_flops(layers: tuple[int, ...], features: int) -> float:
    """LSTM FLOPs per frame per chunk (the paper's N·D·(I+D)·8 with N = 1)."""
    total, insize = 0.0, features
    for hidden in layers:
        total += 8.0 * hidden * (insize + hidden)
        insize = hidden
    return total
