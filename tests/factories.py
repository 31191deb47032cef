"""Build small checkpoints in third-party layouts for tests (no downloads)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

PAPER_KEPT = (111, 48, 55, 179, 229)  # BCB'24 Table 1, lambda = 6e-7


def efficient_basecallers_state(
    kept: Sequence[int], hidden: int = 384, features: int = 384, state_len: int = 4, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A ``model_state`` as the seed paper's code saves it, with ``kept`` neurons on per layer."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape, s=1.0: torch.randn(*shape, generator=g) * s  # noqa: E731
    st: dict[str, torch.Tensor] = {
        "convolution.0.weight": rnd(4, 1, 5, s=0.3), "convolution.0.bias": rnd(4, s=0.1),
        "convolution.2.weight": rnd(16, 4, 5, s=0.3), "convolution.2.bias": rnd(16, s=0.1),
        "convolution.4.weight": rnd(features, 16, 19, s=0.1), "convolution.4.bias": rnd(features, s=0.1),
    }
    insize = features
    for i, k in enumerate(kept):
        st[f"encoder.{i}.lstm.W"] = rnd(4 * hidden, insize, s=1 / math.sqrt(hidden))
        st[f"encoder.{i}.lstm.U"] = rnd(4 * hidden, hidden, s=1 / math.sqrt(hidden))
        st[f"encoder.{i}.lstm.b"] = rnd(4 * hidden, s=0.1)
        log_alpha = torch.full((hidden,), -3.0) + rnd(hidden, s=0.5).clamp(-1, 1)  # off: below -ln 2
        on = torch.randperm(hidden, generator=g)[:k]
        log_alpha[on] = 1.0 + rnd(k, s=0.1)
        st[f"encoder.{i}.lstm.log_alpha_s"] = log_alpha
        st[f"encoder.{i}.inference_lstm.weight_ih_l0"] = rnd(4 * max(k, 1), insize)  # stale cache, ignored
        insize = hidden
    outputs = 4 ** (state_len + 1)
    st["decoder.linear.weight"] = rnd(outputs, hidden, s=1 / math.sqrt(hidden))
    st["decoder.linear.bias"] = rnd(outputs, s=0.1)
    return st


def write_efficient_basecallers(path: Path, kept: Sequence[int], **kw) -> Path:
    torch.save({"model_state": efficient_basecallers_state(kept, **kw), "epoch": 1}, path)
    return path


def write_tiny_ont_folder(folder, shared_data, config_name: str, width: int | None = 16, seed: int = 0, kind: str = "dorado",
                          learned_stays: bool = False):
    """An ONT model folder named like ``config_name`` whose config is that one with every
    layer ``width`` wide (the 128 bottleneck ``width // 2``): all of its layer types and
    chunking, a fraction of its cost (``width`` None: the config's own sizes;
    ``learned_stays``: the CRF head without its fixed blank_score, Bonito's 5·4^L outputs). Built and written by Bonito's own code; random
    weights and batchnorm statistics (mechanics only)."""
    import copy

    import toml
    import torch
    from bonito_reference import bonito_export, bonito_nn

    from edgecall.config import read_toml

    source = Path(shared_data) / "configs" / "dorado_tests" / config_name / "config.toml"
    doc = read_toml(source)
    full = max(int(s.get("size", 0)) for s in doc["encoder"]["sublayers"] if s["type"] == "lstm")
    resize = {full: width, 128: width // 2} if width is not None else {}
    for layer in doc["encoder"]["sublayers"]:
        for key in ("size", "insize", "in_features", "out_features"):
            if key in layer and layer[key] in resize and not (layer["type"] == "convolution" and key == "insize" and layer[key] == 1):
                layer[key] = resize[layer[key]]
    if learned_stays:
        for layer in doc["encoder"]["sublayers"]:
            layer.pop("blank_score", None) if layer["type"] == "linearcrfencoder" else None
    nn = bonito_nn()
    torch.manual_seed(seed)
    encoder = nn.from_dict(copy.deepcopy(doc["encoder"]))
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    encoder.eval()
    folder = Path(folder)
    if kind == "bonito":
        folder.mkdir(parents=True)
        (folder / "config.toml").write_text(toml.dumps(doc))
        torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, folder / "weights_1.tar")
    else:
        class Holder(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

        bonito_export().export_to_dorado(Holder().apply(nn.fuse_bn_), doc, folder)
    return folder
