"""The bundled default model calls the README's example reads, accurately, and documents itself."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fastq_records import parse

from edgecall.package import DEFAULT_MODEL, load_package

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "lambda_10reads.pod5"


@pytest.fixture(scope="module")
def example_calls() -> list:
    """The README's quick-start command, run as written (default model, default device)."""
    result = subprocess.run(
        [sys.executable, "-m", "edgecall", "run", str(EXAMPLE)], capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


def test_example_reads_are_all_called_by_the_default_model(example_calls: list) -> None:
    assert len(example_calls) == 10 and len({r.read_id for r in example_calls}) == 10
    assert all(r.tags["RG"].endswith(f"_{DEFAULT_MODEL}") for r in example_calls)
    assert all(r.sequence for r in example_calls) and sum(len(r.sequence) for r in example_calls) > 100_000
    qscores = [float(r.tags["qs"].removeprefix("f:")) for r in example_calls]
    assert 7.0 < statistics.median(qscores) < 20.0  # posterior-based qualities of a ~0.89-identity model


def test_default_model_is_accurate_on_the_example_reads(example_calls: list, shared_data: Path) -> None:
    mappy = pytest.importorskip("mappy")
    aligner = mappy.Aligner(str(shared_data / "accuracy" / "lambda_r941" / "Lambda_phage.fna"), preset="map-ont")
    identities = []
    for record in example_calls:
        hits = [h for h in aligner.map(record.sequence) if h.is_primary]
        if hits:
            best = max(hits, key=lambda h: h.mlen)
            identities.append(best.mlen / best.blen)
    assert len(identities) >= 9
    assert statistics.median(identities) >= 0.86  # the model card reports the figure on all 50 dev reads


def test_default_model_is_a_trained_crf_package_with_a_card() -> None:
    package = load_package(DEFAULT_MODEL)
    config = package.config
    assert config.decoder.kind == "crf" and config.name == DEFAULT_MODEL
    provenance = json.loads((package.path / "provenance.json").read_text())
    assert provenance["source_kind"] == "edgecall"  # made by `edgecall train`, compiled by `edgecall compile`
    assert provenance["lstm_flops_per_sample_after"] * 5 <= 2_359_296  # <= 1/5 of the dense HAC LSTMs (384 x 5)
    card = (package.path / "MODEL_CARD.md").read_text()
    for needed in ("median identity", "edgecall train", "edgecall compile", "Lambda_phage.fna", "FLOPs"):
        assert needed in card
