"""Training data: the runtime's own preprocessing, exact targets, deterministic per step, no dev-set leaks."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgecall.config import ModelConfig, NormalisationConfig, rnn_encoder_config  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.runtime.fastq import format_record  # noqa: E402
from edgecall.runtime.read import CalledRead, Read  # noqa: E402
from edgecall.runtime.readers import iter_reads  # noqa: E402
from edgecall.runtime.signal import prepare  # noqa: E402
from edgecall.train.data import (  # noqa: E402
    VALIDATION_STREAM, MixedSource, SimulatedData, SimulatedSource, load_references, runtime_read, to_batch,
)
from edgecall.train.pseudo_labels import PseudoLabelledSource, RealReads, load_pseudo_labelled, read_calls  # noqa: E402
from edgecall.train.simulate import SimulatedRead, write_pod5  # noqa: E402

CONFIG = ModelConfig(encoder=rnn_encoder_config(conv_channels=(4, 16, 16), hidden_sizes=(8, 8), state_len=3))
REFERENCES = {"ref": "".join(np.random.default_rng(5).choice(list("ACGT"), 30_000))}
QUANTILE = dataclasses.replace(CONFIG, normalisation=NormalisationConfig(strategy="quantile"))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def truth_in_window(read: SimulatedRead, start: int, trimmed: int, chunksize: int) -> str:
    """The bases whose first sample (in the prepared signal) lies in [start, start + chunksize)."""
    first = read.base_starts[:-1] - trimmed
    inside = (first >= start) & (first < start + chunksize)
    return "".join(np.array(list(read.sequence))[inside])


def spell(targets: np.ndarray) -> str:
    return "".join("ACGT"[t - 1] for t in targets)


@pytest.mark.parametrize("config", [CONFIG, QUANTILE], ids=["medmad", "quantile"])
def test_training_and_inference_see_the_same_signal(config: ModelConfig, tmp_path: Path) -> None:
    """STYLE.md item 9: a chunk equals what `edgecall run` computes for the same read read back from pod5."""
    source = SimulatedSource(config, 4000, REFERENCES, SimulatedData(random_fraction=0.5, seed=3))
    drawn = [source.draw(step, index) for step, index in [(0, 0), (0, 1), (7, 2), (123, 0)]]
    write_pod5([read for read, _ in drawn], tmp_path / "reads.pod5")
    from_file = {r.read_id: r for r in iter_reads([tmp_path / "reads.pod5"])}
    assert len(from_file) == len(drawn)
    for read, chunk in drawn:
        runtime = from_file[read.read_id]
        assert isinstance(runtime, Read)
        signal, trimmed = prepare(runtime, config.normalisation)  # exactly the runtime's call (pipeline._prepared)
        assert trimmed == chunk.trimmed
        assert np.array_equal(signal[chunk.start : chunk.start + 4000], chunk.signal)
        assert chunk.signal.dtype == np.float32
    assert max(chunk.trimmed for _, chunk in drawn) > 10  # open pore trimmed (a very short one is left, as at inference)


def test_targets_are_the_truth_of_the_window() -> None:
    source = SimulatedSource(CONFIG, 2000, REFERENCES, SimulatedData(seed=1))
    frames, state_len = CONFIG.frames(2000), CONFIG.state_len
    for index in range(12):
        read, chunk = source.draw(4, index)
        expected = truth_in_window(read, chunk.start, chunk.trimmed, 2000)
        assert spell(chunk.targets) == expected and expected in read.sequence  # a contiguous stretch of the truth
        assert chunk.start >= read.base_starts[0] - chunk.trimmed  # never the leader, which is not in the truth
        assert chunk.start + 2000 <= read.base_starts[-1] - chunk.trimmed
        assert state_len <= len(expected) <= frames + state_len
        assert 150 < len(expected) < 300  # ~8.9 samples per base


def test_reference_chunks_come_from_the_reference() -> None:
    source = SimulatedSource(CONFIG, 2000, REFERENCES, SimulatedData(random_fraction=0.0))
    complement = str.maketrans("ACGT", "TGCA")
    for index in range(4):
        read, _ = source.draw(0, index)
        forward = read.sequence if read.strand == "+" else read.sequence.translate(complement)[::-1]
        assert forward in REFERENCES["ref"]


def test_same_step_same_batch_other_step_other_batch() -> None:
    def make(stream: int = 0) -> MixedSource:
        return MixedSource([(SimulatedSource(CONFIG, 1000, REFERENCES, stream=stream), 1.0)], 4)

    a, b = make()(5), make()(5)  # a fresh source, as after a restart
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    other = make()(6)
    assert not torch.equal(a[0], other[0])
    assert not torch.equal(a[0], make(VALIDATION_STREAM)(5)[0])  # validation never shares a seed with training
    signal, targets, lengths = a
    assert signal.shape == (4, 1, 1000) and signal.dtype == torch.float32
    assert targets.dtype == lengths.dtype == torch.int64 and targets.shape == (4, int(lengths.max()))
    assert int(targets.min()) == 0 or int(lengths.min()) == targets.shape[1]
    for row, n in zip(targets, lengths):
        assert set(row[:n].tolist()) <= {1, 2, 3, 4} and not row[n:].any()


def test_mixer_gives_each_source_its_share() -> None:
    class Counting:
        def __init__(self) -> None:
            self.asked = 0
            self.source = SimulatedSource(CONFIG, 500, {})  # no reference: random sequence only

        def chunks(self, step: int, n: int) -> list:
            self.asked += n
            return self.source.chunks(step, n)

    sim, real = Counting(), Counting()
    mixer = MixedSource([(sim, 0.7), (real, 0.3)], 4)  # 1.2 real chunks per batch on average
    assert [mixer.counts(k) for k in range(5)] == [[3, 1], [3, 1], [3, 1], [3, 1], [2, 2]]
    assert all(mixer(k)[0].shape == (4, 1, 500) for k in range(5)) and (sim.asked, real.asked) == (14, 6)
    assert sum(mixer.counts(k)[1] for k in range(100)) == 120
    with pytest.raises(EdgecallError, match="add up to 1"):
        MixedSource([(sim, 0.7), (real, 0.2)], 4)


def test_a_batch_of_16_chunks_of_4000_is_fast() -> None:
    source = MixedSource([(SimulatedSource(ModelConfig(), 4000, REFERENCES), 1.0)], 16)
    source(0)
    start = time.perf_counter()
    signal, _, lengths = source(1)
    assert time.perf_counter() - start < 1.0
    assert signal.shape == (16, 1, 4000) and 350 < float(lengths.float().mean()) < 550


# ---- real reads with pseudo-labels --------------------------------------------------------


def write_calls(reads: list[SimulatedRead], folder: Path, *, caller_trim: int, model: str = "teacher",
                qscores: tuple[float, ...] = ()) -> tuple[Path, Path]:
    """FASTQ + summary TSV as `edgecall run --emit-moves --emit-summary` writes them, from a perfect stride-1 caller."""
    fastq, summary = folder / "calls.fastq", folder / "calls.tsv"
    rows = ["read_id\tfilename\tchannel\tnum_samples\ttrimmed_samples\tsequence_length\tmean_qscore\tduration\tstatus"]
    with open(fastq, "w") as out:
        for i, read in enumerate(reads):
            q = qscores[i] if qscores else 20.0
            first = read.base_starts[:-1] - caller_trim
            keep = first >= 0
            moves = np.zeros(read.raw.size - caller_trim, np.uint8)
            moves[first[keep]] = 1
            sequence = "".join(np.array(list(read.sequence))[keep])
            called = CalledRead(read=runtime_read(read), sequence=sequence, qstring="5" * len(sequence),
                                mean_qscore=q, moves=moves, trimmed_samples=caller_trim)
            out.write(format_record(called, model, emit_moves=True, stride=1))
            rows.append(f"{read.read_id}\treads.pod5\t1\t{read.raw.size}\t{caller_trim}\t{len(sequence)}\t{q:.2f}\t1.0\tpass")
    summary.write_text("\n".join(rows) + "\n")
    return fastq, summary


@pytest.fixture(scope="module")
def simulated_pod5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SimulatedRead]]:
    folder = tmp_path_factory.mktemp("real")
    reads = [SimulatedSource(CONFIG, 4000, REFERENCES, SimulatedData(read_chunks=3.0)).draw(0, i)[0] for i in range(3)]
    write_pod5(reads, folder / "reads.pod5")
    return folder, reads


def test_pseudo_labels_put_each_called_base_at_its_sample(simulated_pod5: tuple[Path, list[SimulatedRead]]) -> None:
    folder, reads = simulated_pod5
    fastq, summary = write_calls(reads, folder, caller_trim=37)
    labelled, skipped = load_pseudo_labelled(RealReads((folder / "reads.pod5",), (fastq,), (summary,)), CONFIG)
    assert not skipped and len(labelled) == 3
    by_id = {r.read_id: r for r in labelled}
    for read in reads:
        got = by_id[read.read_id]
        signal, trimmed = prepare(runtime_read(read), CONFIG.normalisation)
        assert np.array_equal(got.signal, signal) and got.trimmed == trimmed
        first = read.base_starts[:-1] - trimmed
        assert np.array_equal(got.positions, first[first >= 0]) and spell(got.bases) in read.sequence
    source = PseudoLabelledSource(labelled, CONFIG, 4000, seed=2)
    for chunk in source.chunks(3, 6):
        read = next(r for r in reads if r.read_id == chunk.read_id)
        assert spell(chunk.targets) == truth_in_window(read, chunk.start, chunk.trimmed, 4000)
    assert all(torch.equal(x, y) for x, y in zip(to_batch(source.chunks(3, 6)), to_batch(source.chunks(3, 6))))


def test_pseudo_label_trim_recomputed_with_the_callers_config(simulated_pod5: tuple[Path, list[SimulatedRead]], tmp_path: Path) -> None:
    folder, reads = simulated_pod5
    fastq, _ = write_calls(reads, tmp_path, caller_trim=0, model="deepnano-blitz-w48")  # that package does not trim
    assert {c.model for c in read_calls(fastq).values()} == {"deepnano-blitz-w48"}
    labelled, _ = load_pseudo_labelled(RealReads((folder,), (fastq,)), CONFIG)  # no summary: trim from the RG model
    read = reads[0]
    got = next(r for r in labelled if r.read_id == read.read_id)
    first = read.base_starts[:-1] - got.trimmed
    assert np.array_equal(got.positions, first[first >= 0])
    with pytest.raises(EdgecallError, match="cannot tell how the called reads were trimmed"):
        load_pseudo_labelled(RealReads((folder,), write_calls(reads, tmp_path, caller_trim=0, model="nobody")[:1]), CONFIG)


def test_calls_without_moves_are_refused(tmp_path: Path) -> None:
    (tmp_path / "calls.fastq").write_text("@r1\tqs:f:10\nACGT\n+\n5555\n")
    with pytest.raises(EdgecallError, match="no mv:B:c move table"):
        read_calls(tmp_path / "calls.fastq")


def test_low_quality_calls_and_other_sample_rates_are_left_out(simulated_pod5: tuple[Path, list[SimulatedRead]],
                                                             tmp_path: Path) -> None:
    folder, reads = simulated_pod5
    fastq, summary = write_calls(reads, tmp_path, caller_trim=0, qscores=(20.0, 5.5, 12.0))
    labelled, skipped = load_pseudo_labelled(RealReads((folder,), (fastq,), (summary,)), CONFIG)
    assert [r.read_id for r in labelled] == [reads[0].read_id, reads[2].read_id]
    assert skipped == {"mean call Q below 7": 1}
    labelled, skipped = load_pseudo_labelled(RealReads((folder,), (fastq,), (summary,)), CONFIG.replace(sample_rate=5000))
    assert not labelled and skipped == {"sampled at 4000 Hz, not 5000": 3}


# ---- the accuracy dev set is never training data -----------------------------------------------


def test_dev_set_is_refused_by_path(tmp_path: Path, simulated_pod5: tuple[Path, list[SimulatedRead]]) -> None:
    dev = tmp_path / "accuracy" / "lambda_r941"
    dev.mkdir(parents=True)
    (dev / "Lambda_phage.fna").write_text(">lambda\n" + "ACGT" * 100 + "\n")
    with pytest.raises(EdgecallError, match="accuracy dev set"):
        load_references([dev / "Lambda_phage.fna"])
    folder, reads = simulated_pod5
    (dev / "reads.pod5").write_bytes((folder / "reads.pod5").read_bytes())
    fastq, _ = write_calls(reads, tmp_path, caller_trim=0)
    for paths in [(dev,), (tmp_path,), (dev / "reads.pod5",)]:  # the folder, a parent searched recursively, the file
        with pytest.raises(EdgecallError, match="never train on it"):
            load_pseudo_labelled(RealReads(paths, (fastq,)), CONFIG)


def test_real_dev_set_is_refused_by_path_and_read_id(shared_data: Path, tmp_path: Path) -> None:
    dev = shared_data / "accuracy" / "lambda_r941"
    with pytest.raises(EdgecallError, match="accuracy dev set"):
        load_references([dev / "Lambda_phage.fna"])
    with pytest.raises(EdgecallError, match="accuracy dev set"):
        load_pseudo_labelled(RealReads((dev / "lambda_r941.pod5",), (tmp_path / "calls.fastq",)), CONFIG)
    # a dev-set read copied elsewhere under another file name is caught by its read id
    dev_id = sorted(dev.glob("fast5/*.fast5"))[0].stem
    read = dataclasses.replace(SimulatedSource(CONFIG, 1000, REFERENCES).draw(0, 0)[0], read_id=dev_id)
    write_pod5([read], tmp_path / "copy.pod5")
    fastq, summary = write_calls([read], tmp_path, caller_trim=0)
    with pytest.raises(EdgecallError, match=f"read {dev_id} is in the accuracy dev set"):
        load_pseudo_labelled(RealReads((tmp_path / "copy.pod5",), (fastq,), (summary,)), CONFIG)


def _labelled_ramp(samples: int = 40_000, every: int = 10):  # noqa: ANN202 - LabelledRead
    """A read whose signal is its sample index (so a chunk shows where it was cut) and a base every ``every`` samples."""
    from edgecall.train.pseudo_labels import LabelledRead

    positions = np.arange(0, samples, every, dtype=np.int64)
    bases = np.random.default_rng(3).integers(1, 5, positions.size).astype(np.int64)
    return LabelledRead("ramp", np.arange(samples, dtype=np.float32), 0, positions, bases)


def test_augmented_real_chunks_stretch_time_and_keep_their_labels() -> None:
    from edgecall.train.pseudo_labels import Augmentation

    read, chunksize = _labelled_ramp(), 2000
    plain = PseudoLabelledSource([read], CONFIG, chunksize, seed=4)
    stretched = PseudoLabelledSource([read], CONFIG, chunksize, seed=4, augment=Augmentation(0.2, 0.0, 0.0, 0.0))
    for chunk in plain.chunks(0, 8):
        assert chunk.signal[-1] - chunk.signal[0] == chunksize - 1  # no augmentation: the window itself
    widths = []
    for chunk in stretched.chunks(0, 32):
        assert chunk.signal.shape == (chunksize,) and chunk.signal.dtype == np.float32
        assert chunk.signal[0] == chunk.start  # the window starts where it was drawn, resampled linearly
        width = (chunk.signal[-1] - chunk.signal[0]) * chunksize / (chunksize - 1)
        assert 0.8 * chunksize - 1 <= width <= 1.2 * chunksize + 1
        widths.append(width)
        # the labels are the bases placed inside the stretched window, in order
        first = int(np.searchsorted(read.positions, chunk.start))
        np.testing.assert_array_equal(chunk.targets, read.bases[first : first + chunk.targets.size])
        assert abs(chunk.targets.size - width / 10) <= 1
    assert min(widths) < 0.95 * chunksize and max(widths) > 1.05 * chunksize  # both ways
    again = stretched.chunks(0, 32)  # a chunk is a function of (seed, step, index)
    assert all(np.array_equal(a.signal, b.signal) for a, b in zip(again, stretched.chunks(0, 32)))


def test_augmented_levels_and_noise_stay_within_their_bounds() -> None:
    from edgecall.train.pseudo_labels import Augmentation

    read = _labelled_ramp()
    read = dataclasses.replace(read, signal=np.zeros_like(read.signal))
    source = PseudoLabelledSource([read], CONFIG, 2000, seed=5, augment=Augmentation(0.0, 0.1, 0.2, 0.0))
    offsets = [float(c.signal[0]) for c in source.chunks(1, 32)]
    assert all(np.ptp(c.signal) == 0 for c in source.chunks(1, 32))  # gain and offset only: a flat signal stays flat
    assert max(map(abs, offsets)) <= 0.2 and np.std(offsets) > 0.05
    noisy = PseudoLabelledSource([read], CONFIG, 2000, seed=5, augment=Augmentation(0.0, 0.0, 0.0, 0.3))
    spreads = [float(np.std(c.signal)) for c in noisy.chunks(1, 32)]
    assert max(spreads) <= 0.33 and max(spreads) > 0.1


def test_augmentation_and_simulation_options_are_checked(tmp_path: Path) -> None:
    import subprocess
    import sys

    for flag, value, message in (("--augment-real", "0.1,0.1", "--augment-real takes four numbers"),
                                 ("--augment-real", "0.7,0,0,0", "0 <= speed < 0.5"),
                                 ("--sim-level-noise", "-0.5", "--sim-level-noise must not be negative")):
        result = subprocess.run([sys.executable, "-m", "edgecall", "train", str(tmp_path / "run"), "--steps", "1",
                                 flag, value], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
