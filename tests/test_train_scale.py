"""'edgecall train' at scale: from an ONT model folder, on Bonito-format data, and by distillation from a teacher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

from factories import write_tiny_ont_folder  # noqa: E402
from test_bonito_data import write_bonito_data  # noqa: E402

from edgecall.model.checkpoint import load_checkpoint  # noqa: E402
from edgecall.model.crf import build_model  # noqa: E402
from edgecall.train.masked_model import from_loaded, kept_neurons  # noqa: E402

ONT = "dna_r10.4.1_e8.2_400bps_hac@v4.2.0"


def train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgecall", "train", *args, "--threads", "1"],
                          capture_output=True, text=True)


def test_gates_on_an_ont_model_start_all_on_and_change_nothing(shared_data: Path, tmp_path: Path, torch_one_thread) -> None:
    ckpt = load_checkpoint(write_tiny_ont_folder(tmp_path / ONT, shared_data, ONT, seed=3))
    gated = from_loaded(ckpt).eval()
    assert kept_neurons(gated) == ckpt.config.encoder.hidden_sizes
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 1200)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(gated(x), build_model(ckpt.config, ckpt.state)(x))


def test_init_from_a_dorado_folder_on_bonito_data_trains_and_compiles(shared_data: Path, tmp_path: Path) -> None:
    folder = write_tiny_ont_folder(tmp_path / ONT, shared_data, ONT, seed=4)
    write_bonito_data(tmp_path / "data", rows=30, chunksize=1200)
    out = tmp_path / "run"
    run = train(str(out), "--init-from", str(folder), "--data", str(tmp_path / "data"), "--steps", "2",
                "--batch-size", "4", "--chunksize", "1200", "--validation-size", "4", "--checkpoint-every", "1")
    assert run.returncode == 0, run.stderr
    assert "Bonito data: 30 chunks" in run.stderr and "3 for validation" in run.stderr
    checkpoint = out / "checkpoint_00000002.pt"
    compiled = subprocess.run([sys.executable, "-m", "edgecall", "compile", str(checkpoint), "-o", str(tmp_path / "pkg")],
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr
    again = train(str(out), "--init-from", str(folder), "--data", str(tmp_path / "data"), "--steps", "3",
                  "--batch-size", "4", "--chunksize", "1200", "--validation-size", "4")
    assert again.returncode == 0 and "resuming checkpoint_00000002.pt" in again.stderr, again.stderr


def test_distillation_brings_a_student_closer_to_its_teacher(shared_data: Path, tmp_path: Path, torch_one_thread) -> None:
    """Unlabelled R9.4.1 reads, the bundled fast model as teacher: the student's CRF loss on the teacher's labels falls."""
    from edgecall.train.data import to_batch
    from edgecall.train.loop import validate
    from edgecall.train.pseudo_labels import PseudoLabelledSource, RealReads, load_pseudo_labelled

    reads = shared_data / "models" / "deepnano-blitz" / "test_sample"
    out = tmp_path / "student"
    common = ["--teacher", "edgecall-r941-fast-v1", "--unlabelled", str(reads), "--teacher-fraction", "1.0",
              "--hidden", "16", "--layers", "2", "--state-len", "2", "--batch-size", "8", "--chunksize", "2000",
              "--lr", "5e-3", "--warmup-steps", "5", "--validation-size", "0", "--checkpoint-every", "1"]
    first = train(str(out), *common, "--steps", "1")
    assert first.returncode == 0, first.stderr
    assert "labelling" in first.stderr and (out / "teacher" / "calls.fastq").stat().st_size > 0
    before = load_checkpoint(out / "checkpoint_00000001.pt")
    later = train(str(out), *common, "--steps", "60", "--checkpoint-every", "60")
    assert later.returncode == 0 and "labelling" not in later.stderr, later.stderr  # the teacher's calls are reused
    after = load_checkpoint(out / "checkpoint_00000060.pt")
    labelled, _ = load_pseudo_labelled(
        RealReads((reads,), (out / "teacher" / "calls.fastq",), (out / "teacher" / "summary.tsv",)), before.config)
    batch = to_batch(PseudoLabelledSource(labelled, before.config, 2000, seed=99).chunks(0, 16))
    loss_before, _ = validate(from_loaded(before), batch)
    loss_after, _ = validate(from_loaded(after), batch)
    assert loss_after < 0.9 * loss_before, (loss_before, loss_after)


def test_a_new_model_from_an_ont_config_takes_its_chemistry_and_folds_its_batchnorm(shared_data: Path, tmp_path: Path) -> None:
    """--config an ONT folder's config.toml: R10.4.1 at 5 kHz from the folder's name (not the r9.4.1 default), its
    batchnorm trained folded; --chemistry or --sample-rate that contradict it, or an --init-from model, are refused."""
    folder = write_tiny_ont_folder(tmp_path / ONT, shared_data, ONT, seed=5)
    out = tmp_path / "run"
    run = train(str(out), "--config", str(folder / "config.toml"), "--steps", "1", "--batch-size", "2",
                "--chunksize", "1200", "--validation-size", "2", "--warmup-steps", "1")
    assert run.returncode == 0, run.stderr
    assert "batchnorm is trained folded" in run.stderr and "r10.4.1 simulated" in run.stderr, run.stderr
    config = load_checkpoint(out / "checkpoint_00000001.pt").config
    assert (config.chemistry, config.sample_rate, config.name) == ("dna_r10.4.1_e8.2_400bps", 5000, "run")
    assert config.encoder.hidden_sizes == load_checkpoint(folder).config.encoder.hidden_sizes
    cases = [
        (["--config", str(folder / "config.toml"), "--chemistry", "r9.4.1"], "is a dna_r10.4.1_e8.2_400bps model"),
        (["--config", str(folder / "config.toml"), "--sample-rate", "4000"], "is a 5000 Hz model"),
        (["--init-from", str(folder), "--chemistry", "r9.4.1"], "the model being trained is dna_r10.4.1_e8.2_400bps"),
    ]
    for index, (args, needle) in enumerate(cases):
        refused = train(str(tmp_path / f"refused{index}"), *args, "--steps", "1")
        errors = [line for line in refused.stderr.splitlines() if line.startswith("edgecall: error:")]
        assert refused.returncode == 1 and len(errors) == 1 and needle in errors[0], refused.stderr


def test_a_chemistry_edgecall_cannot_simulate_trains_on_bonito_data_alone(shared_data: Path, tmp_path: Path) -> None:
    """ONT's 260 bps fast model: no simulator for it, so simulated chunks are refused with what to do instead,
    and --data alone (with its held-out rows for validation) trains it."""
    name = "dna_r10.4.1_e8.2_260bps_fast@v4.0.0"
    folder = write_tiny_ont_folder(tmp_path / name, shared_data, name, seed=6)
    write_bonito_data(tmp_path / "data", rows=30, chunksize=1000)
    common = ["--init-from", str(folder), "--steps", "1", "--batch-size", "4", "--chunksize", "1000", "--validation-size", "4"]
    refused = train(str(tmp_path / "mixed"), *common, "--data", str(tmp_path / "data"), "--data-fraction", "0.5")
    assert refused.returncode == 1 and "which simulated chunks would need" in refused.stderr, refused.stderr
    assert "--data-fraction 1" in refused.stderr
    run = train(str(tmp_path / "alone"), *common, "--data", str(tmp_path / "data"), "--data-fraction", "1")
    assert run.returncode == 0, run.stderr
    assert "no simulated chunks" in run.stderr and "3 for validation" in run.stderr, run.stderr
    assert load_checkpoint(tmp_path / "alone" / "checkpoint_00000001.pt").config.chemistry == "dna_r10.4.1_e8.2_260bps"
