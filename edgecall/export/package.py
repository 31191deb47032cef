"""Write a model package directory (see :mod:`edgecall.package` for the layout)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgecall.config import ModelConfig
from edgecall.export.openvino_ir import IrResult, check_target, write_ir
from edgecall.package import CONFIG_NAME, ONNX_NAME, PROVENANCE_NAME, WEIGHTS_NAME


@dataclass(frozen=True)
class PackageResult:
    path: Path  # package directory
    irs: tuple[IrResult, ...]  # one per target


def write_package(
    out_dir: Path,
    config: ModelConfig,
    onnx_file: Path,
    *,
    targets: Sequence[str] = ("CPU",),
    weights: Mapping[str, np.ndarray] | None = None,
    provenance: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str] | None = None,
    myriad_batch: int | None = None,
) -> PackageResult:
    """Assemble ``out_dir`` from an exported ONNX file and its config.

    ``weights`` are the (shrunk) state dict as plain arrays, stored without
    pickle; ``extra_files`` are text files such as LICENSE or MODEL_CARD.md.
    """
    targets = [check_target(t) for t in targets]
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save(out_dir / CONFIG_NAME)
    onnx_dest = out_dir / ONNX_NAME
    if onnx_file.resolve() != onnx_dest.resolve():
        shutil.copyfile(onnx_file, onnx_dest)
    if weights is not None:
        np.savez(out_dir / WEIGHTS_NAME, **{k: np.ascontiguousarray(v) for k, v in weights.items()})
    if provenance is not None:
        (out_dir / PROVENANCE_NAME).write_text(json.dumps(dict(provenance), indent=2, sort_keys=True) + "\n")
    for name, text in (extra_files or {}).items():
        (out_dir / name).write_text(text)
    batch = myriad_batch or config.basecaller.batchsize
    irs = tuple(
        write_ir(onnx_dest, out_dir, t, batch=batch, chunksize=config.basecaller.chunksize) for t in targets
    )
    return PackageResult(out_dir, irs)
