"""The bundled default model calls the README's example reads, accurately, and documents itself."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from fastq_records import parse

from edgecall.package import DEFAULT_MODEL, load_package

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "lambda_10reads.pod5"


FAST_MODEL = "edgecall-r941-fast-v1"  # the pruned state_len-3 model: keeps up with a MinION on 2 cores


def call_example(*options: str) -> list:
    result = subprocess.run(
        [sys.executable, "-m", "edgecall", "run", *options, str(EXAMPLE)], capture_output=True, text=True, timeout=600,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return parse(result.stdout)


@pytest.fixture(scope="module")
def example_calls() -> list:
    """The README's quick-start command, run as written (default model, default device)."""
    return call_example()


def median_identity(calls: list, shared_data: Path) -> tuple[int, float]:
    """(reads mapped, median identity) against the lambda reference, as bench/basecall.py measures."""
    mappy = pytest.importorskip("mappy")
    aligner = mappy.Aligner(str(shared_data / "accuracy" / "lambda_r941" / "Lambda_phage.fna"), preset="map-ont")
    identities = []
    for record in calls:
        hits = [h for h in aligner.map(record.sequence) if h.is_primary]
        if hits:
            best = max(hits, key=lambda h: h.mlen)
            identities.append(best.mlen / best.blen)
    return len(identities), statistics.median(identities)


def test_example_reads_are_all_called_by_the_default_model(example_calls: list) -> None:
    assert len(example_calls) == 10 and len({r.read_id for r in example_calls}) == 10
    assert all(r.tags["RG"].endswith(f"_{DEFAULT_MODEL}") for r in example_calls)
    assert all(r.sequence for r in example_calls) and sum(len(r.sequence) for r in example_calls) > 100_000
    qscores = [float(r.tags["qs"].removeprefix("f:")) for r in example_calls]
    assert 7.0 < statistics.median(qscores) < 20.0  # posterior-based qualities of a ~0.89-identity model


def test_default_model_is_accurate_on_the_example_reads(example_calls: list, shared_data: Path) -> None:
    mapped, identity = median_identity(example_calls, shared_data)
    assert mapped >= 9 and identity >= 0.86  # the model card reports the figure on all 50 dev reads


def test_fast_model_calls_the_example_reads(shared_data: Path) -> None:
    calls = call_example("--model", FAST_MODEL)
    assert len(calls) == 10 and all(r.tags["RG"].endswith(f"_{FAST_MODEL}") for r in calls)
    mapped, identity = median_identity(calls, shared_data)
    assert mapped >= 9 and identity >= 0.85


@pytest.mark.parametrize("name", [DEFAULT_MODEL, FAST_MODEL])
def test_bundled_models_are_sparse_trained_crf_packages_with_a_card(name: str) -> None:
    package = load_package(name)
    config = package.config
    assert config.decoder.kind == "crf" and config.name == name
    provenance = json.loads((package.path / "provenance.json").read_text())
    assert provenance["source_kind"] == "edgecall"  # made by `edgecall train`, compiled by `edgecall compile`
    assert provenance["lstm_flops_per_sample_after"] * 5 <= 2_359_296  # <= 1/5 of the dense HAC LSTMs (384 x 5)
    # sparse: neuron selection switched neurons off in every layer and compile removed them
    kept, original = provenance["neurons_kept"], provenance["neurons_original"]
    assert all(k < o for k, o in zip(kept, original))
    # the kept neurons, padded with zeroed ones to the width OpenVINO's LSTM kernels are fast at
    assert list(config.encoder.hidden_sizes) == provenance["lstm_widths"] == [-(-k // 8) * 8 for k in kept]
    card = (package.path / "MODEL_CARD.md").read_text()
    for needed in ("median identity", "edgecall train", "edgecall compile", "Lambda_phage.fna", "FLOPs", name):
        assert needed in card


R10_MODEL = "edgecall-r1041-v1"  # the bundled R10.4.1 model: 5 kHz, calls 4 kHz reads after resampling
R10_DEV_IDENTITY = 0.70  # a margin below the model card's 0.736 on these 14 dev reads


def test_r10_dev_reads_get_the_bundled_r10_model_without_model(shared_data: Path) -> None:
    """The issue's check, as a user types it: `edgecall run can_reads.pod5`, no --model, 4 kHz reads resampled."""
    mappy = pytest.importorskip("mappy")
    reads = shared_data / "pod5" / "remora" / "can_reads.pod5"
    result = subprocess.run([sys.executable, "-m", "edgecall", "run", str(reads)], capture_output=True, text=True,
                            timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert f"model {R10_MODEL} (R10.4.1, 5 kHz) for reads that are R10.4.1 (FLO-PRO114M, SQK-LSK114) at 4 kHz" in result.stderr
    calls = parse(result.stdout)
    assert len(calls) == 14 and all(r.tags["RG"].endswith(f"_{R10_MODEL}") for r in calls)
    # the keep-up yardstick is a MinION's at the model's rate: 0.90 M samples/s at 5 kHz, not 4 kHz's 0.72 M
    speed = re.search(r"= ([0-9.]+) M samples/s, ([0-9.]+)x a 5 kHz MinION's keep-up rate", result.stderr)
    assert speed, result.stderr
    assert float(speed.group(2)) == pytest.approx(float(speed.group(1)) / 0.90, abs=0.011)
    aligner = mappy.Aligner(str(shared_data / "pod5" / "remora" / "can_reads_ref_segments.fa"), preset="map-ont")
    identities = []
    for record in calls:
        hits = [h for h in aligner.map(record.sequence) if h.is_primary]
        if hits:
            best = max(hits, key=lambda h: h.mlen)
            identities.append(best.mlen / best.blen)
    assert len(identities) >= 12 and statistics.median(identities) >= R10_DEV_IDENTITY


def test_the_bundled_r10_model_is_a_sparse_5khz_package_with_a_card() -> None:
    package = load_package(R10_MODEL)
    config = package.config
    assert (config.chemistry, config.sample_rate, config.resample_from) == ("dna_r10.4.1_e8.2_400bps", 5000, (4000,))
    provenance = json.loads((package.path / "provenance.json").read_text())
    assert provenance["source_kind"] == "edgecall"
    assert provenance["lstm_flops_per_sample_after"] * 5 <= 1_966_080  # <= 1/5 of dense HAC (384 x 5) at stride 6
    kept, original = provenance["neurons_kept"], provenance["neurons_original"]
    assert sum(kept) < sum(original)
    assert list(config.encoder.hidden_sizes) == provenance["lstm_widths"] == [-(-k // 8) * 8 for k in kept]
    card = (package.path / "MODEL_CARD.md").read_text()
    for needed in ("median identity", "edgecall train", "can_reads", "FLOPs", "resample", R10_MODEL):
        assert needed in card
