"""int8 quantisation of a compiled package: a real int8 IR that OpenVINO runs, scores close to f32."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nncf")
pytest.importorskip("openvino")

from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.quantize import (  # noqa: E402
    calibration_chunks,
    int8_ir_dir,
    int8_op_counts,
    quantize_package,
    runtime_scores,
    simulated_reads,
)
from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.readers import iter_reads  # noqa: E402

SUBSET = 24  # calibration chunks: enough for ranges, keeps the test fast


@pytest.fixture()
def package(tiny_crf_package: Path, tmp_path: Path) -> Path:
    """A private copy: quantising writes into the package, and the session fixture is shared."""
    return Path(shutil.copytree(tiny_crf_package, tmp_path / "tiny.edgecall"))


def test_int8_ir_is_quantised_and_close_to_f32_on_real_reads(package: Path, shared_data: Path) -> None:
    calibration = sorted((shared_data / "models/deepnano-blitz/test_sample").glob("*.fast5"))[:6]
    xml = quantize_package(package, calibration, subset_size=SUBSET, min_agreement=0.0)  # random weights
    assert xml == int8_ir_dir(package) / "model.xml" and xml.with_suffix(".bin").is_file()
    counts = int8_op_counts(xml)
    assert counts["FakeQuantize"] > 0 or counts["i8/u8 constants"] > 0, counts
    assert int8_op_counts(load_package(package).openvino_ir("CPU")) == {"FakeQuantize": 0, "i8/u8 constants": 0}
    # held-out real chunks: the lambda dev reads, never used for calibration
    config = load_package(package).config
    chunks = calibration_chunks(iter_reads([shared_data / "accuracy/lambda_r941/lambda_r941.pod5"]), config, limit=8)
    f32, int8 = runtime_scores(load_package(package), chunks), runtime_scores(load_package(package), chunks, "CPU-INT8")
    assert int8.shape == f32.shape == (config.frames(config.basecaller.chunksize), 8, config.num_outputs)
    assert np.corrcoef(f32.ravel(), int8.ravel())[0, 1] > 0.95
    assert load_package(package).provenance["int8"]["calibration_chunks"] == SUBSET
    assert 0.0 <= load_package(package).provenance["int8"]["agreement_with_f32_calls"] <= 1.0


def test_simulated_reads_calibrate_when_no_real_reads(package: Path) -> None:
    xml = quantize_package(package, simulated_reads(4), subset_size=8, min_agreement=0.0)
    assert int8_op_counts(xml)["FakeQuantize"] > 0
    assert load_package(package).provenance["int8"]["calibration_chunks"] == 8


def test_calibration_chunks_are_normalised_runtime_chunks(package: Path) -> None:
    config = load_package(package).config
    chunks = calibration_chunks(simulated_reads(3), config, limit=10)
    assert chunks.shape == (10, 1, config.basecaller.chunksize) and chunks.dtype == np.float32
    assert abs(float(np.median(chunks))) < 0.5 and 0.5 < float(np.median(np.abs(chunks))) * 1.4826 < 2.0


def test_calibration_reads_of_another_sample_rate_are_refused(package: Path) -> None:
    reads = (dataclasses.replace(r, sample_rate=5000) for r in simulated_reads(1))
    with pytest.raises(EdgecallError, match="5000 Hz"):
        quantize_package(package, reads, subset_size=4)


def test_no_usable_calibration_reads_is_an_error(package: Path) -> None:
    with pytest.raises(EdgecallError, match="no calibration chunks"):
        quantize_package(package, iter([]), subset_size=4)


def test_package_without_cpu_ir_is_refused(package: Path) -> None:
    shutil.rmtree(package / "openvino" / "CPU")
    with pytest.raises(EdgecallError, match="no openvino/CPU IR"):
        quantize_package(package, simulated_reads(2), subset_size=4)


def test_compile_int8_flag_writes_the_int8_ir(tmp_path: Path, shared_data: Path) -> None:
    pytest.importorskip("torch")
    from factories import write_efficient_basecallers

    ckpt = write_efficient_basecallers(tmp_path / "s.pt", (5, 3, 4, 5, 6), hidden=8, features=8)
    calibration = sorted((shared_data / "models/deepnano-blitz/test_sample").glob("*.fast5"))[:2]
    result = subprocess.run([sys.executable, "-m", "edgecall", "compile", str(ckpt), "-o", str(tmp_path / "pkg"),
                             "--target", "MYRIAD", "--int8", "--int8-min-agreement", "0",
                             *(f"--calibration={p}" for p in calibration)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pkg" / "openvino" / "CPU-INT8" / "model.xml").is_file()
    assert (tmp_path / "pkg" / "openvino" / "CPU" / "model.xml").is_file()  # added: int8 is made from it
    assert "int8:" in result.stderr and "agree with f32" in result.stderr and result.stdout == ""
    run = subprocess.run([sys.executable, "-m", "edgecall", "run", "--model", str(tmp_path / "pkg"), "--precision", "int8",
                          "--max-reads", "2", str(calibration[0].parent)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("\n+\n") == 2 and "openvino:CPU-INT8" in run.stderr


def test_int8_of_a_package_with_padded_lstms_is_refused_before_quantising(tmp_path: Path) -> None:
    """Zeroed padding neurons (compile's default --lstm-multiple 8) break NNCF's int8 LSTMs: the calls of such a
    tiny model agreed with its f32 calls on -4% of bases, against 100% unpadded. Refused up front, saying how."""
    pytest.importorskip("torch")
    from factories import write_efficient_basecallers

    from edgecall.export.compile import compile_checkpoint

    ckpt = write_efficient_basecallers(tmp_path / "s.pt", (5, 3, 4, 5, 6), hidden=8, features=8)
    compile_checkpoint(ckpt, tmp_path / "pkg", targets=["CPU"])
    with pytest.raises(EdgecallError, match=r"padded with zeroed neurons \(\[8, 8, 8, 8, 8\] wide for \[5, 3, 4, 5, 6\] kept\).*--lstm-multiple 1"):
        quantize_package(tmp_path / "pkg", simulated_reads(2), subset_size=4)
    assert not (tmp_path / "pkg" / "openvino" / "CPU-INT8").exists()
    both = subprocess.run([sys.executable, "-m", "edgecall", "compile", str(ckpt), "-o", str(tmp_path / "pkg2"), "--int8",
                           "--lstm-multiple", "8"], capture_output=True, text=True, timeout=300)
    assert both.returncode == 2 and "--int8 needs unpadded LSTMs (--lstm-multiple 1)" in both.stderr
    assert "Traceback" not in both.stderr and not (tmp_path / "pkg2").exists()


def test_int8_needs_an_int8_model_and_the_cpu(tiny_crf_package: Path) -> None:
    from edgecall.runtime.pipeline import Basecaller, RunOptions

    with pytest.raises(EdgecallError, match="compile CHECKPOINT --int8"):
        Basecaller(load_package(tiny_crf_package), RunOptions(precision="int8"))
    with pytest.raises(EdgecallError, match="OpenVINO CPU device only"):
        Basecaller(load_package(tiny_crf_package), RunOptions(precision="int8", device="ort"))


def test_int8_that_breaks_a_trained_model_is_refused(tmp_path: Path, shared_data: Path) -> None:
    """int8 breaks trained LSTM CRF models (v1's mapped no lambda read, v2's keeps ~69% of its calls;
    bench/RESULTS.md), so compile must not offer it."""
    pytest.importorskip("torch")
    from edgecall.export.compile import compile_checkpoint

    source = Path(__file__).resolve().parents[1] / "train-runs" / "sparse-v6" / "checkpoint_00016000.pt"  # v2's
    package = compile_checkpoint(source, tmp_path / "r941", targets=["CPU"], lstm_multiple=1).package.path  # unpadded
    calibration = sorted((shared_data / "models/deepnano-blitz/test_sample").glob("*.fast5"))[:8]
    with pytest.raises(EdgecallError, match=r"int8 not written: its calls agree with the f32 calls on only"):
        quantize_package(package, calibration, subset_size=SUBSET)
    assert not int8_ir_dir(package).exists() and "int8" not in load_package(package).provenance
