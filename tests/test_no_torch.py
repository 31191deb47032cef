"""The runtime never imports torch: `import edgecall` and `edgecall run` work with torch blocked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastq_records import parse

BLOCK_TORCH = """
import sys
sys.modules["torch"] = None  # as if torch were not installed: importing it raises ModuleNotFoundError
"""


def test_import_edgecall_does_not_import_torch() -> None:
    code = "import sys, edgecall, edgecall.cli.main, edgecall.runtime.pipeline; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_run_with_torch_blocked(tiny_crf_package: Path, shared_data: Path) -> None:
    reads = shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"
    code = BLOCK_TORCH + f"from edgecall.cli.main import main\nmain(['run', '--model', {str(tiny_crf_package)!r}, '--max-reads', '3', {str(reads)!r}])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(parse(result.stdout)) == 3


def test_torch_device_without_torch_names_the_extra(tiny_crf_package: Path, shared_data: Path) -> None:
    reads = shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"
    code = BLOCK_TORCH + f"from edgecall.cli.main import main\nmain(['run', '--model', {str(tiny_crf_package)!r}, '--device', 'torch', {str(reads)!r}])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "edgecall[export]" in result.stderr or "export" in result.stderr
