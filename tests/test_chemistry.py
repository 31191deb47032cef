"""Chemistry detection from run info, model names, and the refusal of a wrong-chemistry model."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecall.catalog import choose, installed_models
from edgecall.chemistry import check_run, parse_model_name, pore, run_chemistry
from edgecall.errors import EdgecallError

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def dorado_test_files(shared_data: Path) -> list[tuple[Path, str]]:
    """Dorado's chemistry-detection files: each folder is named after the chemistry of its file."""
    root = shared_data / "pod5" / "dorado"
    pores = {"dna_r9.4.1_e8": "r9.4.1", "dna_r10.4.1_e8.2_260bps": "r10.4.1", "dna_r10.4.1_e8.2_400bps_4khz": "r10.4.1",
             "dna_r10.4.1_e8.2_400bps_5khz": "r10.4.1", "rna002_70bps": "rna002", "rna004_130bps": "rna004"}
    return [(f, pores[d]) for d in pores for f in sorted((root / d).glob("*.pod5"))]


def test_every_dorado_chemistry_file_is_detected(shared_data: Path) -> None:
    import pod5

    cases = dorado_test_files(shared_data)
    assert len(cases) >= 12
    for path, expected in cases:
        with pod5.Reader(path) as reader:
            info = next(reader.reads()).run_info
        found = run_chemistry(info.flow_cell_product_code, info.sequencing_kit, info.sample_rate)
        assert found.pore == expected, path.name
        rate = int(path.stem.rsplit("-", 1)[1])
        assert found.sample_rate == rate
        assert found.speed == (260 if "260bps" in path.name else 400 if expected == "r10.4.1" else None), path.name


@pytest.mark.parametrize(("flow_cell", "kit", "expected"), [
    ("", "SQK-LSK114", "r10.4.1"),  # the kit alone tells: kit 14 runs on R10.4.1 only
    ("", "sqk-lsk109", "r9.4.1"),
    ("", "sqk-lsk108", "r9.4.1"),
    ("FLO-PRO112", "sqk-lsk112", "r10.4"),  # R10.4: another pore, never R10.4.1
    ("", "", None),
    ("FLO-XYZ999", "SQK-NEW999", None),
])
def test_run_chemistry_from_partial_run_info(flow_cell: str, kit: str, expected: str | None) -> None:
    assert run_chemistry(flow_cell, kit, 4000).pore == expected


def test_model_names_and_pores() -> None:
    parsed = parse_model_name("dna_r10.4.1_e8.2_400bps_hac@v4.2.0")
    assert (parsed.chemistry, parsed.tier, parsed.version, parsed.modified_bases) == (
        "dna_r10.4.1_e8.2_400bps", "hac", "4.2.0", False)
    assert parse_model_name("dna_r10.4.1_e8.2_400bps_hac@v5.0.0_5mCG_5hmCG@v3").modified_bases
    assert parse_model_name("edgecall-r941-v2") is None
    assert [pore(c) for c in ("dna_r9.4.1_e8", "dna_r10.4.1_e8.2_400bps", "rna004_130bps", "dna_r10.4_e8.1")] == [
        "r9.4.1", "r10.4.1", "rna004", "r10.4"]


def test_check_run_refuses_other_chemistry_and_rate_and_warns_on_unknown() -> None:
    r10 = run_chemistry("FLO-PRO114M", "SQK-LSK114", 4000)
    refused = check_run(r10, "edgecall-r941-v2", "dna_r9.4.1_e8", 4000)
    assert refused.refusal == ("are R10.4.1 (FLO-PRO114M, SQK-LSK114) at 4 kHz; "
                               "model edgecall-r941-v2 is R9.4.1 at 4 kHz")
    rate = check_run(r10, "m", "dna_r10.4.1_e8.2_400bps", 5000)
    assert rate.refusal == "are sampled at 4 kHz; model m is R10.4.1 at 5 kHz"
    assert check_run(r10, "m", "dna_r10.4.1_e8.2_400bps", 5000, resample_from=(4000,)).resample
    unknown = check_run(run_chemistry("", "", 4000), "m", "dna_r9.4.1_e8", 4000)
    assert unknown.refusal is None and "no known chemistry" in unknown.warning
    slow = check_run(run_chemistry("FLO-PRO114M", "SQK-LSK114-260", 4000), "m", "dna_r10.4.1_e8.2_400bps", 4000)
    assert slow.refusal is None and "260 bases/s" in slow.warning


def test_choice_by_chemistry_and_tier() -> None:
    r9 = run_chemistry("FLO-MIN106", "SQK-LSK109", 4000)
    assert choose(None, r9, None).name == "edgecall-r941-v2"
    assert choose("fast", r9, None).name == "edgecall-r941-fast-v1"
    assert choose(None, None, None).name == "edgecall-r941-v2"  # no run info: the default, as before
    assert choose("deepnano-blitz-w96", r9, None).name == "deepnano-blitz-w96"
    with pytest.raises(EdgecallError, match=r"no installed model calls RNA004 .* reads .*dorado download"):
        choose(None, run_chemistry("FLO-MIN004RA", "SQK-RNA004", 4000), None)
    with pytest.raises(EdgecallError, match="no such package, model folder or installed model"):
        choose("no-such-model", r9, None)
    assert {m.name for m in installed_models()} >= {"edgecall-r941-v2", "deepnano-blitz-w64"}


# ---- end to end ---------------------------------------------------------------------------

import subprocess  # noqa: E402
import sys  # noqa: E402


def edgecall_run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "edgecall", "run", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_a_wrong_chemistry_model_writes_nothing_and_says_why_in_two_lines(shared_data: Path, tmp_path: Path) -> None:
    reads = shared_data / "pod5" / "remora" / "can_reads.pod5"
    # an empty numba cache, as on the first run after an install: no decoder is compiled for reads that are refused
    run = edgecall_run("--model", "edgecall-r941-v2", str(reads), env={"NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    assert run.returncode != 0 and run.stdout == "" and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) <= 2
    assert f"{reads}: 14 reads are R10.4.1 (FLO-PRO114M, SQK-LSK114) at 4 kHz; model edgecall-r941-v2 is R9.4.1" in lines[0]
    rna = shared_data / "pod5" / "dorado" / "rna004_130bps" / "rna004_130bps-FLO_PRO004RA-SQK_RNA004-4000.pod5"
    nothing = edgecall_run(str(rna))  # no --model: no installed model fits, and the line says how to get one
    assert nothing.returncode == 1 and nothing.stdout == "" and len(nothing.stderr.strip().splitlines()) == 1
    assert "no installed model calls RNA004" in nothing.stderr and "dorado download --model rna004_130bps" in nothing.stderr


@pytest.fixture(scope="module")
def r10_models(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with tiny (width-16, random-weight) copies of ONT's fast@v4.0.0, hac@v4.2.0 and hac@v4.3.0."""
    pytest.importorskip("torch")
    from factories import write_tiny_ont_folder

    root = tmp_path_factory.mktemp("models")
    write_tiny_ont_folder(root / "dna_r10.4.1_e8.2_260bps_fast@v4.0.0", shared_data, "dna_r10.4.1_e8.2_260bps_fast@v4.0.0")
    write_tiny_ont_folder(root / "dna_r10.4.1_e8.2_400bps_hac@v4.2.0", shared_data, "dna_r10.4.1_e8.2_400bps_hac@v4.2.0", seed=1)
    write_tiny_ont_folder(root / "dna_r10.4.1_e8.2_400bps_hac@v4.3.0", shared_data, "dna_r10.4.1_e8.2_400bps_hac@v4.3.0",
                          seed=2, kind="bonito")
    return root


def records(fastq: str) -> list[str]:
    return [line.split("\t")[0][1:] for line in fastq.splitlines()[::4]]


def test_r10_reads_at_5khz_and_4khz_are_called_with_the_model_their_chemistry_picks(
        shared_data: Path, r10_models: Path, tmp_path: Path) -> None:
    """Random weights (the calls mean nothing): chemistry choice, ONT-folder compile cache, normalisation, chunking."""
    pod5_dir = shared_data / "pod5"
    at_5khz = [pod5_dir / "slow5-converted" / "one_5khz.pod5", pod5_dir / "dorado-extra" / "duplex_r1041.pod5",
               *sorted((pod5_dir / "dorado" / "dna_r10.4.1_e8.2_400bps_5khz").glob("*.pod5"))]
    at_4khz = [pod5_dir / "remora" / "can_reads.pod5", pod5_dir / "slow5-converted" / "one_read.pod5",
               *sorted((pod5_dir / "dorado" / "dna_r10.4.1_e8.2_260bps").glob("*.pod5"))]
    env = {"EDGECALL_CACHE": str(tmp_path / "cache"), "EDGECALL_MODELS_DIRECTORY": str(r10_models)}
    fast = edgecall_run(*map(str, at_5khz), env=env)
    assert fast.returncode == 0, fast.stderr
    assert "model dna_r10.4.1_e8.2_400bps_hac@v4.2.0 (R10.4.1, 5 kHz) for reads that are R10.4.1" in fast.stderr
    assert "compiling" in fast.stderr and len(records(fast.stdout)) == 1 + 4 + 3
    assert "RG:Z:" in fast.stdout and "_dna_r10.4.1_e8.2_400bps_hac@v4.2.0" in fast.stdout
    again = edgecall_run("--model", "hac", *map(str, at_5khz[:1]), env=env)
    assert again.returncode == 0 and "compiling" not in again.stderr  # the compiled folder is reused
    pa = edgecall_run("--model", str(r10_models / "dna_r10.4.1_e8.2_400bps_hac@v4.3.0"), *map(str, at_5khz[:2]), env=env)
    assert pa.returncode == 0 and len(records(pa.stdout)) == 5, pa.stderr
    slow = edgecall_run(*map(str, at_4khz), env=env)
    assert slow.returncode == 0 and len(records(slow.stdout)) == 14 + 1 + 2, slow.stderr
    assert "model dna_r10.4.1_e8.2_260bps_fast@v4.0.0" in slow.stderr
    warnings = [line for line in slow.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 2 and all("400 bases/s chemistry" in w for w in warnings)  # can_reads, one_read: once per file
    mixed = edgecall_run(*map(str, at_5khz[:1] + at_4khz[:1]), env=env)  # can_reads sorts first and picks the model
    assert mixed.returncode == 3 and len(records(mixed.stdout)) == 14
    assert (f"{at_5khz[0]}: 1 read is sampled at 5 kHz; model dna_r10.4.1_e8.2_260bps_fast@v4.0.0 is R10.4.1 at 4 kHz; "
            "installed R10.4.1 models: edgecall-r1041-v1, dna_r10.4.1_e8.2_400bps_hac@v4.2.0, "
            "dna_r10.4.1_e8.2_400bps_hac@v4.3.0") in mixed.stderr  # the bundled 5 kHz model, then the folder's


def test_models_lists_ont_folders(r10_models: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "edgecall", "models", "--models-directory", str(r10_models)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines()[1:]}
    assert rows["dna_r10.4.1_e8.2_400bps_hac@v4.2.0"][1:7] == ["R10.4.1", "5", "kHz", "hac", "ONT", "folder"]
    assert rows["dna_r10.4.1_e8.2_260bps_fast@v4.0.0"][1:7] == ["R10.4.1", "4", "kHz", "fast", "ONT", "folder"]
    assert rows["edgecall-r941-v2"][1:6] == ["R9.4.1", "4", "kHz", "hac", "bundled"]
    assert rows["edgecall-r941-v2"][-2:] == ["0.8815", "(lambda_r941)"]


def test_a_learned_stay_model_compiles_to_bonitos_outputs_and_calls(shared_data: Path, tmp_path: Path) -> None:
    """A CRF head without a fixed blank (5·4^L outputs): the package equals Bonito's forward and runs."""
    pytest.importorskip("torch")
    import numpy as np
    import onnxruntime as ort
    import torch
    from bonito_reference import bonito_nn
    from factories import write_tiny_ont_folder

    from edgecall.config import read_toml
    from edgecall.export.compile import compile_checkpoint

    name = "dna_r10.4.1_e8.2_400bps_hac@v4.2.0"
    folder = write_tiny_ont_folder(tmp_path / name, shared_data, name, seed=4, kind="bonito", learned_stays=True)
    package = compile_checkpoint(folder, tmp_path / "pkg", targets=["CPU"]).package.path
    encoder = bonito_nn().from_dict(read_toml(folder / "config.toml")["encoder"])
    encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in torch.load(folder / "weights_1.tar").items()})
    x = np.random.default_rng(2).standard_normal((2, 1, 1200)).astype(np.float32)
    with torch.no_grad():
        expected = encoder.eval()(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(package / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"signal": x})[0]
    assert got.shape == expected.shape == (200, 2, 5 * 4**4) and np.abs(got - expected).max() < 1e-4
    run = edgecall_run("--model", str(package), str(shared_data / "pod5" / "slow5-converted" / "one_5khz.pod5"))
    assert run.returncode == 0 and len(records(run.stdout)) == 1, run.stderr


def test_a_5khz_model_that_resamples_calls_4khz_reads(shared_data: Path, tmp_path: Path) -> None:
    """resample_from = [4000]: 4 kHz R10.4.1 reads are resampled to the model's 5 kHz, and picked for without --model."""
    pytest.importorskip("torch")
    from factories import write_tiny_ont_folder

    from edgecall.config import ModelConfig
    from edgecall.export.compile import compile_checkpoint

    name = "dna_r10.4.1_e8.2_400bps_hac@v4.2.0"
    folder = write_tiny_ont_folder(tmp_path / "src" / name, shared_data, name, seed=5)
    models = tmp_path / "models"
    package = compile_checkpoint(folder, models / "r10-5khz", targets=["CPU"], name="r10-5khz").package.path
    config = ModelConfig.load(package / "config.toml")
    config.replace(resample_from=(4000,)).save(package / "config.toml")
    assert ModelConfig.load(package / "config.toml").resample_from == (4000,)
    reads = shared_data / "pod5" / "remora" / "can_reads.pod5"
    run = edgecall_run(str(reads), env={"EDGECALL_MODELS_DIRECTORY": str(models)})
    assert run.returncode == 0, run.stderr
    assert "model r10-5khz (R10.4.1, 5 kHz) for reads that are R10.4.1 (FLO-PRO114M, SQK-LSK114) at 4 kHz" in run.stderr
    assert len(records(run.stdout)) == 14
    plain = edgecall_run("--model", str(folder), str(reads), env={"EDGECALL_CACHE": str(tmp_path / "cache")})
    assert plain.returncode == 3 and "14 reads are sampled at 4 kHz" in plain.stderr  # without resample_from: refused
