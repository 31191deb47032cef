"""The model config: one typed, immutable object loaded from ``config.toml``.

The TOML stays readable by bonito (its sections ``[model]``, ``[labels]``,
``[input]``, ``[global_norm]``, ``[encoder]``, ``[qscore]``, ``[basecaller]``,
``[run_info]``, ``[scaling]``/``[normalisation]``/``[standardisation]``) and adds
an ``[edgecall]`` section for what bonito has no words for: per-layer hidden
sizes after shrinking, the decoder kind, chemistry and the package format
version. Derived values (frames per chunk, output width) are properties, never
written back.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from edgecall.errors import EdgecallError, exact_div
from edgecall.layers import (
    TRANSFORMER_TYPES,
    Clamp,
    CRFHead,
    Layer,
    Recurrent,
    check_chain,
    layer_from_dict,
    layer_to_dict,
    output_size,
    rnn_encoder,
    total_stride,
    with_recurrent_sizes,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMAT_VERSION = 2  # 2: [encoder] is a serial layer list; 1: rnn-encoder fields
NORMALISATION_STRATEGIES = ("medmad", "quantile", "pa", "none")
DECODER_KINDS = ("crf", "ctc")
ARCHITECTURES = ("bonito-lstm", "deepnano-blitz")


@dataclass(frozen=True)
class NormalisationConfig:
    """How the pA signal is scaled before the network sees it."""

    strategy: str = "medmad"  # medmad (R9.4.1), quantile (dorado), pa (fixed mean/stdev), none
    quantile_a: float = 0.2  # quantile: lower quantile of the shift/scale estimate
    quantile_b: float = 0.9  # quantile: upper quantile
    shift_multiplier: float = 0.51  # quantile: shift = m * (qa + qb)
    scale_multiplier: float = 0.53  # quantile: scale = m * (qb - qa)
    mean: float = 0.0  # pa: fixed pA mean subtracted
    stdev: float = 1.0  # pa: fixed pA stdev divided by
    trim: bool = True  # drop the open-pore/adapter start (bonito's trim rule)

    def __post_init__(self) -> None:
        if self.strategy not in NORMALISATION_STRATEGIES:
            raise EdgecallError(
                f"unknown normalisation strategy '{self.strategy}' "
                f"(known: {', '.join(NORMALISATION_STRATEGIES)})"
            )


@dataclass(frozen=True)
class EncoderConfig:
    """The network as the ordered list of layers ONT's serial configs name.

    ``architecture`` says which module family builds it: ``bonito-lstm``
    (Bonito CRF encoders: R9.4.1 rnn encoders, v4 serial models, shrunk models)
    or ``deepnano-blitz`` (GRU, CTC).
    """

    sublayers: tuple[Layer, ...] = field(default_factory=rnn_encoder)
    architecture: str = "bonito-lstm"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise EdgecallError(f"unknown architecture '{self.architecture}'")
        check_chain(self.sublayers, 2 if self.architecture == "deepnano-blitz" else 1)
        if not self.recurrent:
            raise EdgecallError("the encoder has no recurrent layer")
        if len({layer.kind for layer in self.recurrent}) > 1:
            raise EdgecallError("the encoder mixes LSTM and GRU layers")

    @property
    def stride(self) -> int:
        return total_stride(self.sublayers)

    @property
    def recurrent(self) -> tuple[Recurrent, ...]:
        return tuple(layer for layer in self.sublayers if isinstance(layer, Recurrent))

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(layer.size for layer in self.recurrent)

    @property
    def features(self) -> int:
        """Input width of the first recurrent layer."""
        return self.recurrent[0].insize

    @property
    def rnn_type(self) -> str:
        return self.recurrent[0].kind

    @property
    def head_index(self) -> int | None:
        """Position of the CRF head (the last weighted layer; a clamp may follow it)."""
        last = len(self.sublayers) - 1
        if isinstance(self.sublayers[last], Clamp) and last > 0:
            last -= 1
        return last if isinstance(self.sublayers[last], CRFHead) else None

    @property
    def head(self) -> CRFHead | None:
        index = self.head_index
        return None if index is None else self.sublayers[index]  # type: ignore[return-value]

    @property
    def output_width(self) -> int:
        for layer in reversed(self.sublayers):
            size = output_size(layer)
            if size is not None:
                return size
        raise EdgecallError("the encoder has no weighted layer")  # pragma: no cover - check_chain refuses

    def with_hidden_sizes(self, sizes: tuple[int, ...]) -> "EncoderConfig":
        """Shrunk (or grown) recurrent layers; the layers that consume them follow."""
        return dataclasses.replace(self, sublayers=with_recurrent_sizes(self.sublayers, tuple(sizes)))


def rnn_encoder_config(*, state_len: int = 4, blank_score: float | None = 2.0, **sizes: Any) -> EncoderConfig:
    """An R9.4.1-style Bonito rnn encoder (see :func:`edgecall.layers.rnn_encoder` for ``sizes``)."""
    return EncoderConfig(rnn_encoder(state_len=state_len, blank_score=blank_score, **sizes))


@dataclass(frozen=True)
class DecoderConfig:
    """How the network's output becomes bases and qualities (the CRF's shape is the encoder head's)."""

    kind: str = "crf"  # crf: transition scores (T, N, C); ctc: label posteriors (T, N, labels)
    beam_width: int = 32  # beam search width
    beam_cut: float = 100.0  # crf: log-score cut below the best; ctc: probability cut
    qscale: float = 1.0  # Q = qscale * raw_q + qbias
    qbias: float = 0.0
    labels: tuple[str, ...] = ("N", "A", "C", "G", "T")  # output alphabet, blank first
    reverse: bool = False  # ctc: decode over time-reversed posteriors (DeepNano-blitz)

    def __post_init__(self) -> None:
        if self.kind not in DECODER_KINDS:
            raise EdgecallError(f"unknown decoder kind '{self.kind}' (known: crf, ctc)")


@dataclass(frozen=True)
class BasecallerConfig:
    """Default chunking; the runtime may override chunksize/overlap/batchsize."""

    chunksize: int = 4000  # samples per chunk
    overlap: int = 500  # samples shared by neighbouring chunks
    batchsize: int = 64  # chunks per inference call


class TransformerModelError(EdgecallError):
    """ONT's transformer (sup v5) models: too large for the edge, refused with the alternative."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything the runtime needs to know about a model package."""

    name: str = "model"  # short model name, used in the FASTQ RG tag
    chemistry: str = "dna_r9.4.1_e8"  # flow cell / kit family the model was trained for
    sample_rate: int = 4000  # Hz; reads at another rate are refused
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    basecaller: BasecallerConfig = field(default_factory=BasecallerConfig)
    normalisation: NormalisationConfig = field(default_factory=NormalisationConfig)
    tier: str | None = None  # fast | hac | sup, when known (ONT names, package metadata)
    resample_from: tuple[int, ...] = ()  # other read sample rates the model calls after resampling (4 kHz R10.4.1 reads)

    @property
    def stride(self) -> int:
        return self.encoder.stride

    @property
    def num_outputs(self) -> int:
        return self.encoder.output_width

    @property
    def state_len(self) -> int:
        head = self.encoder.head
        if head is None:
            raise EdgecallError(f"{self.name}: not a CRF model")
        return head.state_len

    @property
    def blank_score(self) -> float | None:
        """The fixed stay score; None when the head learns stay scores."""
        head = self.encoder.head
        if head is None:
            raise EdgecallError(f"{self.name}: not a CRF model")
        return head.blank_score

    def with_state_len(self, state_len: int) -> "ModelConfig":
        """The same model with a CRF head of another state length."""
        head = self.encoder.head
        if head is None:
            raise EdgecallError(f"{self.name}: not a CRF model")
        layers = tuple(dataclasses.replace(x, state_len=state_len) if x is head else x for x in self.encoder.sublayers)
        return self.replace(encoder=dataclasses.replace(self.encoder, sublayers=layers))

    def frames(self, samples: int) -> int:
        """Output frames for an input of ``samples`` (must be stride-aligned)."""
        return exact_div(samples, self.stride, "samples per chunk vs model stride")

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # ---- TOML -----------------------------------------------------------------

    def to_toml(self) -> dict[str, Any]:
        enc, dec, bc, norm = self.encoder, self.decoder, self.basecaller, self.normalisation
        head = enc.head
        doc: dict[str, Any] = {
            "model": {"package": "bonito.crf" if dec.kind == "crf" else "bonito.ctc"},
            "labels": {"labels": list(dec.labels)},
            "input": {"features": 1},
            "encoder": {"type": "serial", "sublayers": [layer_to_dict(x) for x in enc.sublayers]},
            "qscore": {"scale": dec.qscale, "bias": dec.qbias},
            "basecaller": {"chunksize": bc.chunksize, "overlap": bc.overlap, "batchsize": bc.batchsize},
            "run_info": {"sample_rate": self.sample_rate},
            "scaling": {"strategy": norm.strategy},
            "edgecall": {
                "format_version": FORMAT_VERSION,
                "name": self.name,
                "chemistry": self.chemistry,
                "architecture": enc.architecture,
                "decoder": dec.kind,
                "beam_width": dec.beam_width,
                "beam_cut": dec.beam_cut,
                "reverse": dec.reverse,
                "trim": norm.trim,
            },
        }
        if head is not None:
            doc["global_norm"] = {"state_len": head.state_len}
        if self.tier is not None:
            doc["edgecall"]["tier"] = self.tier
        if self.resample_from:
            doc["edgecall"]["resample_from"] = list(self.resample_from)
        if norm.strategy == "quantile":
            doc["normalisation"] = {
                "quantile_a": norm.quantile_a,
                "quantile_b": norm.quantile_b,
                "shift_multiplier": norm.shift_multiplier,
                "scale_multiplier": norm.scale_multiplier,
            }
        if norm.strategy == "pa":
            doc["standardisation"] = {"standardise": 1, "mean": norm.mean, "stdev": norm.stdev}
        return doc

    @classmethod
    def from_toml(cls, doc: dict[str, Any], source: str = "config") -> "ModelConfig":
        """Build from an edgecall config (format 1 or 2), a Bonito rnn-encoder or an ONT serial config."""
        try:
            return _from_toml(doc)
        except TransformerModelError as exc:
            raise TransformerModelError(f"{source}: {exc}") from None
        except EdgecallError as exc:
            raise EdgecallError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgecallError(f"{source}: not a valid model config ({type(exc).__name__}: {exc})") from None

    def save(self, path: Path) -> None:
        path.write_text("# edgecall model config (bonito-compatible sections + [edgecall])\n" + tomli_w.dumps(self.to_toml()))

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        return cls.from_toml(read_toml(path), str(path))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise EdgecallError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EdgecallError(f"{path}: not a TOML file ({exc})") from None


def _refuse_unsupported(doc: dict[str, Any]) -> None:
    """Transformer and modified-base configs get one line saying what to use instead."""
    model = doc.get("model", {})
    text = repr(model) + repr(doc.get("encoder", {}))
    if model.get("type") == "seqdistmodel" or "transformer" in str(model.get("package", "")) or any(
        f"'{t}'" in text for t in TRANSFORMER_TYPES
    ):
        raise TransformerModelError(
            "a transformer model (ONT's sup v5 family): transformer encoders are not supported on the edge "
            "(too slow on CPUs); use the hac or fast model of the same chemistry, e.g. "
            "dna_r10.4.1_e8.2_400bps_hac@v5.0.0"
        )
    if "modbase" in doc or ("encoder" not in doc and "model" not in doc):
        raise EdgecallError("a modified-base (remora) model, not a basecall model; give the basecall model's folder")


def _from_toml(doc: dict[str, Any]) -> ModelConfig:
    _refuse_unsupported(doc)
    ec = doc.get("edgecall", {})
    version = int(ec.get("format_version", FORMAT_VERSION))
    if version > FORMAT_VERSION:
        raise EdgecallError(
            f"model format version {version} is newer than this edgecall understands ({FORMAT_VERSION}): upgrade edgecall"
        )
    enc_doc = doc.get("encoder", {})
    serial = enc_doc.get("type") == "serial" or "sublayers" in enc_doc
    kind = ec.get("decoder", "ctc" if doc.get("model", {}).get("package") == "bonito.ctc" else "crf")
    architecture = str(ec.get("architecture", "bonito-lstm"))
    if serial:
        sublayers = tuple(layer_from_dict(x, i) for i, x in enumerate(enc_doc.get("sublayers", [])))
    else:
        sublayers = _rnn_encoder_layers(doc, ec, architecture)
    encoder = EncoderConfig(sublayers=sublayers, architecture=architecture)
    head = encoder.head
    if kind == "crf" and head is None:
        raise EdgecallError("a CRF model config whose encoder has no CRF head (linearcrfencoder)")
    global_len = doc.get("global_norm", {}).get("state_len")
    if head is not None and global_len is not None and int(global_len) != head.state_len:
        raise EdgecallError(f"[global_norm] state_len {global_len} differs from the CRF head's {head.state_len}")
    qscore = doc.get("qscore", {})
    decoder = DecoderConfig(
        kind=kind,
        beam_width=int(ec.get("beam_width", 32)),
        beam_cut=float(ec.get("beam_cut", 100.0)),
        qscale=float(qscore.get("scale", 1.0)),
        qbias=float(qscore.get("bias", 0.0)),
        labels=tuple(doc.get("labels", {}).get("labels", ["N", "A", "C", "G", "T"])),
        reverse=bool(ec.get("reverse", False)),
    )
    bc_doc = doc.get("basecaller", {})
    chunksize, overlap = int(bc_doc.get("chunksize", 4000)), int(bc_doc.get("overlap", 500))
    if serial and not ec:  # ONT's own configs: chunks rounded to the stride, as Dorado does
        stride = encoder.stride
        chunksize, overlap = chunksize // stride * stride, overlap // stride * stride
    basecaller = BasecallerConfig(chunksize=chunksize, overlap=overlap, batchsize=int(bc_doc.get("batchsize", 64)))
    normalisation = _normalisation_from_toml(doc, trim=bool(ec.get("trim", True)), default="quantile" if serial else "medmad")
    tier = ec.get("tier")
    config = ModelConfig(
        name=str(ec.get("name", "model")),
        chemistry=str(ec.get("chemistry", "dna_r9.4.1_e8")),
        sample_rate=int(doc.get("run_info", {}).get("sample_rate", 4000)),
        encoder=encoder,
        decoder=decoder,
        basecaller=basecaller,
        normalisation=normalisation,
        tier=None if tier is None else str(tier),
        resample_from=tuple(int(r) for r in ec.get("resample_from", ())),
    )
    validate_chunking(config, basecaller.chunksize, basecaller.overlap)
    return config


def _rnn_encoder_layers(doc: dict[str, Any], ec: dict[str, Any], architecture: str) -> tuple[Layer, ...]:
    """Format-1 edgecall packages and Bonito's old ``[encoder]`` fields, as a layer list."""
    enc = doc.get("encoder", {})
    features = int(enc.get("features", 384))
    hidden = tuple(int(h) for h in ec.get("layers", [features] * 5))
    winlen = int(enc.get("winlen", 19))
    channels = tuple(int(c) for c in ec.get("conv_channels", [4, 16, features]))
    winlens = tuple(int(w) for w in ec.get("conv_winlens", [5, 5, winlen]))
    if architecture == "deepnano-blitz":
        from edgecall.layers import deepnano_layers

        return deepnano_layers(channels[-1], winlens[-1], int(enc.get("stride", 3)), hidden)
    blank = enc.get("blank_score", 2.0)
    return rnn_encoder(
        conv_channels=channels, conv_winlens=winlens, stride=int(enc.get("stride", 5)),
        activation=str(enc.get("activation", "swish")), hidden_sizes=hidden, rnn_type=str(enc.get("rnn_type", "lstm")),
        first_reversed=bool(ec.get("first_reversed", True)),
        state_len=int(doc.get("global_norm", {}).get("state_len", 4)),
        scale=float(enc.get("scale", 5.0)), blank_score=None if blank is None else float(blank),
    )


def _normalisation_from_toml(doc: dict[str, Any], trim: bool, default: str = "medmad") -> NormalisationConfig:
    strategy = doc.get("scaling", {}).get("strategy")
    quant = doc.get("normalisation", {})
    std = doc.get("standardisation", {})
    if strategy is None:
        strategy = "quantile" if quant else default
    if strategy == "pa" and not std.get("standardise", 0):
        strategy = "none"
    defaults = NormalisationConfig()
    return NormalisationConfig(
        strategy=strategy,
        quantile_a=float(quant.get("quantile_a", defaults.quantile_a)),
        quantile_b=float(quant.get("quantile_b", defaults.quantile_b)),
        shift_multiplier=float(quant.get("shift_multiplier", defaults.shift_multiplier)),
        scale_multiplier=float(quant.get("scale_multiplier", defaults.scale_multiplier)),
        mean=float(std.get("mean", 0.0)),
        stdev=float(std.get("stdev", 1.0)),
        trim=trim,
    )


def validate_chunking(config: ModelConfig, chunksize: int, overlap: int) -> None:
    """Chunks must be stride-aligned and overlap less than a chunk."""
    exact_div(chunksize, config.stride, "chunksize vs model stride")
    exact_div(overlap, config.stride, "overlap vs model stride")
    if not 0 <= overlap < chunksize:
        raise EdgecallError(f"overlap {overlap} must be at least 0 and less than chunksize {chunksize}")
