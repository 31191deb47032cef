"""End-to-end runs of `edgecall run` on real reads: counts, formats, backends, options, bad files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastq_records import parse, read_fastq


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "edgecall", "run", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def lambda_dir(shared_data: Path) -> Path:
    return shared_data / "accuracy" / "lambda_r941"


@pytest.fixture(scope="module")
def pod5_calls(tiny_crf_package: Path, lambda_dir: Path) -> list:
    return parse(run("--model", str(tiny_crf_package), str(lambda_dir / "lambda_r941.pod5")).stdout)


def lambda_ids(lambda_dir: Path) -> set[str]:
    return {p.stem for p in (lambda_dir / "fast5").glob("*.fast5")}


def test_all_lambda_reads_are_called_with_tags(pod5_calls: list, lambda_dir: Path) -> None:
    assert len(pod5_calls) == 50
    assert {r.read_id for r in pod5_calls} == lambda_ids(lambda_dir)
    for r in pod5_calls:
        assert set(r.tags) == {"qs", "du", "ns", "ts", "mx", "ch", "st", "rn", "fn", "sm", "sd", "sv", "dx", "RG", "DT", "PU"}
        assert re.fullmatch(r"f:\d+\.\d\d", r.tags["qs"])
        assert re.fullmatch(r"i:\d+", r.tags["ch"])
        assert re.fullmatch(r"Z:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", r.tags["st"])
        assert r.tags["RG"].endswith("_tiny")


def test_fast5_folder_gives_the_same_calls_as_pod5(pod5_calls: list, tiny_crf_package: Path, lambda_dir: Path) -> None:
    fast5 = parse(run("--model", str(tiny_crf_package), str(lambda_dir / "fast5")).stdout)
    assert sorted((r.read_id, r.sequence, r.quality, r.tags["st"]) for r in fast5) == sorted(
        (r.read_id, r.sequence, r.quality, r.tags["st"]) for r in pod5_calls
    )
    # every header tag but the file name agrees: both readers give the same run facts
    def tags(records: list) -> dict:
        return {r.read_id: {k: v for k, v in r.tags.items() if k != "fn"} for r in records}

    assert tags(fast5) == tags(pod5_calls)


def test_multi_read_and_vbz_fast5(tiny_crf_package: Path, shared_data: Path) -> None:
    api = shared_data / "fast5" / "ont_fast5_api"
    plain = parse(run("--model", str(tiny_crf_package), str(api / "multi_read" / "batch_0.fast5")).stdout)
    vbz = parse(run("--model", str(tiny_crf_package), str(api / "vbz_reads" / "vbz_reads.fast5")).stdout)
    assert len(plain) == 4 and all(r.sequence for r in plain)
    def calls(records: list) -> list:  # all but the input file's name (fn:Z)
        return [(r.read_id, r.sequence, r.quality, {k: v for k, v in r.tags.items() if k != "fn"}) for r in records]

    assert calls(vbz) == calls(plain)  # the same four reads, VBZ-compressed
    assert {r.tags["fn"] for r in vbz} == {"Z:vbz_reads.fast5"}


def test_backends_give_the_same_scores_on_real_chunks(tiny_crf_package: Path, lambda_dir: Path) -> None:
    import numpy as np

    from edgecall.package import load_package
    from edgecall.runtime.backends import open_backend
    from edgecall.runtime.chunk import cut, plan_chunks
    from edgecall.runtime.readers import iter_reads
    from edgecall.runtime.signal import prepare

    package = load_package(tiny_crf_package)
    read = next(iter_reads([lambda_dir / "lambda_r941.pod5"]))
    signal, _ = prepare(read, package.config.normalisation)
    chunks = cut(signal, plan_chunks(len(signal), 2000, 250, 5), 2000)[:4, None, :]
    outputs = {}
    for device in ("CPU", "ort", "torch"):
        backend = open_backend(package, device, batch_size=4, chunksize=2000)
        outputs[device] = backend(np.ascontiguousarray(chunks))
        assert outputs[device].shape == (400, 4, 1024)
    assert np.abs(outputs["CPU"] - outputs["torch"]).max() < 1e-4
    assert np.abs(outputs["ort"] - outputs["torch"]).max() < 1e-4


def test_options_output_gz_moves_summary_ids(tiny_crf_package: Path, lambda_dir: Path, tmp_path: Path) -> None:
    ids = sorted(lambda_ids(lambda_dir))[:3]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    result = run(
        "--model", str(tiny_crf_package), "-o", str(tmp_path / "out.fastq.gz"), "--emit-moves",
        "--emit-summary", str(tmp_path / "summary.tsv"), "--read-ids", str(tmp_path / "ids.txt"),
        str(lambda_dir / "lambda_r941.pod5"),
    )
    assert result.stdout == ""
    records = read_fastq(tmp_path / "out.fastq.gz")
    assert sorted(r.read_id for r in records) == ids
    for r in records:
        moves = r.tags["mv"].split(",")
        assert moves[0] == "B:c" and moves[1] == "5"
        assert sum(int(m) for m in moves[2:]) == len(r.sequence)
    rows = (tmp_path / "summary.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    assert header[:2] == ["filename", "read_id"] and len(rows) == 4
    assert all(row.split("\t")[header.index("passes_filtering")] == "TRUE" for row in rows[1:])
    assert "3 reads called" in result.stderr


def test_max_reads_and_min_qscore(tiny_crf_package: Path, lambda_dir: Path) -> None:
    assert len(parse(run("--model", str(tiny_crf_package), "--max-reads", "4", str(lambda_dir / "lambda_r941.pod5")).stdout)) == 4
    filtered = run("--model", str(tiny_crf_package), "--max-reads", "4", "--min-qscore", "60", str(lambda_dir / "lambda_r941.pod5"))
    assert filtered.stdout == "" and "0 reads called, 4 filtered" in filtered.stderr


def test_bad_files_among_good_ones(tiny_crf_package: Path, lambda_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((lambda_dir / "fast5").glob("*.fast5"))[:3]
    for f in good:
        (folder / f.name).write_bytes(f.read_bytes())
    (folder / "truncated.fast5").write_bytes(good[0].read_bytes()[:5000])
    (folder / "text.pod5").write_text("not a pod5 file\n")
    (folder / "noraw.fast5").write_bytes((shared_data / "fast5/slow5tools/err/single_fast5_no_raw_grp.fast5").read_bytes())
    result = run("--model", str(tiny_crf_package), str(folder), check=False)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert {r.read_id for r in parse(result.stdout)} == {f.stem for f in good}
    for name in ("truncated.fast5", "text.pod5", "noraw.fast5"):
        assert sum(name in line for line in result.stderr.splitlines()) == 1, result.stderr
    assert "3 reads called" in result.stderr and "3 failed" in result.stderr


def test_closed_stdout_ends_cleanly(tiny_crf_package: Path, lambda_dir: Path) -> None:
    cmd = f"{sys.executable} -m edgecall run --model {tiny_crf_package} {lambda_dir / 'lambda_r941.pod5'} | head -n 2"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=600)
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_wrong_chemistry_is_named_and_skipped(tiny_crf_package: Path, shared_data: Path, lambda_dir: Path) -> None:
    five_khz = shared_data / "pod5" / "slow5-converted" / "one_5khz.pod5"
    result = run("--model", str(tiny_crf_package), str(five_khz), str(lambda_dir / "lambda_r941.pod5"), check=False)
    assert result.returncode == 3 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "one_5khz.pod5" in line]
    assert len(lines) == 1 and "1 read is R10.4.1 (FLO-PRO114M, SQK-LSK114) at 5 kHz; model tiny is R9.4.1 at 4 kHz" in lines[0]
    assert len(parse(result.stdout)) == 50
