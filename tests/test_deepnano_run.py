"""`edgecall run --model deepnano-blitz-w64` on DeepNano-blitz's own test reads reproduces its output."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from alignment import identity, mapped_identity
from fastq_records import parse

pytest.importorskip("mappy")


def expected_calls(path: Path) -> dict[str, str]:
    lines = path.read_text().split("\n")
    return {lines[i][1:].split()[0]: lines[i + 1] for i in range(0, len(lines) - 3, 4)}


@pytest.fixture(scope="module")
def calls(shared_data: Path) -> tuple[dict[str, str], dict[str, str], str]:
    sample = shared_data / "models" / "deepnano-blitz" / "test_sample"
    result = subprocess.run(
        # f32: the import's fidelity is measured against f32 engines (--precision auto would run bf16 on a CPU that has it)
        [sys.executable, "-m", "edgecall", "run", "--model", "deepnano-blitz-w64", "--precision", "f32", str(sample)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    got = {r.read_id: r.sequence for r in parse(result.stdout)}
    return got, expected_calls(sample / "expected.fastq"), result.stderr


def test_every_read_present(calls) -> None:
    got, expected, _ = calls
    assert set(got) == set(expected) and len(got) == 48


def test_reproduces_published_output(calls) -> None:
    got, expected, _ = calls
    mapped = [mapped_identity(got[k], expected[k]) for k in expected]
    assert statistics.median(mapped) >= 0.99
    # edgecall also calls the up-to-1530-sample tail DeepNano-blitz leaves uncalled, so a
    # whole-read global identity is a little lower; it must still be close
    whole = [identity(got[k], expected[k]) for k in expected]
    assert statistics.median(whole) >= 0.98
    assert all(len(got[k]) >= len(expected[k]) - 20 for k in expected)


def test_openvino_and_onnxruntime_agree(calls, shared_data: Path) -> None:
    got, _, _ = calls
    sample = shared_data / "models" / "deepnano-blitz" / "test_sample"
    result = subprocess.run(
        [sys.executable, "-m", "edgecall", "run", "--model", "deepnano-blitz-w64", "--device", "ort", str(sample)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    ort = {r.read_id: r.sequence for r in parse(result.stdout)}
    matches = columns = 0
    for k in got:
        ident = identity(ort[k], got[k])
        n = max(len(ort[k]), len(got[k]))
        matches += ident * n
        columns += n
    assert matches / columns >= 0.999


def test_greedy_decoding_runs_and_calls_close_to_the_beam() -> None:
    """--decode greedy on a CTC model: every read called, each close to the beam search's call (DeepNano-blitz's
    beam 1 rule); it once failed with a traceback on every read."""
    example = Path(__file__).resolve().parents[1] / "examples" / "lambda_10reads.pod5"
    runs = {}
    for mode in ("greedy", "beam"):
        result = subprocess.run(
            [sys.executable, "-m", "edgecall", "run", "--model", "deepnano-blitz-w64", "--precision", "f32",
             "--decode", mode, "--max-reads", "4", str(example)], capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        runs[mode] = {r.read_id: r.sequence for r in parse(result.stdout)}
    assert set(runs["greedy"]) == set(runs["beam"]) and len(runs["greedy"]) == 4
    assert runs["greedy"] != runs["beam"]  # a different decoder, not the beam search again
    assert all(mapped_identity(runs["greedy"][k], runs["beam"][k]) > 0.95 for k in runs["beam"])
