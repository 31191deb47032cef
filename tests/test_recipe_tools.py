"""The tools behind the CPU run of the sparsifying recipe: Bonito-format data from reference-labelled reads, and a
dense edgecall checkpoint written as a Dorado folder by Bonito's exporter (a stand-in for ONT's weights)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pysam")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

from test_aligned import write_r10_reads  # noqa: E402

from edgecall.model.checkpoint import load_checkpoint  # noqa: E402
from edgecall.train.aligned import AlignedReads, load_aligned  # noqa: E402
from edgecall.train.bonito_data import open_bonito_data  # noqa: E402
from edgecall.train.pseudo_labels import PseudoLabelledSource  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--layers", "2", "--features", "8", "--state-len", "2", "--batch-size", "2",
        "--chunksize", "1200", "--warmup-steps", "1", "--validation-size", "0", "--threads", "1"]


def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def r10_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny dense R10.4.1 checkpoint, and 3 simulated 4 kHz reads with a BAM of their truth: (checkpoint, pod5, bam)."""
    folder = tmp_path_factory.mktemp("r10")
    pod5, bam, fasta = write_r10_reads(folder, 3, seed=7, reverse=False)
    run = subprocess.run([sys.executable, "-m", "edgecall", "train", str(folder / "run"), "--chemistry", "r10.4.1", *TINY,
                          "--steps", "1", "--lambda-initial", "0", "--lambda-target", "0", "--reference",
                          str(fasta)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return folder / "run" / "checkpoint_00000001.pt", pod5, bam


def test_bonito_data_holds_the_trainers_chunks_and_a_held_out_read(r10_model, tmp_path: Path) -> None:
    checkpoint, pod5, bam = r10_model
    config = load_checkpoint(checkpoint).config
    reads, _ = load_aligned(AlignedReads((pod5,), (bam,)), config)
    held = reads[0].read_id
    run = tool("write_bonito_data.py", str(tmp_path / "data"), "--model", str(checkpoint), "--aligned-reads", str(pod5),
               "--aligned-bam", str(bam), "--chunks", "70", "--chunksize", "1200", "--validation-read", held,
               "--validation-chunks", "5")
    assert run.returncode == 0, run.stderr
    data, valid = open_bonito_data(tmp_path / "data"), open_bonito_data(tmp_path / "data" / "validation")
    assert (data.rows, data.chunksize, valid.rows) == (70, 1200, 5)
    want = PseudoLabelledSource([r for r in reads if r.read_id != held], config, 1200, stream_tag=2).chunks(1, 6)
    for row, chunk in zip(range(64, 70), want):  # rows 64-69: the second block the trainer's source draws
        assert np.array_equal(data.chunks[row], chunk.signal)
        assert np.array_equal(data.references[row, :data.lengths[row]], chunk.targets)
        assert not data.references[row, data.lengths[row]:].any()
    assert {c.read_id for c in PseudoLabelledSource([r for r in reads if r.read_id == held], config, 1200,
                                                    seed=1, stream_tag=2).chunks(0, 5)} == {held}
    missing = tool("write_bonito_data.py", str(tmp_path / "x"), "--model", str(checkpoint), "--aligned-reads", str(pod5),
                   "--aligned-bam", str(bam), "--validation-read", "no-such-read")
    assert missing.returncode == 1 and "no-such-read: not among the usable aligned reads" in missing.stderr


def test_a_dense_checkpoint_becomes_a_dorado_folder_that_computes_the_same(tmp_path: Path) -> None:
    pytest.importorskip("bonito_reference").bonito_export()  # skips without ont-bonito
    config = ROOT / "train-runs" / "ont-recipe" / "hac-layers-96" / "config.toml"
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "edgecall", "train", str(out), "--config", str(config), "--steps", "1",
                          "--batch-size", "2", "--chunksize", "1200", "--validation-size", "0", "--lambda-initial", "0",
                          "--lambda-target", "0", "--warmup-steps", "1", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    written = tool("write_dorado_folder.py", str(out / "checkpoint_00000001.pt"), str(config), str(tmp_path / "folder"))
    assert written.returncode == 0 and "scores within" in written.stderr, written.stderr
    folder = load_checkpoint(tmp_path / "folder")
    assert folder.kind == "dorado" and folder.config.encoder.hidden_sizes == (96,) * 5
    assert folder.config.chemistry == "dna_r10.4.1_e8.2_400bps" and folder.config.sample_rate == 5000
