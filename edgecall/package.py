"""Model packages: a directory the runtime loads without torch.

Layout::

    <package>/config.toml          ModelConfig (bonito-compatible + [edgecall])
    <package>/model.onnx           network: (N, 1, T) float32 -> (T/stride, N, C) float32
    <package>/openvino/<TARGET>/model.xml/.bin   IR per compile target (optional)
    <package>/weights.npz          state dict as plain arrays (PyTorch reference backend)
    <package>/provenance.json      where it came from, sizes, FLOPs (optional)
    <package>/MODEL_CARD.md, LICENSE  (optional)

No pickle anywhere: loading a package never executes code from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError

BUNDLED_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "edgecall-r941-v2"
CONFIG_NAME = "config.toml"
ONNX_NAME = "model.onnx"
PROVENANCE_NAME = "provenance.json"
WEIGHTS_NAME = "weights.npz"  # plain arrays for the PyTorch reference backend


@dataclass(frozen=True)
class ModelPackage:
    path: Path  # the package directory
    config: ModelConfig  # parsed config.toml

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_NAME

    def openvino_ir(self, target: str) -> Path | None:
        """The IR compiled for ``target`` if the package has one."""
        xml = self.path / "openvino" / target.upper() / "model.xml"
        return xml if xml.is_file() else None

    def weights(self) -> dict[str, np.ndarray]:
        """The state dict as arrays, read without pickle."""
        path = self.path / WEIGHTS_NAME
        if not path.is_file():
            raise EdgecallError(f"{self.path}: package has no {WEIGHTS_NAME} (needed by the torch backend)")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}

    @property
    def provenance(self) -> dict[str, Any]:
        p = self.path / PROVENANCE_NAME
        return json.loads(p.read_text()) if p.is_file() else {}


def bundled_models() -> list[str]:
    """Names of the model packages shipped inside edgecall."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def is_package(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def load_package(model: str | Path | None = None) -> ModelPackage:
    """Load a package by directory path or bundled name (None: the default)."""
    name = str(model) if model is not None else DEFAULT_MODEL
    path = Path(name)
    if not path.exists() and (BUNDLED_DIR / name).is_dir():
        path = BUNDLED_DIR / name
    if not path.exists():
        known = ", ".join(bundled_models()) or "none"
        raise EdgecallError(f"model '{name}': no such package directory or bundled model (bundled: {known})")
    if not is_package(path):
        raise EdgecallError(
            f"{path}: not an edgecall model package (no {CONFIG_NAME}); "
            "make one with 'edgecall compile CHECKPOINT'"
        )
    config = ModelConfig.load(path / CONFIG_NAME)
    package = ModelPackage(path=path, config=config)
    if not package.onnx_path.is_file():
        raise EdgecallError(f"{path}: model package has no {ONNX_NAME}")
    return package
