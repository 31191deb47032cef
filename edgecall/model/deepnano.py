"""DeepNano-blitz (R9.4.1, CTC) as a PyTorch module, rebuilt from its text weights.

DeepNano-blitz (fmfi-compbio/deepnano-blitz, MIT) ships each network as a text
file: every tensor is two lines, its shape and then its row-major values, in
the order conv w (66, H), conv b (H); four GRUs of twelve tensors each
``wio woo bio boo wir wiu wor wou bir bor biu bou``; out w (H, 5), out b (5).

The Rust caller (``src/gru_layer.rs``) computes, per GRU step::

    u = sigmoid(x wiu + biu + h wou + bou)          # update gate
    r = sigmoid(x wir + bir + h wor + bor)          # reset gate
    n = tanh(x wio + bio + r * (h woo + boo))
    h' = u * h + (1 - u) * n

which is exactly ``torch.nn.GRU`` (gate order r, z, n; reset applied after the
hidden matmul, ONNX ``linear_before_reset=1``), so the export gets native ONNX
GRU nodes. Each GRU writes its output time-reversed, so layers alternate
forward/backward in time and, after four layers, end in forward order. The
released caller approximates tanh/sigmoid; the weights were trained with exact
ones (its ``gpu_model.py`` uses ``nn.GRU``), which this module uses.

Output: softmax **probabilities** (T/3, N, 5) over ``N A C G T`` (blank first),
forward in time -- the matrix DeepNano-blitz hands to its beam search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgecall.config import (
    BasecallerConfig,
    DecoderConfig,
    EncoderConfig,
    ModelConfig,
    NormalisationConfig,
)
from edgecall.errors import EdgecallError
from edgecall.layers import deepnano_layers

NUM_GRUS = 4
KERNEL = 33  # convolution window, samples
POOL = 3  # max-pool width = model stride, samples per output frame
IN_FEATURES = 2  # clipped signal and its square
CLIP = 2.5  # normalised signal is clipped to +-CLIP
LABELS = ("N", "A", "C", "G", "T")
GRU_TENSORS = ("wio", "woo", "bio", "boo", "wir", "wiu", "wor", "wou", "bir", "bor", "biu", "bou")
CHUNKSIZE = 1560  # samples per chunk in the Rust caller (3 * 500 + 6 * 10)
OVERLAP = 60  # 1560 - step 1500: drops 10 frames (30 samples) at each join


def tensor_shapes(hidden: int) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the text file's tensors, in file order."""
    shapes: dict[str, tuple[int, ...]] = {"conv.w": (KERNEL * IN_FEATURES, hidden), "conv.b": (hidden,)}
    for i in range(NUM_GRUS):
        for name in GRU_TENSORS:
            matrix = name[0] == "w"
            shapes[f"gru{i}.{name}"] = (hidden, hidden) if matrix else (hidden,)
    shapes["out.w"] = (hidden, len(LABELS))
    shapes["out.b"] = (len(LABELS),)
    return shapes


def parse_weights(path: Path) -> dict[str, np.ndarray]:
    """Read a DeepNano-blitz ``rnnH.txt`` into named float32 arrays (file order).

    The hidden size comes from the first shape line; every other tensor must
    have exactly the shape the Rust loader expects, or this fails naming the
    file, the tensor and its line.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgecallError(f"{path}: cannot read DeepNano-blitz weights ({exc})") from None
    first = lines[0].split() if lines else []
    if len(first) != 2 or not all(s.isdigit() for s in first) or int(first[0]) != KERNEL * IN_FEATURES:
        raise EdgecallError(
            f"{path}: not DeepNano-blitz weights (line 1 should be the conv shape "
            f"'{KERNEL * IN_FEATURES} H', got {lines[0][:40] if lines else 'an empty file'!r})"
        )
    shapes = tensor_shapes(int(first[1]))
    if len(lines) < 2 * len(shapes):
        missing = list(shapes)[len(lines) // 2]
        raise EdgecallError(
            f"{path}: truncated DeepNano-blitz weights: {len(lines)} lines, expected "
            f"{2 * len(shapes)} (first missing tensor: {missing})"
        )
    if any(line.strip() for line in lines[2 * len(shapes):]):
        raise EdgecallError(f"{path}: unexpected data after line {2 * len(shapes)} (wrong hidden size?)")
    out: dict[str, np.ndarray] = {}
    for k, (name, shape) in enumerate(shapes.items()):
        shape_line, value_line = lines[2 * k], lines[2 * k + 1]
        where = f"{path}: tensor {name} (lines {2 * k + 1}-{2 * k + 2})"
        try:
            got = tuple(int(s) for s in shape_line.split())
            values = np.array(value_line.split(), dtype=np.float32)
        except ValueError as exc:
            raise EdgecallError(f"{where}: not numbers ({exc})") from None
        if got != shape:
            raise EdgecallError(f"{where}: shape {got}, expected {shape}")
        if values.size != int(np.prod(shape)):
            raise EdgecallError(f"{where}: {values.size} values, expected {int(np.prod(shape))} (truncated?)")
        if not np.all(np.isfinite(values)):
            raise EdgecallError(f"{where}: non-finite values")
        out[name] = values.reshape(shape)
    return out


def hidden_size(weights: dict[str, np.ndarray]) -> int:
    return int(weights["conv.b"].shape[0])


def deepnano_config(hidden: int, *, batchsize: int = 64) -> ModelConfig:
    """The package config of a DeepNano-blitz width-``hidden`` network."""
    return ModelConfig(
        name=f"deepnano-blitz-w{hidden}",
        chemistry="dna_r9.4.1_e8",
        sample_rate=4000,
        encoder=EncoderConfig(deepnano_layers(hidden, KERNEL, POOL, (hidden,) * NUM_GRUS), architecture="deepnano-blitz"),
        decoder=DecoderConfig(kind="ctc", beam_width=5, beam_cut=0.1, labels=LABELS, reverse=True),
        basecaller=BasecallerConfig(chunksize=CHUNKSIZE, overlap=OVERLAP, batchsize=batchsize),
        # DeepNano-blitz: med/MAD of the whole read's raw signal, no trimming
        normalisation=NormalisationConfig(strategy="medmad", trim=False),
    )


def to_state_dict(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map the text file's tensors onto :class:`DeepNanoBlitz` parameter names."""
    hidden = hidden_size(weights)
    sd: dict[str, np.ndarray] = {
        # im2col column 2*j + f holds input feature f at offset j - 16 (cross-correlation)
        "conv.weight": weights["conv.w"].reshape(KERNEL, IN_FEATURES, hidden).transpose(2, 1, 0),
        "conv.bias": weights["conv.b"],  # per-channel: adding it before the pool is the same
        "out.weight": weights["out.w"].T,
        "out.bias": weights["out.b"],
    }
    for i in range(NUM_GRUS):
        w = {n: weights[f"gru{i}.{n}"] for n in GRU_TENSORS}
        # torch gate order (r, z, n); DeepNano's update gate u is torch's z
        sd[f"rnns.{i}.weight_ih_l0"] = np.concatenate([w["wir"].T, w["wiu"].T, w["wio"].T])
        sd[f"rnns.{i}.weight_hh_l0"] = np.concatenate([w["wor"].T, w["wou"].T, w["woo"].T])
        sd[f"rnns.{i}.bias_ih_l0"] = np.concatenate([w["bir"], w["biu"], w["bio"]])
        sd[f"rnns.{i}.bias_hh_l0"] = np.concatenate([w["bor"], w["bou"], w["boo"]])
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


class DeepNanoBlitz(nn.Module):
    """(N, 1, T) normalised signal -> (T/3, N, 5) label probabilities, forward in time."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        enc = config.encoder
        if enc.architecture != "deepnano-blitz" or enc.rnn_type != "gru":
            raise EdgecallError(f"{config.name}: not a DeepNano-blitz config ({enc.architecture}, {enc.rnn_type})")
        if enc.sublayers != deepnano_layers(enc.features, KERNEL, POOL, (enc.features,) * len(enc.recurrent)):
            raise EdgecallError(
                f"{config.name}: DeepNano-blitz needs one k{KERNEL} convolution, pool {POOL} and GRUs of the conv width"
            )
        hidden = enc.features
        self.reversed = tuple(layer.reverse for layer in enc.recurrent)
        self.conv = nn.Conv1d(IN_FEATURES, hidden, KERNEL, padding=KERNEL // 2)
        self.pool = nn.MaxPool1d(POOL)
        self.rnns = nn.ModuleList(nn.GRU(hidden, hidden) for _ in enc.recurrent)
        self.out = nn.Linear(hidden, config.num_outputs)

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        x = signal.clamp(-CLIP, CLIP)
        x = torch.cat([x, x * x], dim=1)  # (N, 2, T)
        x = torch.tanh(self.pool(self.conv(x)))  # (N, H, T/3)
        x = x.permute(2, 0, 1)  # (T/3, N, H)
        for rnn, rev in zip(self.rnns, self.reversed):
            if rev:  # flip -> GRU -> flip: the same as DeepNano's reversed write-out
                x = rnn(x.flip(0))[0].flip(0)
            else:
                x = rnn(x)[0]
        return torch.softmax(self.out(x), dim=-1)


def build_module(config: ModelConfig, state_dict: dict[str, np.ndarray]) -> DeepNanoBlitz:
    """A DeepNanoBlitz in eval mode with ``state_dict`` (arrays) loaded strictly."""
    model = DeepNanoBlitz(config)
    try:
        model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in state_dict.items()})
    except RuntimeError as exc:
        raise EdgecallError(f"{config.name}: weights do not fit the config ({str(exc).splitlines()[0]})") from None
    return model.eval()


def count_parameters(state_dict: dict[str, np.ndarray]) -> int:
    return int(sum(v.size for v in state_dict.values()))


def flops_per_sample(hidden: int, layers: int = NUM_GRUS) -> float:
    """Multiply-adds x 2 per input sample (conv at every sample, GRU/head per frame)."""
    conv = 2 * KERNEL * IN_FEATURES * hidden  # per sample
    gru = 2 * 3 * hidden * (hidden + hidden) + 10 * hidden  # per frame: two matmuls + gates
    head = 2 * hidden * len(LABELS) + 3 * len(LABELS)  # per frame
    return conv + (layers * gru + head) / POOL
