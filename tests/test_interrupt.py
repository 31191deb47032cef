"""Ctrl-C and SIGTERM leave only whole FASTQ records behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastq_records import parse


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_whole_records(sig: int, shared_data: Path, tmp_path: Path) -> None:
    reads = shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"
    out = tmp_path / "out.fastq"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecall", "run", "--model", "deepnano-blitz-w96", "--batch-size", "4", "-o", str(out), str(reads)],
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
        time.sleep(0.05)  # wait until the first records are flushed
    time.sleep(0.3)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr
    records = parse(out.read_text())  # raises on a partial record
    assert 0 < len(records) <= 50
    if len(records) < 50:
        assert proc.returncode in (130, 143)
        assert "interrupted" in stderr


def test_import_cli(shared_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    weights = shared_data / "models" / "deepnano-blitz" / "weights" / "rnn48.txt"
    result = subprocess.run(
        [sys.executable, "-m", "edgecall", "import", "deepnano-blitz", str(weights), "-o", str(tmp_path / "w48")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    shown = subprocess.run([sys.executable, "-m", "edgecall", "inspect", str(tmp_path / "w48")], capture_output=True, text=True, timeout=120)
    assert "deepnano-blitz" in shown.stdout and "GRU x4" in shown.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "edgecall", "import", "deepnano-blitz", str(shared_data / "references" / "phiX174.fasta")],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "phiX174.fasta" in bad.stderr
