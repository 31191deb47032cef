"""Field-proof runs: resume after SIGKILL, watch a folder being written, duplicates, full disk, bad files."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastq_records import parse, read_fastq

MODEL = "deepnano-blitz-w48"


def edgecall(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecall", *args], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def lambda_pod5(shared_data: Path) -> Path:
    return shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"


def lambda_ids(shared_data: Path) -> set[str]:
    return {p.stem for p in (shared_data / "accuracy" / "lambda_r941" / "fast5").glob("*.fast5")}


def test_sigkill_then_resume_gives_one_record_per_read(lambda_pod5: Path, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.fastq"
    proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", "deepnano-blitz-w96", "--batch-size", "2", "-o", str(out), str(lambda_pod5)],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(out, "ab") as fh:  # as if killed in the middle of writing a record
        fh.write(b"@0a15def6-87d4-4028-b2b2-9c220e3daad6\tqs:f:9.0\nACGTAC")
    before = out.read_bytes()
    result = edgecall("run", "--model", "deepnano-blitz-w96", "--resume-from", str(out), "-o", str(out), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and "cut-off record" in result.stderr
    records = read_fastq(out)
    ids = [r.read_id for r in records]
    assert len(ids) == len(set(ids)) == 50 and set(ids) == lambda_ids(shared_data)
    kept = parse(before[: before.rindex(b"\n@") + 1].decode())  # the complete records written before the kill
    assert 0 < len(kept) < 50
    assert records[: len(kept)] == kept


def test_resume_into_a_new_gz_file(lambda_pod5: Path, tmp_path: Path) -> None:
    first = edgecall("run", "--model", MODEL, "--max-reads", "7", "-o", str(tmp_path / "part.fastq"), str(lambda_pod5))
    assert first.returncode == 0, first.stderr
    result = edgecall("run", "--model", MODEL, "--resume-from", str(tmp_path / "part.fastq"), "-o", str(tmp_path / "all.fastq.gz"), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    records = read_fastq(tmp_path / "all.fastq.gz")
    assert len({r.read_id for r in records}) == len(records) == 50
    assert records[:7] == read_fastq(tmp_path / "part.fastq")


def _write_slowly(source: Path, dest: Path, pause: float) -> None:
    """Write a file in two halves with a pause, as MinKNOW writes while sequencing."""
    data = source.read_bytes()
    with open(dest, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(pause)
        fh.write(data[len(data) // 2 :])


def test_watch_calls_every_read_of_every_file_once(shared_data: Path, tmp_path: Path) -> None:
    pod5 = pytest.importorskip("pod5")
    sources = []
    with pod5.Reader(shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5") as reader:
        records = [r.to_read() for r in reader.reads()]
    for i in range(3):
        path = tmp_path / f"src{i}.pod5"
        with pod5.Writer(path) as writer:
            writer.add_reads(records[i * 4 : i * 4 + 4])
        sources.append(path)
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copyfile(sources[0], folder / "batch0.pod5")  # already there when the run starts

    def sequencer() -> None:
        time.sleep(2.0)
        _write_slowly(sources[1], folder / "batch1.pod5", pause=2.5)
        time.sleep(1.0)
        _write_slowly(sources[2], folder / "batch2.pod5", pause=1.5)

    writer_thread = threading.Thread(target=sequencer)
    writer_thread.start()
    result = edgecall("run", "--model", MODEL, "--watch", str(folder), "--watch-idle", "6")
    writer_thread.join()
    assert result.returncode == 0, result.stderr
    ids = [r.read_id for r in parse(result.stdout)]
    assert len(ids) == len(set(ids)) == 12
    assert set(ids) == {str(r.read_id) for r in records[:12]}


def test_duplicate_read_ids_are_named_once(shared_data: Path, lambda_pod5: Path, tmp_path: Path) -> None:
    one = sorted((shared_data / "accuracy" / "lambda_r941" / "fast5").glob("*.fast5"))[0]
    result = edgecall("run", "--model", MODEL, "--max-reads", "3", str(lambda_pod5), str(one))
    assert result.returncode == 3, result.stderr
    assert len(parse(result.stdout)) == 3
    dup = [line for line in result.stderr.splitlines() if "duplicate read id" in line]
    assert len(dup) == 1 and one.stem in dup[0]  # inputs are called in sorted order: the pod5's copy is the duplicate
    assert lambda_pod5.name in dup[0]


def test_full_disk_is_one_clear_error(lambda_pod5: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    result = edgecall("run", "--model", MODEL, "-o", "/dev/full", str(lambda_pod5))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "No space left on device" in result.stderr and "--resume-from" in result.stderr


def test_real_malformed_files_are_named_and_skipped(shared_data: Path, lambda_pod5: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    bad = sorted((shared_data / "fast5" / "slow5tools" / "err").glob("*.fast5")) + sorted((shared_data / "pod5" / "dorado" / "degenerate").glob("*.pod5"))
    for f in bad:
        shutil.copyfile(f, folder / f.name)
    shutil.copyfile(lambda_pod5, folder / "good.pod5")
    (folder / "empty.pod5").write_bytes(b"")
    data = lambda_pod5.read_bytes()
    (folder / "truncated.pod5").write_bytes(data[: len(data) // 3])
    corrupt = bytearray(data)
    for i in range(100_000, len(corrupt), 50_000):
        corrupt[i : i + 64] = b"\xff" * 64
    (folder / "corrupt.pod5").write_bytes(bytes(corrupt))
    result = edgecall("run", "--model", MODEL, str(folder))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    called = {r.read_id for r in parse(result.stdout)}
    assert lambda_ids(shared_data) <= called  # every good read out (degenerate files may hold callable reads too)
    for name in ("empty.pod5", "truncated.pod5", "not_a_fast5.fast5", "empty_fast5.fast5"):
        assert any(name in line for line in result.stderr.splitlines() if line.startswith("edgecall: skipped")), name


def test_a_fast5_reader_that_dies_is_reported_at_once_not_after_the_stall_limit() -> None:
    """A native crash inside libhdf5 (here: the reader child killed while it spins in the hanging file) is
    reported within a second or two, not after the stall limit (60 s by default, per file)."""
    import multiprocessing as mp
    import os

    from edgecall.runtime.read import ReadFailure
    from edgecall.runtime.readers.isolated import iter_fast5_isolated

    source = Path(__file__).parent / "data" / "hdf5_hang.fast5"
    reads = iter_fast5_isolated(source, stall_seconds=600)

    def kill_the_reader() -> None:
        deadline = time.monotonic() + 60
        while not mp.active_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # inside the hang by now
        for child in mp.active_children():
            os.kill(child.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_reader)
    killer.start()
    started = time.monotonic()
    failure = next(reads)
    waited = time.monotonic() - started
    killer.join()
    reads.close()
    assert isinstance(failure, ReadFailure) and failure.source == source
    assert "crashed" in failure.reason and f"exit status -{int(signal.SIGKILL)}" in failure.reason, failure.reason
    assert waited < 30, waited


def test_a_fast5_that_hangs_libhdf5_is_reported_and_the_run_goes_on(lambda_pod5: Path, tmp_path: Path) -> None:
    import os

    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copyfile(Path(__file__).parent / "data" / "hdf5_hang.fast5", folder / "hangs.fast5")
    shutil.copyfile(lambda_pod5, folder / "good.pod5")
    env = {**os.environ, "EDGECALL_READ_STALL_SECONDS": "3"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "edgecall", "run", "--model", MODEL, str(folder)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert time.monotonic() - started < 120
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert len(parse(result.stdout)) == 50
    assert any("hangs.fast5" in line and "stalled" in line for line in result.stderr.splitlines())
