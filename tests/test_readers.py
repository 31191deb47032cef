"""Readers against real pod5/fast5 files: counts, values, cross-format agreement, bad files."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pod5
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecall.errors import EdgecallError
from edgecall.runtime.read import Read, ReadFailure
from edgecall.runtime.readers import find_inputs, iter_reads, start_time_iso

LAMBDA_READ = "080fbbfd-2a90-4f17-a3ec-5a5f41d2378c"  # first read of the lambda set


def reads_of(*paths: Path, read_ids: set[str] | None = None) -> tuple[list[Read], list[ReadFailure]]:
    items = list(iter_reads(list(paths), read_ids=read_ids))
    assert all(isinstance(item, (Read, ReadFailure)) for item in items)
    return [i for i in items if isinstance(i, Read)], [i for i in items if isinstance(i, ReadFailure)]


# ---- find_inputs ------------------------------------------------------------


def test_find_inputs_folder_sorted_and_deduplicated(shared_data: Path) -> None:
    folder = shared_data / "accuracy/lambda_r941/fast5"
    files = find_inputs([folder, folder / f"{LAMBDA_READ}.fast5"])
    assert len(files) == 50
    assert files == sorted(files)
    assert all(f.suffix == ".fast5" for f in files)


def test_find_inputs_recursive_and_hint(shared_data: Path) -> None:
    nested = shared_data / "pod5/dorado-extra/nested_pod5_folder"
    with pytest.raises(EdgecallError, match="-r"):
        find_inputs([nested])
    assert [f.name for f in find_inputs([nested], recursive=True)] == ["single_na24385.pod5"]


def test_find_inputs_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pod5"
    with pytest.raises(EdgecallError, match="nope.pod5"):
        find_inputs([missing])
    with pytest.raises(EdgecallError, match="no .pod5 or .fast5"):
        find_inputs([tmp_path])
    text = tmp_path / "reads.txt"
    text.write_text("x")
    with pytest.raises(EdgecallError, match="reads.txt"):
        find_inputs([text])


# ---- real files ---------------------------------------------------------------

COUNTS = {
    "accuracy/lambda_r941/lambda_r941.pod5": 50,
    "pod5/dorado-extra/multi_read_r941.pod5": 4,
    "pod5/dorado-extra/duplex_r1041.pod5": 4,
    "pod5/remora/can_reads.pod5": 14,
    "pod5/slow5-converted/10_reads.pod5": 10,
    "pod5/slow5-converted/p2solo_ulk114_dna.pod5": 1,
    "pod5/pod5-file-format/old_versions/multi_fast5_zip_v0.pod5": 10,
    "pod5/pod5-file-format/old_versions/multi_fast5_zip_v3.pod5": 10,
    "pod5/pod5-file-format/multi_fast5_zip.fast5": 10,
    "fast5/ont_fast5_api/multi_read/batch_0.fast5": 4,
    "fast5/ont_fast5_api/vbz_reads/vbz_reads.fast5": 4,
    "fast5/ont_fast5_api/hardlink/unlinked/batch0.fast5": 8,
    "fast5/ont_fast5_api/read_file_v0.6_raw.fast5": 1,
    "fast5/slow5tools/end_reason/end_reason0.fast5": 10,
    "fast5/slow5tools/various_versions/single_fast5_v2.0.fast5": 1,
}


@pytest.mark.parametrize("name, count", sorted(COUNTS.items()))
def test_read_counts(shared_data: Path, name: str, count: int) -> None:
    reads, failures = reads_of(shared_data / name)
    assert (len(reads), failures) == (count, [])
    for read in reads:
        assert read.raw.dtype == np.int16 and read.num_samples > 0
        assert read.source == shared_data / name


def test_known_lambda_read(shared_data: Path) -> None:
    for path in (shared_data / "accuracy/lambda_r941/lambda_r941.pod5", shared_data / f"accuracy/lambda_r941/fast5/{LAMBDA_READ}.fast5"):
        (read,), _ = reads_of(path, read_ids={LAMBDA_READ})
        assert read.read_id == LAMBDA_READ
        assert read.num_samples == 424023
        assert (read.sample_rate, read.channel) == (4000, 1)
        assert read.run_id == "248f8352d7c1a9aaaeb9f5207ceb43108a8cd9cb"
        assert read.start_time == "2021-03-15T15:46:26.128+00:00"  # 15:36:48 + 2312512 / 4000 s
        assert read.offset == 4.0 and read.scale == pytest.approx(1497.7718505859375 / 8192)


def test_pod5_and_fast5_of_the_lambda_set_agree(shared_data: Path) -> None:
    folder = shared_data / "accuracy/lambda_r941"
    from_pod5 = {r.read_id: r for r in reads_of(folder / "lambda_r941.pod5")[0]}
    from_fast5 = {r.read_id: r for r in reads_of(*find_inputs([folder / "fast5"]))[0]}
    assert len(from_pod5) == 50 and from_pod5.keys() == from_fast5.keys()
    for read_id, a in from_pod5.items():
        b = from_fast5[read_id]
        np.testing.assert_array_equal(a.raw, b.raw)
        np.testing.assert_allclose(a.pa(), b.pa(), rtol=1e-6, atol=1e-4)  # pod5 stores scale as float32
        assert (a.sample_rate, a.channel, a.start_time, a.run_id) == (b.sample_rate, b.channel, b.start_time, b.run_id)


def test_vbz_file_matches_its_gzip_twin(shared_data: Path) -> None:
    vbz, _ = reads_of(shared_data / "fast5/ont_fast5_api/vbz_reads/vbz_reads.fast5")
    gzip, _ = reads_of(shared_data / "fast5/ont_fast5_api/multi_read/batch_0.fast5")
    assert [r.read_id for r in vbz] == [r.read_id for r in gzip]
    for a, b in zip(vbz, gzip):
        np.testing.assert_array_equal(a.raw, b.raw)
        assert (a.start_time, a.scale, a.offset) == (b.start_time, b.scale, b.offset)


def test_multi_read_fast5_matches_its_pod5_conversions(shared_data: Path) -> None:
    folder = shared_data / "pod5/pod5-file-format"
    fast5 = {r.read_id: r for r in reads_of(folder / "multi_fast5_zip.fast5")[0]}
    for version in range(4):
        converted = reads_of(folder / f"old_versions/multi_fast5_zip_v{version}.pod5")[0]
        assert {r.read_id for r in converted} == fast5.keys()
        for read in converted:
            np.testing.assert_array_equal(read.raw, fast5[read.read_id].raw)
            assert read.start_time == fast5[read.read_id].start_time


def test_old_single_read_fast5s_from_2017(shared_data: Path) -> None:
    files = find_inputs([shared_data / "models/deepnano-blitz/test_sample"])
    reads, failures = reads_of(*files)
    assert failures == [] and len(reads) == len(files) == 48
    assert {r.sample_rate for r in reads} == {4000}
    assert all(r.start_time.startswith("2017-04-24T") for r in reads)


@pytest.mark.parametrize(
    "name, start_time",
    [
        ("single_fast5_v0.6.fast5", "2016-12-13T19:44:47.964+00:00"),  # exp_start_time '1481657610' (epoch s)
        ("multi_fast5_v2.3.fast5", "2021-08-26T06:28:53.291+00:00"),  # '2021-08-26T15:38:50.348565+10:00'
    ],
)
def test_exp_start_time_formats(shared_data: Path, name: str, start_time: str) -> None:
    reads, _ = reads_of(shared_data / "fast5/slow5tools/various_versions" / name)
    assert reads[0].start_time == start_time


def test_degenerate_dorado_reads(shared_data: Path) -> None:
    (bomb,), _ = reads_of(shared_data / "pod5/dorado/degenerate/trimming_bomb.pod5")
    assert (bomb.num_samples, bomb.sample_rate) == (10, 20000)
    (overtrim,), _ = reads_of(shared_data / "pod5/dorado/degenerate/overtrim.pod5")
    assert (overtrim.num_samples, overtrim.sample_rate) == (2168, 5000)


def test_read_id_filter(shared_data: Path) -> None:
    folder = shared_data / "accuracy/lambda_r941"
    wanted = {LAMBDA_READ, "ffe4206f-6220-4283-906f-43c602975031"}
    inputs = [folder / "lambda_r941.pod5", *find_inputs([folder / "fast5"])]
    reads, failures = reads_of(*inputs, read_ids=wanted)
    assert failures == [] and sorted(r.read_id for r in reads) == sorted(list(wanted) * 2)
    multi = shared_data / "fast5/ont_fast5_api/multi_read/batch_0.fast5"
    assert [r.read_id for r in reads_of(multi, read_ids={"fe8a3026-d1f4-46b3-8daa-e610f27acde1"})[0]] == ["fe8a3026-d1f4-46b3-8daa-e610f27acde1"]
    assert reads_of(folder / "lambda_r941.pod5", read_ids={"not-a-uuid", str(uuid.uuid4())}) == ([], [])


# ---- bad files ------------------------------------------------------------------

ERR_REASONS = {
    "R7_1.fast5": "no raw reads",  # events/basecalls only, from 2015
    "empty_fast5.fast5": "empty",
    "malformed_readid2.fast5": "malformed read id",
    "missing_primary_field.fast5": "channel_id/range",
    "not_a_fast5.fast5": "cannot open as fast5",
    "single_fast5_no_raw_grp.fast5": "no raw reads",
}


@pytest.mark.parametrize("name, reason", sorted(ERR_REASONS.items()))
def test_malformed_fast5_files_fail_cleanly(shared_data: Path, name: str, reason: str) -> None:
    path = shared_data / "fast5/slow5tools/err" / name
    reads, failures = reads_of(path)
    assert reads == [] and len(failures) == 1
    assert failures[0].source == path and reason in failures[0].reason and "\n" not in failures[0].reason


def test_fast5_without_offset_fails_with_the_attribute_named(shared_data: Path) -> None:
    reads, (failure,) = reads_of(shared_data / "fast5/slow5tools/unusual/offset_missing.fast5")
    assert reads == [] and "channel_id/offset" in failure.reason
    assert failure.read_id == "a649a4ae-c43d-492a-b6a1-a5b8b8076be4"


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    fake = tmp_path / "notes.pod5"
    fake.write_text("these are not reads\n")
    other = tmp_path / "reads.slow5"
    other.write_text("x")
    reads, failures = reads_of(tmp_path / "gone.fast5", fake, other, tmp_path / "empty.fast5")
    assert reads == [] and [f.source.name for f in failures] == ["gone.fast5", "notes.pod5", "reads.slow5", "empty.fast5"]
    assert "no such file" in failures[0].reason and "pod5" in failures[1].reason


def test_truncated_files(shared_data: Path, tmp_path: Path) -> None:
    for source in (shared_data / "accuracy/lambda_r941/lambda_r941.pod5", shared_data / "pod5/pod5-file-format/multi_fast5_zip.fast5"):
        data = source.read_bytes()
        cut = tmp_path / source.name
        cut.write_bytes(data[: len(data) // 2])
        reads, failures = reads_of(cut)
        assert failures and all(f.source == cut for f in failures)


def test_fast5_per_read_problems(tmp_path: Path) -> None:
    """A multi-read file with one good read, an empty signal and a missing group: one Read, two failures."""
    path = tmp_path / "mixed.fast5"
    ids = sorted(str(uuid.uuid4()) for _ in range(3))  # HDF5 lists groups by name
    with h5py.File(path, "w") as f:
        for read_id, signal in zip(ids, (np.arange(100, dtype=np.int16), np.zeros(0, np.int16), None)):
            group = f.create_group(f"read_{read_id}")
            group.create_group("tracking_id").attrs.update({"exp_start_time": b"2020-01-01T00:00:00Z", "run_id": b"run"})
            group.create_group("channel_id").attrs.update(
                {"digitisation": 8192.0, "range": 1400.0, "offset": 5.0, "sampling_rate": 4000.0, "channel_number": b"12"}
            )
            if signal is not None:
                raw = group.create_group("Raw")
                raw.attrs.update({"read_id": read_id.encode(), "start_time": np.uint64(6002)})
                raw.create_dataset("Signal", data=signal)
    reads, failures = reads_of(path)
    assert [r.read_id for r in reads] == ids[:1]
    np.testing.assert_allclose(reads[0].pa(), 1400.0 / 8192 * (np.arange(100) + 5.0), rtol=1e-6)
    assert reads[0].start_time == "2020-01-01T00:00:01.501+00:00"  # 6002 / 4000 s = 1.5005 s, rounded half up
    assert reads[0].channel == 12
    assert [(f.read_id, "empty signal" in f.reason or "no raw signal" in f.reason) for f in failures] == [(ids[1], True), (ids[2], True)]


def test_pod5_zero_length_signal(tmp_path: Path) -> None:
    path = tmp_path / "empty_signal.pod5"
    run_info = pod5.RunInfo(
        acquisition_id="run", acquisition_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc), adc_max=4095,
        adc_min=-4096, context_tags={}, experiment_name="", flow_cell_id="", flow_cell_product_code="",
        protocol_name="", protocol_run_id="", protocol_start_time=datetime(2020, 1, 1, tzinfo=timezone.utc),
        sample_id="", sample_rate=4000, sequencing_kit="", sequencer_position="", sequencer_position_type="",
        software="", system_name="", system_type="", tracking_id={},
    )
    ids = [uuid.uuid4(), uuid.uuid4()]
    with pod5.Writer(path) as writer:
        for read_id, samples in zip(ids, (0, 50)):
            writer.add_read(pod5.Read(
                read_id=read_id, end_reason=pod5.EndReason.from_reason_with_default_forced(pod5.EndReasonEnum.UNKNOWN),
                calibration=pod5.Calibration(offset=1.0, scale=0.5), pore=pod5.Pore(channel=7, well=1, pore_type="p"),
                read_number=1, start_sample=4000, median_before=0.0, run_info=run_info,
                signal=np.arange(samples, dtype=np.int16),
            ))
    reads, failures = reads_of(path)
    assert [(f.read_id, f.reason) for f in failures] == [(str(ids[0]), "empty signal (0 samples)")]
    assert [r.read_id for r in reads] == [str(ids[1])]
    assert (reads[0].channel, reads[0].start_time, reads[0].run_id) == (7, "2020-01-01T00:00:01.000+00:00", "run")


def test_start_time_rounds_like_dorado() -> None:
    start = datetime(2021, 3, 15, 15, 36, 48, 999_900, tzinfo=timezone.utc)  # whole ms taken first: .999
    assert start_time_iso(start, 2, 4000) == "2021-03-15T15:36:49.000+00:00"  # + round(0.5 ms) = 1 ms
    assert start_time_iso(datetime(2020, 1, 1), 0, 3000) == "2020-01-01T00:00:00.000+00:00"  # naive = UTC


# ---- fuzzing: random and mutated bytes never raise ------------------------------------

SEEDS = ("pod5/dorado/single_na24385.pod5", "fast5/ont_fast5_api/single_reads/read0.fast5", "fast5/ont_fast5_api/vbz_reads/vbz_reads.fast5")


@settings(max_examples=50, deadline=5000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.sampled_from(SEEDS),
    suffix=st.sampled_from([".pod5", ".fast5"]),
    random_bytes=st.one_of(st.none(), st.binary(max_size=2048)),
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=64)), max_size=8),
    keep=st.floats(0.05, 1.0),
)
def test_random_and_mutated_bytes_never_raise(
    shared_data: Path, seed: str, suffix: str, random_bytes: bytes | None, edits: list[tuple[float, bytes]], keep: float
) -> None:
    if random_bytes is not None:
        data = bytearray(random_bytes)
    else:
        data = bytearray((shared_data / seed).read_bytes())
        for where, patch in edits:
            at = int(where * len(data))
            data[at : at + len(patch)] = patch
        data = data[: max(1, int(len(data) * keep))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(bytes(data))
        items = list(iter_reads([path]))
    assert all(isinstance(item, (Read, ReadFailure)) for item in items)
    assert all("\n" not in item.reason for item in items if isinstance(item, ReadFailure))
