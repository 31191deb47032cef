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

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMAT_VERSION = 1
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
    """The network shape: enough to rebuild the PyTorch model and count FLOPs."""

    architecture: str = "bonito-lstm"  # bonito-lstm (CRF "rnn encoder") or deepnano-blitz (GRU, CTC)
    conv_channels: tuple[int, ...] = (4, 16, 384)  # output channels of each convolution
    conv_winlens: tuple[int, ...] = (5, 5, 19)  # kernel size of each convolution
    stride: int = 5  # total downsampling, samples per output frame
    activation: str = "swish"  # convolution activation
    rnn_type: str = "lstm"  # lstm or gru
    layers: tuple[int, ...] = (384, 384, 384, 384, 384)  # hidden size per recurrent layer
    first_reversed: bool = True  # layer 0 runs reversed in time, then directions alternate
    scale: float = 5.0  # CRF head: tanh(x) * scale

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise EdgecallError(f"unknown architecture '{self.architecture}'")
        if not self.layers or any(int(h) < 1 for h in self.layers):
            raise EdgecallError(f"every recurrent layer needs at least one neuron, got {list(self.layers)}")
        if len(self.conv_channels) != len(self.conv_winlens):
            raise EdgecallError("conv_channels and conv_winlens differ in length")

    @property
    def features(self) -> int:
        """Width of the last convolution, the first recurrent layer's input."""
        return self.conv_channels[-1]

    def layer_reversed(self, index: int) -> bool:
        return self.first_reversed == (index % 2 == 0)


@dataclass(frozen=True)
class DecoderConfig:
    """What the network outputs and how it becomes bases and qualities."""

    kind: str = "crf"  # crf: transition scores (T, N, 4^(state_len+1)); ctc: label posteriors (T, N, labels)
    state_len: int = 4  # crf: k-mer length of a state
    blank_score: float = 2.0  # crf: fixed score of a "stay" transition
    beam_width: int = 32  # beam search width
    beam_cut: float = 100.0  # crf: log-score cut below the best; ctc: probability cut
    qscale: float = 1.0  # Q = qscale * raw_q + qbias
    qbias: float = 0.0
    labels: tuple[str, ...] = ("N", "A", "C", "G", "T")  # output alphabet, blank first
    reverse: bool = False  # ctc: decode over time-reversed posteriors (DeepNano-blitz)

    def __post_init__(self) -> None:
        if self.kind not in DECODER_KINDS:
            raise EdgecallError(f"unknown decoder kind '{self.kind}' (known: crf, ctc)")

    @property
    def num_outputs(self) -> int:
        if self.kind == "crf":
            return 4 ** (self.state_len + 1)
        return len(self.labels)


@dataclass(frozen=True)
class BasecallerConfig:
    """Default chunking; the runtime may override chunksize/overlap/batchsize."""

    chunksize: int = 4000  # samples per chunk
    overlap: int = 500  # samples shared by neighbouring chunks
    batchsize: int = 64  # chunks per inference call


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

    @property
    def stride(self) -> int:
        return self.encoder.stride

    @property
    def num_outputs(self) -> int:
        return self.decoder.num_outputs

    def frames(self, samples: int) -> int:
        """Output frames for an input of ``samples`` (must be stride-aligned)."""
        return exact_div(samples, self.stride, "samples per chunk vs model stride")

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # ---- TOML -----------------------------------------------------------------

    def to_toml(self) -> dict[str, Any]:
        enc, dec, bc, norm = self.encoder, self.decoder, self.basecaller, self.normalisation
        doc: dict[str, Any] = {
            "model": {"package": "bonito.crf" if dec.kind == "crf" else "bonito.ctc"},
            "labels": {"labels": list(dec.labels)},
            "input": {"features": 1},
            "global_norm": {"state_len": dec.state_len},
            "encoder": {
                "features": enc.features,
                "winlen": enc.conv_winlens[-1],
                "stride": enc.stride,
                "scale": enc.scale,
                "blank_score": dec.blank_score,
                "activation": enc.activation,
                "rnn_type": enc.rnn_type,
            },
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
                "layers": list(enc.layers),
                "conv_channels": list(enc.conv_channels),
                "conv_winlens": list(enc.conv_winlens),
                "first_reversed": enc.first_reversed,
                "beam_width": dec.beam_width,
                "beam_cut": dec.beam_cut,
                "reverse": dec.reverse,
                "trim": norm.trim,
            },
        }
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
        """Build from an edgecall or a bonito (old "rnn encoder" style) config."""
        try:
            return _from_toml(doc)
        except EdgecallError as exc:
            raise EdgecallError(f"{source}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgecallError(f"{source}: not a valid model config ({type(exc).__name__}: {exc})") from None

    def save(self, path: Path) -> None:
        path.write_text("# edgecall model config (bonito-compatible sections + [edgecall])\n" + tomli_w.dumps(self.to_toml()))

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        try:
            doc = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise EdgecallError(f"{path}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EdgecallError(f"{path}: not a TOML file ({exc})") from None
        return cls.from_toml(doc, str(path))


def _from_toml(doc: dict[str, Any]) -> ModelConfig:
    ec = doc.get("edgecall", {})
    if ec.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise EdgecallError(
            f"model format version {ec['format_version']} is newer than this edgecall "
            f"understands ({FORMAT_VERSION}): upgrade edgecall"
        )
    enc_doc = doc.get("encoder", {})
    if enc_doc.get("type") == "serial" or "sublayers" in enc_doc:
        raise EdgecallError("serial (sublayer) encoder configs are not supported; use an R9.4.1 rnn-encoder model")
    features = int(enc_doc.get("features", 384))
    kind = ec.get("decoder", "ctc" if doc.get("model", {}).get("package") == "bonito.ctc" else "crf")
    state_len = int(doc.get("global_norm", {}).get("state_len", 4))
    n_layers = 5
    layers = tuple(int(h) for h in ec.get("layers", [features] * n_layers))
    winlen = int(enc_doc.get("winlen", 19))
    encoder = EncoderConfig(
        architecture=ec.get("architecture", "bonito-lstm"),
        conv_channels=tuple(int(c) for c in ec.get("conv_channels", [4, 16, features])),
        conv_winlens=tuple(int(w) for w in ec.get("conv_winlens", [5, 5, winlen])),
        stride=int(enc_doc.get("stride", 5)),
        activation=str(enc_doc.get("activation", "swish")),
        rnn_type=str(enc_doc.get("rnn_type", "lstm")),
        layers=layers,
        first_reversed=bool(ec.get("first_reversed", True)),
        scale=float(enc_doc.get("scale", 5.0)),
    )
    qscore = doc.get("qscore", {})
    decoder = DecoderConfig(
        kind=kind,
        state_len=state_len,
        blank_score=float(enc_doc.get("blank_score", 2.0)),
        beam_width=int(ec.get("beam_width", 32)),
        beam_cut=float(ec.get("beam_cut", 100.0)),
        qscale=float(qscore.get("scale", 1.0)),
        qbias=float(qscore.get("bias", 0.0)),
        labels=tuple(doc.get("labels", {}).get("labels", ["N", "A", "C", "G", "T"])),
        reverse=bool(ec.get("reverse", False)),
    )
    bc_doc = doc.get("basecaller", {})
    basecaller = BasecallerConfig(
        chunksize=int(bc_doc.get("chunksize", 4000)),
        overlap=int(bc_doc.get("overlap", 500)),
        batchsize=int(bc_doc.get("batchsize", 64)),
    )
    normalisation = _normalisation_from_toml(doc, trim=bool(ec.get("trim", True)))
    config = ModelConfig(
        name=str(ec.get("name", "model")),
        chemistry=str(ec.get("chemistry", "dna_r9.4.1_e8")),
        sample_rate=int(doc.get("run_info", {}).get("sample_rate", 4000)),
        encoder=encoder,
        decoder=decoder,
        basecaller=basecaller,
        normalisation=normalisation,
    )
    validate_chunking(config, basecaller.chunksize, basecaller.overlap)
    return config


def _normalisation_from_toml(doc: dict[str, Any], trim: bool) -> NormalisationConfig:
    strategy = doc.get("scaling", {}).get("strategy")
    quant = doc.get("normalisation", {})
    std = doc.get("standardisation", {})
    if strategy is None:
        strategy = "quantile" if quant else "medmad"
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
