"""How a run ends or waits: an idle watched folder, Ctrl-C and SIGTERM, a closed stdout, a killed parent."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fastq_records import parse

from edgecall.package import load_package
from edgecall.runtime.pipeline import Basecaller, RunOptions
from edgecall.runtime.read import IDLE, CalledRead, Idle

MODEL = "deepnano-blitz-w48"


@pytest.fixture(scope="module")
def lambda_pod5(shared_data: Path) -> Path:
    return shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"


@pytest.fixture(scope="module")
def small_pod5s(lambda_pod5: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three pod5 files of 3 reads each, as a sequencer writes them one after another."""
    pod5 = pytest.importorskip("pod5")
    folder = tmp_path_factory.mktemp("sources")
    with pod5.Reader(lambda_pod5) as reader:
        records = [r.to_read() for r in reader.reads()][:9]
    paths = []
    for i in range(3):
        path = folder / f"part{i}.pod5"
        with pod5.Writer(path) as writer:
            writer.add_reads(records[3 * i : 3 * i + 3])
        paths.append(path)
    return paths


def _records(path: Path) -> int:
    return len(parse(path.read_text())) if path.exists() else 0  # the writer hands over whole records only


def _wait_for(condition, seconds: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_an_idle_marker_brings_out_every_read_before_it(small_pod5s: list[Path]) -> None:
    """A part-filled batch and the inference requests in flight are finished when the input waits."""
    caller = Basecaller(load_package(MODEL), RunOptions(batch_size=64))  # 3 reads fill far less than a batch
    more = threading.Event()

    def inputs():  # noqa: ANN202
        yield small_pod5s[0]
        yield IDLE
        assert more.wait(60), "the run waited for input it did not need"
        yield small_pod5s[1]

    seen: list[str] = []
    try:
        for item in caller.run(inputs()):
            if isinstance(item, Idle):
                assert len(seen) == 3  # all of the first file's reads, before any more input was given
                more.set()
                seen.append("IDLE")
                continue
            assert isinstance(item, CalledRead)
            seen.append(item.read.read_id)
    finally:
        caller.close()
    assert len(seen) == 7 and seen[3] == "IDLE"


def test_watch_writes_each_file_within_seconds_and_ctrl_c_loses_none(small_pod5s: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copyfile(small_pod5s[0], folder / "batch0.pod5")
    out = tmp_path / "calls.fastq"
    proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", MODEL, "--watch", str(folder), "-o", str(out)],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(lambda: _records(out) == 3, 40), "the first file's reads did not reach the output"
        shutil.copyfile(small_pod5s[1], folder / "batch1.tmp")
        (folder / "batch1.tmp").rename(folder / "batch1.pod5")  # complete from the moment it appears
        complete = time.monotonic()
        assert _wait_for(lambda: _records(out) == 6, 20), "a complete file's reads took over 20 s to reach the output"
        assert time.monotonic() - complete < 20
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted by SIGINT: no more input was read; the 6 reads already read were finished and written" in stderr
    assert {r.read_id for r in parse(out.read_text())} == _ids(small_pod5s[:2])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_finishes_and_writes_every_read_already_read(sig: int, lambda_pod5: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.fastq"
    proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", MODEL, "--batch-size", "2", "-o", str(out), str(lambda_pod5)],
                            stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: out.exists() and out.stat().st_size > 0, 60)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    records = parse(out.read_text())
    if len(records) == 50:
        pytest.skip("the run finished before the signal came")
    assert proc.returncode == 128 + sig, stderr
    name = signal.Signals(sig).name
    assert f"interrupted by {name}: no more input was read; the {len(records)} reads already read were finished and written" in stderr
    assert f"{len(records)} reads called" in stderr


def test_a_second_interrupt_stops_at_once(lambda_pod5: Path, tmp_path: Path) -> None:
    out = tmp_path / "calls.fastq"
    proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", MODEL, "--batch-size", "1", "-o", str(out), str(lambda_pod5)],
                            stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: out.exists() and out.stat().st_size > 0, 60)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - stopped < 5
    assert proc.returncode == 130
    assert "interrupted again: stopping at once; reads not yet written are lost" in stderr
    parse(out.read_text())  # whole records only


def test_a_closed_stdout_never_aborts(lambda_pod5: Path) -> None:
    """`edgecall run ... | head -4`: the reader goes away while inference threads are busy."""
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", MODEL, str(lambda_pod5)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        proc.wait(timeout=120)
        assert lines[0].startswith(b"@") and lines[2] == b"+\n"
        assert proc.returncode in (0, 141), (proc.returncode, stderr)
        assert "terminate called" not in stderr and "Traceback" not in stderr and "rror" not in stderr, stderr


def _ids(paths: list[Path]) -> set[str]:
    import pod5

    ids: set[str] = set()
    for path in paths:
        with pod5.Reader(path) as reader:
            ids.update(str(r.read_id) for r in reader.reads())
    return ids


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found - {root}


def _multi_read_fast5(shared_data: Path, path: Path) -> Path:
    """The 50 lambda reads in one multi-read fast5: more than the reader child may queue, so it blocks."""
    import h5py
    import vbz_h5py_plugin  # noqa: F401

    with h5py.File(path, "w") as out:
        for single in sorted((shared_data / "accuracy" / "lambda_r941" / "fast5").glob("*.fast5")):
            with h5py.File(single, "r") as f:
                reads = f["Raw/Reads"]
                raw = reads[next(iter(reads))]
                group = out.create_group(f"read_{single.stem}")
                f.copy(raw, group, "Raw")
                f.copy(f["UniqueGlobalKey/channel_id"], group, "channel_id")
                f.copy(f["UniqueGlobalKey/tracking_id"], group, "tracking_id")
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
@pytest.mark.parametrize("case", ["blocked", "hung"])
def test_fast5_helper_processes_die_with_a_killed_run(case: str, shared_data: Path, tmp_path: Path) -> None:
    """kill -9 of the run: its forkserver, the reader child (blocked on a full queue, or spinning inside
    libhdf5 with the GIL held) and multiprocessing's resource tracker are gone within seconds."""
    import os

    if case == "blocked":
        source = _multi_read_fast5(shared_data, tmp_path / "multi.fast5")
    else:
        source = Path(__file__).parent / "data" / "hdf5_hang.fast5"
    env = {**os.environ, "EDGECALL_READ_STALL_SECONDS": "600"}
    proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", MODEL, "--batch-size", "1", str(source)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    helpers: set[int] = set()
    try:
        assert _wait_for(lambda: len(_descendants(proc.pid)) >= 3, 60), "the fast5 reader child did not start"
        time.sleep(1.0)  # the child is blocked on its queue, or inside the hang, by now
        helpers = _descendants(proc.pid)
        proc.kill()
        proc.wait()
        assert _wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), 5), "helpers outlived the run"
    finally:
        for pid in helpers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
