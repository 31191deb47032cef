"""Parameter and FLOP counts from a config alone (no torch), for inspect/compile.

FLOPs count a multiply-add as 2. An LSTM step costs 8·H·(I+H) (4 gates), a GRU
step 6·H·(I+H); per-sample figures divide per-frame costs by the stride.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecall.config import ModelConfig
from edgecall.layers import Convolution, CRFHead, Linear, Recurrent, output_size


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
    """Walk the layer list: per-output-position costs divided by the stride so far."""
    enc = config.encoder
    conv_flops = rnn_flops = head_flops = 0.0
    params = 0
    stride = 1
    for layer in enc.sublayers:
        if isinstance(layer, Convolution):
            stride *= layer.stride  # (DeepNano-blitz's pool is recorded as this stride)
            weights = layer.insize * layer.size * layer.winlen
            conv_flops += 2.0 * weights / stride
            params += weights + (layer.size if layer.bias else 0)
        elif isinstance(layer, Recurrent):
            gates = 4 if layer.kind == "lstm" else 3
            rnn_flops += 2.0 * gates * layer.size * (layer.insize + layer.size) / stride
            params += gates * layer.size * (layer.insize + layer.size) + 2 * gates * layer.size
        elif isinstance(layer, (Linear, CRFHead)):
            size = output_size(layer) or 0
            head_flops += 2.0 * layer.insize * size / stride
            params += layer.insize * size + (size if layer.bias else 0)
    return ModelCosts(conv_flops, rnn_flops, head_flops, params)


def lstm_step_flops(config: ModelConfig) -> float:
    """LSTM FLOPs per frame per chunk (the paper's N·D·(I+D)·8 with N = 1)."""
    return sum(8.0 * x.size * (x.insize + x.size) for x in config.encoder.recurrent if x.kind == "lstm")
