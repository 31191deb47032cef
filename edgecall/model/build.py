"""Rebuild the torch module of any packaged architecture from plain arrays."""

from __future__ import annotations

import numpy as np
import torch

from edgecall.config import ModelConfig


def model_from_arrays(config: ModelConfig, arrays: dict[str, np.ndarray]) -> torch.nn.Module:
    if config.encoder.architecture == "deepnano-blitz":
        from edgecall.model.deepnano import build_module

        return build_module(config, arrays)
    from edgecall.model.crf import build_model

    return build_model(config, {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
