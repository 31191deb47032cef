"""`edgecall train`: trains, resumes (also after kill -9), and its checkpoints become runnable packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fastq_records import parse  # noqa: E402
from test_train_data import CONFIG, REFERENCES, write_calls  # noqa: E402

from edgecall.devices.precision import cpu_name  # noqa: E402
from edgecall.model.checkpoint import load_checkpoint  # noqa: E402
from edgecall.train.data import VALIDATION_STREAM, MixedSource, SimulatedSource, to_batch  # noqa: E402
from edgecall.train.loop import TrainOptions, TrainResult, checkpoints, train  # noqa: E402
from edgecall.train.simulate import write_pod5  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--layers", "2", "--features", "8", "--state-len", "2", "--batch-size", "4",
        "--chunksize", "1000", "--warmup-steps", "2", "--lambda-step", "4", "--log-every", "1",
        "--checkpoint-every", "2", "--validate-every", "3", "--validation-size", "4", "--threads", "1"]


@pytest.fixture(autouse=True)
def restore_threads():
    """The in-process runs pin torch to one thread; give the next test module what it had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def edgecall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecall", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def labelled_reads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Simulated reads in pod5 with a perfect teacher's calls: (pod5, FASTQ, summary TSV)."""
    folder = tmp_path_factory.mktemp("reads")
    reads = [SimulatedSource(CONFIG, 2000, REFERENCES).draw(0, i)[0] for i in range(3)]
    write_pod5(reads, folder / "reads.pod5")
    fastq, summary = write_calls(reads, folder, caller_trim=0)
    return folder / "reads.pod5", fastq, summary


def test_train_resume_compile_and_run(tmp_path: Path, labelled_reads: tuple[Path, Path, Path]) -> None:
    pod5, fastq, summary = labelled_reads
    out = tmp_path / "run"
    real = ["--real-reads", str(pod5), "--real-calls", str(fastq), "--real-summary", str(summary), "--real-fraction", "0.5"]
    first = edgecall("train", str(out), *TINY, "--steps", "3", *real)
    assert first.returncode == 0, first.stderr
    assert "real reads: 3 labelled" in first.stderr and "fresh start -> step 3" in first.stderr
    assert "batch 4 x 1000 samples, cpu f32;" in first.stderr
    assert [s for s, _ in checkpoints(out)] == [2, 3] and (out / "data.json").is_file()
    # resume: the model sizes come from the run itself; only --steps grows
    second = edgecall("train", str(out), *TINY[8:], "--steps", "5", *real)
    assert second.returncode == 0, second.stderr
    assert "resuming checkpoint_00000003.pt -> step 5" in second.stderr
    notes = [line for line in second.stderr.splitlines() if "note:" in line]
    assert notes == ["edgecall train: note: steps was 3 in the previous call, now 5"]  # nothing else changed
    assert "step 4 loss" in second.stderr and "step 1 loss" not in second.stderr
    rows = (out / "train.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == [1, 2, 3, 4, 5]
    newest = checkpoints(out)[-1][1]
    assert newest.name == "checkpoint_00000005.pt" and load_checkpoint(newest).config.encoder.hidden_sizes == (8, 8)

    pytest.importorskip("onnx")
    from edgecall.export.compile import compile_checkpoint

    package = compile_checkpoint(newest, tmp_path / "run.edgecall").package.path
    called = edgecall("run", "--model", str(package), "--device", "ort", "--decode", "viterbi", str(pod5))
    assert called.returncode == 0, called.stderr
    assert len(parse(called.stdout)) == 3


def test_init_from_starts_a_new_run_with_another_state_len_or_width(tmp_path: Path) -> None:
    first = edgecall("train", str(tmp_path / "base"), *TINY, "--steps", "2")
    assert first.returncode == 0, first.stderr
    source = checkpoints(tmp_path / "base")[-1][1]
    out = tmp_path / "sl1"
    # the sizes come from the checkpoint; only the state length changes
    tuned = edgecall("train", str(out), *TINY[8:], "--state-len", "1", "--init-from", str(source), "--steps", "2")
    assert tuned.returncode == 0, tuned.stderr
    assert f"starting from {source} -> step 2" in tuned.stderr and "state_len 1" in tuned.stderr
    assert "step 1 loss" in tuned.stderr
    config = load_checkpoint(checkpoints(out)[-1][1]).config
    assert (config.encoder.hidden_sizes, config.state_len, config.name) == ((8, 8), 1, "sl1")
    again = edgecall("train", str(out), *TINY[8:], "--init-from", str(source), "--steps", "3")
    assert again.returncode == 0 and "resuming checkpoint_00000002.pt -> step 3" in again.stderr, again.stderr
    assert [line for line in again.stderr.splitlines() if "note:" in line] == [
        "edgecall train: note: steps was 2 in the previous call, now 3"]
    clash = edgecall("train", str(tmp_path / "clash"), "--features", "16", "--init-from", str(source))
    assert clash.returncode == 1 and "drop --features" in clash.stderr and "Traceback" not in clash.stderr
    narrower = edgecall("train", str(tmp_path / "narrow"), "--hidden", "4", "--init-from", str(source))
    assert narrower.returncode == 1 and "Traceback" not in narrower.stderr
    assert f"--hidden 4: {source}: its LSTMs (8, 8) are wider than asked (4, 4); starting from a model only widens" in narrower.stderr
    wider = edgecall("train", str(tmp_path / "wide"), *TINY[8:], "--hidden", "12", "--init-from", str(source), "--steps", "1")
    assert wider.returncode == 0, wider.stderr
    assert "LSTM 12,12" in wider.stderr and "step 1 loss" in wider.stderr
    assert load_checkpoint(checkpoints(tmp_path / "wide")[-1][1]).config.encoder.hidden_sizes == (12, 12)


def test_r10_model_from_simulated_and_reference_labelled_reads(tmp_path: Path) -> None:
    """--chemistry r10.4.1: a 5 kHz stride-6 quantile model; 4 kHz reads with a BAM serve as reference labels."""
    pytest.importorskip("pysam")
    from test_aligned import write_r10_reads

    write_r10_reads(tmp_path, 2, seed=4, reverse=True)
    tiny = [*TINY[:10], "--chunksize", "1200", *TINY[12:], "--reference", str(tmp_path / "ref.fa")]
    aligned = ["--aligned-reads", str(tmp_path / "reads.pod5"), "--aligned-bam", str(tmp_path / "calls.bam"),
               "--aligned-fraction", "0.5"]
    run = edgecall("train", str(tmp_path / "r10"), "--chemistry", "r10.4.1", *tiny, "--steps", "2", *aligned)
    assert run.returncode == 0, run.stderr
    assert "reference-labelled reads: 2 from calls.bam" in run.stderr
    assert "(dna_r10.4.1_e8.2_400bps, 5000 Hz, stride 6, quantile)" in run.stderr
    config = load_checkpoint(checkpoints(tmp_path / "r10")[-1][1]).config
    assert (config.chemistry, config.sample_rate, config.stride, config.normalisation.strategy) == (
        "dna_r10.4.1_e8.2_400bps", 5000, 6, "quantile")
    from edgecall.layers import Convolution

    convs = [layer for layer in config.encoder.sublayers if isinstance(layer, Convolution)]
    assert [c.size for c in convs] == [16, 16, 8] and [c.stride for c in convs] == [1, 1, 6]
    assert config.basecaller.chunksize % 6 == 0
    for args, needle in [
        (["--aligned-reads", str(tmp_path / "reads.pod5")], "--aligned-reads and --aligned-bam go together"),
        ([*aligned[:4], "--aligned-fraction", "0.8", "--real-reads", str(tmp_path / "reads.pod5"),
          "--real-calls", str(tmp_path / "x.fastq"), "--real-fraction", "0.5"], "add up to 1.3"),
        (["--sample-rate", "3000"], "recorded at 5000 or 4000 Hz, not 3000"),
    ]:
        bad = edgecall("train", str(tmp_path / "bad"), "--chemistry", "r10.4.1", *tiny, "--steps", "1", *args)
        errors = [line for line in bad.stderr.splitlines() if line.startswith("edgecall: error:")]
        assert bad.returncode == 1 and len(errors) == 1 and needle in errors[0], bad.stderr


def test_expected_failures_are_one_line(tmp_path: Path, labelled_reads: tuple[Path, Path, Path]) -> None:
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "checkpoint_00000001.pt").write_bytes(b"")
    cases = [
        (["train", str(tmp_path / "done"), "--no-resume"], "holds a run"),
        (["train", str(tmp_path / "a"), "--config", str(tmp_path / "c.toml"), "--hidden", "8"], "exclude each other"),
        (["train", str(tmp_path / "b"), "--real-reads", str(labelled_reads[0])], "--real-calls"),
        (["train", str(tmp_path / "c"), "--reference", str(tmp_path / "accuracy/lambda_r941/Lambda_phage.fna")], "accuracy dev set"),
        (["train", str(tmp_path / "d"), "--precision", "fp8"], "--precision fp8: expected auto, f32, bf16"),
    ]
    for args, needle in cases:
        result = edgecall(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("edgecall: error:")]
        assert len(errors) == 1 and needle in errors[0], result.stderr


def test_bf16_on_a_cpu_without_it_is_refused_before_any_work(tmp_path: Path) -> None:
    code = ("import edgecall.devices.precision as p; p.native_precisions = lambda flags=None: ()\n"
            f"from edgecall.cli.main import main\nmain(['train', {str(tmp_path / 'run')!r}, '--precision', 'bf16', "
            f"*{TINY!r}, '--steps', '1'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines() == [
        f"edgecall: error: --precision bf16 --device cpu: this CPU ({cpu_name()}) has no native bf16 (avx512_bf16 or "
        "amx_bf16); torch would emulate it, far slower than f32: use --precision f32"]
    assert not checkpoints(tmp_path / "run")


def test_without_torch_the_error_names_the_extra(tmp_path: Path) -> None:
    code = f"import sys; sys.modules['torch'] = None\nfrom edgecall.cli.main import main\nmain(['train', {str(tmp_path)!r}])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "edgecall[export]" in result.stderr


# ---- kill -9 and resume, through the library ------------------------------------------------


def tiny_run(out: Path) -> TrainResult:
    """8 steps of a tiny model on simulated data; checkpoints at 3, 6 and 8."""
    torch.set_num_threads(1)
    data = MixedSource([(SimulatedSource(CONFIG, 500, REFERENCES), 1.0)], 4)
    val = to_batch(SimulatedSource(CONFIG, 500, REFERENCES, stream=VALIDATION_STREAM).chunks(0, 4))
    options = TrainOptions(out_dir=out, steps=8, batch_size=4, chunksize=500, lr=5e-3, warmup_steps=2,
                           lambda_step=4, log_every=100, checkpoint_every=3, validate_every=3, seed=3, threads=1)
    return train(CONFIG, options, data, val)


KILLED_WHILE_SAVING = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train_cli import tiny_run

renamed = []
real_replace = os.replace

def replace(src, dst):  # the loop writes a checkpoint to a temp file, then renames it
    renamed.append(dst)
    if len(renamed) == 2:  # step 6's checkpoint is written but not yet in place: die as kill -9 would
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

os.replace = replace
tiny_run(Path({out!r}))
"""


def test_kill_9_then_resume_gives_the_straight_run(tmp_path: Path) -> None:
    straight = tiny_run(tmp_path / "straight")
    out = tmp_path / "killed"
    script = KILLED_WHILE_SAVING.format(tests=str(ROOT / "tests"), out=str(out))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert [s for s, _ in checkpoints(out)] == [3] and (out / ".checkpoint_00000006.pt.tmp").is_file()
    resumed = tiny_run(out)
    assert resumed.losses == straight.losses[3:]  # steps 3..7 again, bit for bit
    a, b = load_checkpoint(straight.checkpoint), load_checkpoint(resumed.checkpoint)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert not list(out.glob(".*.tmp")) and [s for s, _ in checkpoints(out)] == [3, 6, 8]
    assert np.isfinite(resumed.losses).all() and os.path.getsize(resumed.checkpoint) > 0
