"""Whether a package may run in bf16/f16 on this CPU: its reduced-precision calls against its f32 calls.

The CPU IR is the same; only OpenVINO's inference precision changes. On chunks of
real reads of the model's chemistry, both precisions run as ``edgecall run`` runs
them and their calls are decoded alike; the agreement (1 - edit distance / f32
bases) is recorded in the package's provenance, and ``run --precision bf16`` is
refused unless it reached MIN_AGREEMENT (issue 19: 99.5% of bases identical).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from edgecall.devices.precision import cpu_name, native_precisions, why_not_native
from edgecall.edit_distance import edit_distance
from edgecall.errors import EdgecallError
from edgecall.export.quantize import _calls, calibration_chunks, runtime_scores
from edgecall.package import PROVENANCE_NAME, load_package
from edgecall.runtime.read import Read, ReadFailure

MIN_AGREEMENT = 0.995
CHECK_CHUNKS = 64


def check_precision(package_dir: Path, precision: str, reads: Iterable[Read | ReadFailure], source: str,
                    *, chunks: int = CHECK_CHUNKS, min_agreement: float = MIN_AGREEMENT) -> dict:
    """Measure and record; returns the record (``passed`` says whether run will offer the precision)."""
    if precision not in native_precisions():
        raise EdgecallError(f"--check-precision {precision}: {why_not_native(precision)}")
    package = load_package(package_dir)
    data = calibration_chunks(reads, package.config, limit=chunks)
    f32 = _calls(package.config, runtime_scores(package, data))
    low = _calls(package.config, runtime_scores(package, data, precision=precision))
    distance = sum(edit_distance(a, b) for a, b in zip(f32, low))
    agreement = 1.0 - distance / max(1, sum(len(a) for a in f32))
    record = {"agreement": round(agreement, 6), "min_agreement": min_agreement, "passed": agreement >= min_agreement,
              "chunks": int(data.shape[0]), "reads": source, "cpu": cpu_name()}
    path = Path(package_dir) / PROVENANCE_NAME
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc.setdefault("precision_checks", {})[precision] = record
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return record
