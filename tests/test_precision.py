"""bf16/f16 inference: offered only where the CPU computes it natively and the package's calls were checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecall.devices import precision as precision_module
from edgecall.devices.precision import native_precisions
from edgecall.errors import EdgecallError
from edgecall.package import load_package
from edgecall.runtime.backends import open_backend


def test_native_precisions_follow_the_cpu_flags() -> None:
    assert native_precisions(frozenset({"avx2", "avx512f"})) == ()
    assert native_precisions(frozenset({"avx512_bf16"})) == ("bf16",)
    assert native_precisions(frozenset({"amx_bf16", "avx512_fp16"})) == ("bf16", "f16")


def _package_copy(tmp_path: Path, check: dict | None) -> Path:
    source = load_package("deepnano-blitz-w48").path
    target = tmp_path / "w48"
    shutil.copytree(source, target)
    provenance = json.loads((target / "provenance.json").read_text())
    provenance.pop("precision_checks", None)
    if check is not None:
        provenance["precision_checks"] = {"bf16": check}
    (target / "provenance.json").write_text(json.dumps(provenance))
    return target


def test_an_emulated_precision_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2"}))
    package = load_package(_package_copy(tmp_path, {"agreement": 0.999, "min_agreement": 0.995, "passed": True}))
    with pytest.raises(EdgecallError, match=r"--precision bf16: this CPU .* has no native bf16 .*use --precision f32"):
        open_backend(package, "CPU", batch_size=2, chunksize=1560, precision="bf16")


def test_unchecked_or_failed_packages_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    unchecked = load_package(_package_copy(tmp_path / "a", None))
    with pytest.raises(EdgecallError, match="never checked against its f32 calls; run 'edgecall compile ... --check-precision bf16'"):
        open_backend(unchecked, "CPU", batch_size=2, chunksize=1560, precision="bf16")
    failed = load_package(_package_copy(tmp_path / "b", {"agreement": 0.97, "min_agreement": 0.995, "passed": False}))
    with pytest.raises(EdgecallError, match=r"agree with its f32 calls on only 97.00% of bases \(needs 99.5%\)"):
        open_backend(failed, "CPU", batch_size=2, chunksize=1560, precision="bf16")
    with pytest.raises(EdgecallError, match="OpenVINO CPU device only"):
        open_backend(unchecked, "ort", batch_size=2, chunksize=1560, precision="bf16")


@pytest.mark.skipif("bf16" not in native_precisions(), reason="this CPU has no native bf16")
def test_the_check_measures_and_run_then_offers_bf16(tmp_path: Path, shared_data: Path) -> None:
    from edgecall.export.precision_check import check_precision
    from edgecall.runtime.readers import find_inputs, iter_reads

    path = _package_copy(tmp_path, None)
    reads = iter_reads(find_inputs([shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"]))
    record = check_precision(path, "bf16", reads, "lambda", chunks=16, min_agreement=0.98)
    assert 0.98 < record["agreement"] <= 1.0 and record["chunks"] == 16, record
    assert record["passed"] and record["min_agreement"] == 0.98
    assert load_package(path).provenance["precision_checks"]["bf16"] == record
    backend = open_backend(load_package(path), "CPU", batch_size=2, chunksize=1560, precision="bf16")
    try:
        scores = backend(np.random.default_rng(0).standard_normal((2, 1, 1560)).astype(np.float32))
        assert scores.shape[-1] == 5 and np.isfinite(scores).all()
    finally:
        backend.close()


def test_automatic_precision_is_bf16_only_where_native_and_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgecall.devices import resolve_device
    from edgecall.runtime.backends import automatic_precision

    cpu, ort = resolve_device("CPU"), resolve_device("ort")
    passed = load_package(_package_copy(tmp_path / "a", {"agreement": 0.999, "min_agreement": 0.995, "passed": True}))
    failed = load_package(_package_copy(tmp_path / "b", {"agreement": 0.97, "min_agreement": 0.995, "passed": False}))
    unchecked = load_package(_package_copy(tmp_path / "c", None))
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert automatic_precision(passed, cpu) == "bf16"
    assert automatic_precision(failed, cpu) == automatic_precision(unchecked, cpu) == "f32"
    assert automatic_precision(passed, ort) == "f32"  # bf16 is an OpenVINO CPU setting
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert automatic_precision(passed, cpu) == "f32"  # emulated: never chosen


def test_run_without_precision_names_what_it_chose(tmp_path: Path, shared_data: Path) -> None:
    import subprocess
    import sys

    expected = "openvino:CPU bf16" if "bf16" in native_precisions() else "openvino:CPU,"
    reads = shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"
    run = subprocess.run([sys.executable, "-m", "edgecall", "run", "--model", "edgecall-r941-v2", "--max-reads", "1", str(reads)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.count("\n+\n") == 1, run.stderr
    assert expected in run.stderr.splitlines()[-1]
