"""The encoder as the ordered list of layers a Bonito/Dorado "serial" config names.

R9.4.1 "rnn encoder" configs, ONT's v4 serial configs and shrunk models are all
one kind of thing: a tuple of small frozen layer specs, read from and written
to the ``[[encoder.sublayers]]`` tables ONT's configs use. Building the torch
module, shrinking, export and FLOP counting all walk this list; nothing here
imports torch, so the runtime may use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

from edgecall.errors import EdgecallError

LSTM_WIDTH_MULTIPLE = 8  # shrunk LSTMs are padded to such widths: OpenVINO ran the networks 1.4-2.1x faster in bf16 on AMX (bench/lstm_padding.py)

ACTIVATIONS = ("swish", "silu", "tanh", "relu")
RNN_KINDS = ("lstm", "gru")
# Layer types of ONT's transformer (sup v5) encoders: recognised so that the
# refusal names them instead of calling them unknown.
TRANSFORMER_TYPES = ("transformerencoderlayer", "stack", "linearupsample", "namedserial", "rmsnorm")


@dataclass(frozen=True)
class Convolution:
    insize: int
    size: int
    winlen: int
    stride: int = 1
    padding: int | None = None  # None: winlen // 2, as Bonito's rnn encoder
    activation: str | None = "swish"
    bias: bool = True
    norm: str | None = None  # "batchnorm" in ONT configs; folded into the weights at import

    @property
    def pad(self) -> int:
        return self.winlen // 2 if self.padding is None else self.padding


@dataclass(frozen=True)
class Clamp:
    min: float
    max: float


@dataclass(frozen=True)
class Permute:
    dims: tuple[int, ...] = (2, 0, 1)  # (N, C, T) -> (T, N, C)


@dataclass(frozen=True)
class Recurrent:
    kind: str  # lstm | gru
    insize: int
    size: int
    reverse: bool = False  # runs backwards in time: flip, RNN, flip back


@dataclass(frozen=True)
class Linear:
    insize: int
    size: int
    bias: bool = True


@dataclass(frozen=True)
class CRFHead:
    """Bonito's ``linearcrfencoder``: Linear, optional activation, optional scale.

    With a fixed ``blank_score`` the outputs are the 4^(L+1) transition scores
    (Dorado's layout; Bonito's ``expand_blanks`` only inserts the constant);
    with ``blank_score`` None each state's stay score is learned: 5·4^L outputs.
    """

    insize: int
    state_len: int
    n_base: int = 4
    bias: bool = True
    scale: float | None = 5.0
    activation: str | None = "tanh"
    blank_score: float | None = 2.0
    expand_blanks: bool = True

    @property
    def outputs(self) -> int:
        if self.blank_score is None:
            return (self.n_base + 1) * self.n_base**self.state_len
        return self.n_base ** (self.state_len + 1)


Layer = Union[Convolution, Clamp, Permute, Recurrent, Linear, CRFHead]
WEIGHTED = (Convolution, Recurrent, Linear, CRFHead)


def _activation(value: Any, where: str) -> str | None:
    if value in (None, "", False):
        return None
    name = str(value)
    if name not in ACTIVATIONS:
        raise EdgecallError(f"{where}: unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})")
    return name


def _padding(doc: dict[str, Any]) -> int | None:
    """None (the default, winlen // 2) unless the config asks for another padding."""
    pad = doc.get("padding")
    return None if pad is None or int(pad) == int(doc["winlen"]) // 2 else int(pad)


def layer_from_dict(doc: dict[str, Any], index: int = 0) -> Layer:
    """One ``[[encoder.sublayers]]`` table as ONT writes it."""
    kind = str(doc.get("type", ""))
    where = f"encoder layer {index} ({kind or 'no type'})"
    if kind == "convolution":
        norm = doc.get("norm")
        if norm not in (None, "batchnorm"):
            raise EdgecallError(f"{where}: normalisation '{norm}' is not supported (only batchnorm)")
        return Convolution(
            insize=int(doc["insize"]), size=int(doc["size"]), winlen=int(doc["winlen"]),
            stride=int(doc.get("stride", 1)),
            padding=_padding(doc),
            activation=_activation(doc.get("activation"), where), bias=bool(doc.get("bias", True)), norm=norm,
        )
    if kind == "clamp":
        return Clamp(min=float(doc["min"]), max=float(doc["max"]))
    if kind == "permute":
        return Permute(dims=tuple(int(d) for d in doc.get("dims", (2, 0, 1))))
    if kind in RNN_KINDS:
        if not bool(doc.get("bias", True)):
            raise EdgecallError(f"{where}: recurrent layers without bias are not supported")
        return Recurrent(kind=kind, insize=int(doc["insize"]), size=int(doc["size"]),
                         reverse=bool(doc.get("reverse", False)))
    if kind == "linear":
        return Linear(insize=int(doc.get("in_features", doc.get("insize"))),
                      size=int(doc.get("out_features", doc.get("size"))), bias=bool(doc.get("bias", True)))
    if kind == "linearcrfencoder":
        if int(doc.get("n_base", 4)) != 4:
            raise EdgecallError(f"{where}: only 4-base CRF heads are supported")
        if doc.get("permute") is not None:
            raise EdgecallError(f"{where}: a permuting CRF head belongs to transformer models, not supported")
        blank = doc.get("blank_score")
        scale = doc.get("scale")
        return CRFHead(
            insize=int(doc["insize"]), state_len=int(doc["state_len"]), bias=bool(doc.get("bias", True)),
            scale=None if scale is None else float(scale), activation=_activation(doc.get("activation"), where),
            blank_score=None if blank is None else float(blank), expand_blanks=bool(doc.get("expand_blanks", True)),
        )
    if kind in TRANSFORMER_TYPES:
        raise EdgecallError(f"{where}: transformer layers are not supported")
    raise EdgecallError(f"{where}: unknown layer type")


def layer_to_dict(layer: Layer) -> dict[str, Any]:
    """The ONT sublayer table (None fields left out, as TOML has no null)."""
    if isinstance(layer, Convolution):
        doc: dict[str, Any] = {"type": "convolution", "insize": layer.insize, "size": layer.size, "bias": layer.bias,
                               "winlen": layer.winlen, "stride": layer.stride, "padding": layer.pad}
        if layer.activation:
            doc["activation"] = layer.activation
        if layer.norm:
            doc["norm"] = layer.norm
        return doc
    if isinstance(layer, Clamp):
        return {"type": "clamp", "min": layer.min, "max": layer.max}
    if isinstance(layer, Permute):
        return {"type": "permute", "dims": list(layer.dims)}
    if isinstance(layer, Recurrent):
        return {"type": layer.kind, "size": layer.size, "insize": layer.insize, "bias": True, "reverse": layer.reverse}
    if isinstance(layer, Linear):
        return {"type": "linear", "in_features": layer.insize, "out_features": layer.size, "bias": layer.bias}
    doc = {"type": "linearcrfencoder", "insize": layer.insize, "n_base": layer.n_base, "state_len": layer.state_len,
           "bias": layer.bias, "expand_blanks": layer.expand_blanks}
    for name in ("scale", "activation", "blank_score"):
        if getattr(layer, name) is not None:
            doc[name] = getattr(layer, name)
    return doc


def output_size(layer: Layer) -> int | None:
    if isinstance(layer, CRFHead):
        return layer.outputs
    if isinstance(layer, WEIGHTED):
        return layer.size
    return None


def check_chain(layers: tuple[Layer, ...], in_channels: int = 1) -> None:
    """Each layer's input size is the previous one's output; a CRF head ends the list."""
    if not layers:
        raise EdgecallError("the encoder has no layers")
    width = in_channels
    heads = [i for i, layer in enumerate(layers) if isinstance(layer, CRFHead)]
    for i, layer in enumerate(layers):
        if isinstance(layer, WEIGHTED):
            if layer.insize != width:
                raise EdgecallError(
                    f"encoder layer {i} ({describe_layer(layer)}) takes {layer.insize} inputs but the layer "
                    f"before gives {width}"
                )
            width = output_size(layer) or width
        if isinstance(layer, Recurrent) and layer.size < 1:
            raise EdgecallError(f"encoder layer {i} has no neurons")
    if len(heads) > 1 or (heads and any(isinstance(x, WEIGHTED) for x in layers[heads[0] + 1:])):
        raise EdgecallError("the CRF head must be the last weighted layer of the encoder")


def total_stride(layers: tuple[Layer, ...]) -> int:
    stride = 1
    for layer in layers:
        if isinstance(layer, Convolution):
            stride *= layer.stride
    return stride


def recurrent_indices(layers: tuple[Layer, ...]) -> list[int]:
    return [i for i, layer in enumerate(layers) if isinstance(layer, Recurrent)]


def consumer_index(layers: tuple[Layer, ...], index: int) -> int | None:
    """The next weighted layer after ``index``: the one whose input columns follow its neurons."""
    for j in range(index + 1, len(layers)):
        if isinstance(layers[j], WEIGHTED):
            return j
        if not isinstance(layers[j], (Clamp, Permute)):
            return None
    return None


def with_recurrent_sizes(layers: tuple[Layer, ...], sizes: tuple[int, ...]) -> tuple[Layer, ...]:
    """The same list with new recurrent hidden sizes; each consumer's input follows."""
    indices = recurrent_indices(layers)
    if len(sizes) != len(indices):
        raise EdgecallError(f"{len(sizes)} hidden sizes for {len(indices)} recurrent layers")
    out = list(layers)
    for i, size in zip(indices, sizes):
        out[i] = dataclasses.replace(out[i], size=int(size))
        j = consumer_index(layers, i)
        if j is not None:
            out[j] = dataclasses.replace(out[j], insize=int(size))
    return tuple(out)


def rnn_encoder(
    conv_channels: tuple[int, ...] = (4, 16, 384),
    conv_winlens: tuple[int, ...] = (5, 5, 19),
    stride: int = 5,
    activation: str = "swish",
    hidden_sizes: tuple[int, ...] = (384,) * 5,
    rnn_type: str = "lstm",
    first_reversed: bool = True,
    state_len: int = 4,
    scale: float = 5.0,
    blank_score: float | None = 2.0,
) -> tuple[Layer, ...]:
    """Bonito's R9.4.1 "rnn encoder" as a layer list: convs, LSTMs alternating direction, CRF head."""
    if len(conv_channels) != len(conv_winlens):
        raise EdgecallError("conv_channels and conv_winlens differ in length")
    layers: list[Layer] = []
    insize = 1
    last = len(conv_channels) - 1
    for i, (size, winlen) in enumerate(zip(conv_channels, conv_winlens)):
        layers.append(Convolution(insize, int(size), int(winlen), stride=stride if i == last else 1,
                                  activation=activation))
        insize = int(size)
    layers.append(Permute())
    for i, hidden in enumerate(hidden_sizes):
        layers.append(Recurrent(rnn_type, insize, int(hidden), reverse=first_reversed == (i % 2 == 0)))
        insize = int(hidden)
    layers.append(CRFHead(insize, state_len, scale=scale, activation="tanh", blank_score=blank_score))
    return tuple(layers)


def describe_layer(layer: Layer) -> str:
    """One short human line, for ``edgecall inspect`` and errors."""
    if isinstance(layer, Convolution):
        extra = f", stride {layer.stride}" if layer.stride != 1 else ""
        act = f", {layer.activation}" if layer.activation else ""
        return f"conv {layer.insize}->{layer.size} k{layer.winlen}{extra}{act}"
    if isinstance(layer, Clamp):
        return f"clamp [{layer.min:g}, {layer.max:g}]"
    if isinstance(layer, Permute):
        return "permute"
    if isinstance(layer, Recurrent):
        return f"{layer.kind} {layer.insize}->{layer.size}{' reversed' if layer.reverse else ''}"
    if isinstance(layer, Linear):
        return f"linear {layer.insize}->{layer.size}"
    stay = "learned stays" if layer.blank_score is None else f"blank {layer.blank_score:g}"
    return f"crf head {layer.insize}->{layer.outputs} (state_len {layer.state_len}, {stay})"


def deepnano_layers(hidden: int, winlen: int = 33, pool: int = 3, gru_sizes: tuple[int, ...] = ()) -> tuple[Layer, ...]:
    """DeepNano-blitz as a layer list: conv (2 features -> H) + max-pool, GRUs alternating, CTC linear.

    The pool is recorded as the convolution's stride (the frame rate it sets);
    GRU 0 runs forward in time, then directions alternate.
    """
    sizes = gru_sizes or (hidden,) * 4
    layers: list[Layer] = [Convolution(2, hidden, winlen, stride=pool, activation="tanh"), Permute()]
    insize = hidden
    for i, size in enumerate(sizes):
        layers.append(Recurrent("gru", insize, int(size), reverse=i % 2 == 1))
        insize = int(size)
    layers.append(Linear(insize, 5))
    return tuple(layers)
