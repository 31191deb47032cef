"""`edgecall run` refuses option values it cannot use with one line and exit 2, and reports what it did not find."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastq_records import parse

from edgecall.errors import UsageError
from edgecall.package import load_package
from edgecall.runtime.backends import open_backend
from edgecall.runtime.pipeline import Basecaller, RunOptions

MODEL = "deepnano-blitz-w48"


def edgecall_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecall", "run", "--model", MODEL, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("flag", "value", "least"),
    [("--chunksize", "0", 1), ("--batch-size", "0", 1), ("--max-reads", "-1", 1), ("--threads", "-1", 1), ("--overlap", "-5", 0)],
)
def test_values_that_mean_nothing_are_usage_errors(flag: str, value: str, least: int, tmp_path: Path) -> None:
    reads = tmp_path / "reads.pod5"
    reads.write_bytes(b"")  # never read: the options are refused first
    result = edgecall_run(flag, value, str(reads))
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"edgecall: error: {flag} must be at least {least}, got {value}\n"
    assert result.stdout == ""


def test_a_chunk_shorter_than_the_overlap_names_the_chunksize() -> None:
    package = load_package(MODEL)
    overlap, stride = package.config.basecaller.overlap, package.config.stride
    assert overlap > 30
    with pytest.raises(UsageError) as caught:
        Basecaller(package, RunOptions(chunksize=30))
    smallest = (overlap // stride + 1) * stride
    assert str(caught.value) == (
        f"--chunksize 30 is no longer than the {overlap}-sample overlap between chunks (model '{package.config.name}'): "
        f"use --chunksize {smallest} or more, a multiple of the stride {stride} "
        f"(the model's is {package.config.basecaller.chunksize}), or a smaller --overlap"
    )
    with pytest.raises(UsageError, match=r"^--overlap 9000 is not shorter than the model's chunksize"):
        Basecaller(package, RunOptions(overlap=9000))


def test_auto_device_calls_as_cpu_does() -> None:
    """AUTO on a machine without an accelerator runs on the CPU: at f32, as --device CPU does, not bf16."""
    package = load_package(MODEL)
    chunksize = package.config.basecaller.chunksize
    batch = np.random.default_rng(1).standard_normal((4, 1, chunksize)).astype(np.float32)
    scores = {}
    for device in ("CPU", "AUTO"):
        backend = open_backend(package, device, batch_size=4, chunksize=chunksize, threads=1)
        scores[device] = np.array(backend(batch))
        backend.close()
    np.testing.assert_array_equal(scores["AUTO"], scores["CPU"])


def test_read_ids_never_found_are_reported(shared_data: Path, tmp_path: Path) -> None:
    reads = shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"
    real = sorted(p.stem for p in (shared_data / "accuracy" / "lambda_r941" / "fast5").glob("*.fast5"))[:2]
    fake = [f"ffffffff-0000-0000-0000-00000000000{i}" for i in range(5)]
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(real + fake) + "\n")
    result = edgecall_run("--read-ids", str(ids), str(reads))
    assert result.returncode == 0, result.stderr
    assert sorted(r.read_id for r in parse(result.stdout)) == real
    lines = [line for line in result.stderr.splitlines() if "read ids listed" in line]
    assert lines == [f"edgecall: 5 read ids listed in {ids} were not found in the inputs: {', '.join(fake[:3])} and 2 more"]
