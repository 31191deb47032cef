"""Write a dense edgecall checkpoint as a Dorado model folder, with Bonito's own exporter.

A stand-in for ONT's released weights where they cannot be downloaded: a model
trained by ``edgecall train --config ONT_CONFIG`` (batchnorm trained folded into
its convolutions) goes into Bonito's network for that config with identity
batchnorm, and ``bonito export``'s ``export_to_dorado`` writes the folder, as
ONT's are made. The folder is then read back by edgecall's loader and must
compute what the checkpoint computes. Needs ``ont-bonito`` (installed
``--no-deps``, the tests' reference; edgecall itself never imports it).

    python tools/write_dorado_folder.py CHECKPOINT ONT_CONFIG OUT_FOLDER
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bonito_reference import bonito_export, bonito_nn  # noqa: E402

from edgecall.config import read_toml  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.shrink import shrink  # noqa: E402
from edgecall.model.checkpoint import BATCHNORM_EPS, load_checkpoint  # noqa: E402
from edgecall.model.crf import build_model  # noqa: E402


class _Holder(torch.nn.Module):  # export_to_dorado reads model.encoder
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder


def bonito_encoder(state: dict[str, torch.Tensor], doc: dict) -> torch.nn.Module:
    """Bonito's encoder for ``doc`` holding ``state`` (edgecall's keys are Bonito's, batchnorm folded)."""
    encoder = bonito_nn().from_dict(doc["encoder"])
    target = encoder.state_dict()
    given = {key.removeprefix("encoder."): value for key, value in state.items()}
    norm = {k for k in target if ".norm." in k}
    if set(given) != set(target) - norm:
        raise EdgecallError(f"the checkpoint's tensors {sorted(set(given) ^ (set(target) - norm))} do not fit the config")
    for key, value in given.items():
        if tuple(target[key].shape) != tuple(value.shape):
            raise EdgecallError(f"{key}: {tuple(value.shape)} in the checkpoint, {tuple(target[key].shape)} in the config")
    for key in norm:  # identity batchnorm: folding it changes nothing
        name = key.rsplit(".", 1)[1]
        fill = {"running_mean": 0.0, "running_var": 1.0 - BATCHNORM_EPS, "weight": 1.0, "bias": 0.0}.get(name)
        given[key] = target[key] if fill is None else torch.full_like(target[key], fill)
    encoder.load_state_dict(given)
    return encoder.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("ont_config", type=Path, help="the ONT config.toml the checkpoint was trained from")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint)
        shrunk = shrink(ckpt) if ckpt.log_alpha is not None else None
        if shrunk is not None and shrunk.kept != shrunk.original:
            raise EdgecallError(f"{args.checkpoint}: masks drop neurons ({shrunk.kept} of {shrunk.original}); "
                                "an ONT stand-in is dense")
        state = shrunk.state if shrunk is not None else ckpt.state
        doc = read_toml(args.ont_config)
        if args.out.exists():
            raise EdgecallError(f"{args.out}: exists")
        nn = bonito_nn()
        bonito_export().export_to_dorado(_Holder(bonito_encoder(state, doc)).apply(nn.fuse_bn_), doc, args.out)
        back = load_checkpoint(args.out)
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 3000)).astype(np.float32))
        with torch.no_grad():
            want, got = build_model(ckpt.config, state)(x), build_model(back.config, back.state)(x)
        error = float((want - got).abs().max())
        if error > 1e-5:
            raise EdgecallError(f"{args.out}: computes scores {error:.2g} away from {args.checkpoint}")
        print(f"{args.out}: Dorado folder of {args.checkpoint} ({len(list(args.out.glob('*.tensor')))} tensors; "
              f"read back by edgecall: scores within {error:.1e})", file=sys.stderr)
    except EdgecallError as exc:
        print(f"write_dorado_folder: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
