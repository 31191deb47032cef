"""The command line: expected failures are one line on stderr, a non-zero status, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgecall.package import load_package


def edgecall(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecall", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgecall: error:")]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_compile_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(edgecall("compile", str(tmp_path / "nope.pt")), "nope.pt", "no such file")


def test_compile_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "reads.pt").write_bytes(b"\x00\x01garbage" * 100)
    assert_one_line_error(edgecall("compile", str(tmp_path / "reads.pt")), "reads.pt", "not a PyTorch checkpoint")


def test_compile_unknown_target(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from factories import write_efficient_basecallers

    ckpt = write_efficient_basecallers(tmp_path / "s.pt", (3, 3, 3, 3, 3), hidden=8, features=8)
    assert_one_line_error(edgecall("compile", str(ckpt), "--target", "TPU"), "unknown target 'TPU'")


def test_compile_then_inspect_package(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from factories import write_efficient_basecallers

    ckpt = write_efficient_basecallers(tmp_path / "s.pt", (5, 3, 4, 6, 7), hidden=8, features=8)
    result = edgecall("compile", str(ckpt), "--target", "MYRIAD", "--target", "CPU", "--beam-width", "16")
    assert result.returncode == 0, result.stderr
    package = tmp_path / "s.edgecall"  # default: next to the checkpoint
    assert load_package(package).config.decoder.beam_width == 16
    assert (package / "openvino/MYRIAD/model.xml").is_file() and (package / "openvino/CPU/model.xml").is_file()
    assert "openvino==2022.3" in result.stderr and "static input 64x1x4000" in result.stderr
    assert "5 / 8" in result.stderr
    shown = edgecall("inspect", str(package))
    assert shown.returncode == 0, shown.stderr
    for text in ("4: lstm 8->8 reversed (5 / 8 neurons, 37.5% removed; 3 zeroed to width 8)", "8: lstm 8->8 reversed (7 / 8 neurons",
                 "dna_r9.4.1_e8, 4000 Hz", "FLOPs/sample", "CPU, MYRIAD"):
        assert text in shown.stdout


def test_run_unknown_model(tmp_path: Path) -> None:
    (tmp_path / "x.pod5").write_bytes(b"")
    assert_one_line_error(edgecall("run", "--model", "no-such-model", str(tmp_path / "x.pod5")), "no-such-model")


def test_run_missing_input(tmp_path: Path) -> None:
    assert_one_line_error(edgecall("run", str(tmp_path / "missing.pod5")), "missing.pod5")


def test_devices_lists_cpu_default() -> None:
    result = edgecall("devices")
    assert result.returncode == 0
    assert any(line.startswith("CPU") and "(default)" in line for line in result.stdout.splitlines())
    assert any(line.startswith("ort ") for line in result.stdout.splitlines())


def test_unknown_device_says_what_is_present() -> None:
    from edgecall.devices import resolve_device
    from edgecall.errors import EdgecallError

    with pytest.raises(EdgecallError, match="present: CPU"):
        resolve_device("NPU")


def test_first_run_says_it_compiles_the_decoder_and_does_not_charge_the_run(tmp_path: Path) -> None:
    """A fresh install compiles the decoder's kernels on its first run (numba, ~9 s on 2 cores): the user is told
    once, and the run's samples/s leaves it out; a second run finds them cached and says nothing."""
    import os
    import re

    example = Path(__file__).resolve().parents[1] / "examples" / "lambda_10reads.pod5"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # an empty cache: as after an install
    run = [sys.executable, "-m", "edgecall", "run", "--max-reads", "1", "-o", str(tmp_path / "calls.fastq"), str(example)]
    first = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    compiled = re.findall(r"edgecall: compiled the decoder for this CPU in ([0-9.]+) s \(first run only: it is cached\)",
                          first.stderr)
    assert len(compiled) == 1 and float(compiled[0]) >= 1.0, first.stderr
    called = re.search(r"1 reads called.* in ([0-9.]+) s =", first.stderr)
    assert called and float(called.group(1)) < float(compiled[0]), first.stderr  # the compile is not in the run's time
    second = subprocess.run(run, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "compiled the decoder" not in second.stderr, second.stderr
