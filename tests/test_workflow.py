"""workflow/Snakefile: a folder of pod5 files called one job per file by Snakemake, merged into one BAM and one summary."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = "deepnano-blitz-w48"


def split_pod5(source: Path, folder: Path, sizes: tuple[int, ...]) -> list[list[str]]:
    """Copy the first reads of ``source`` into one pod5 file per size; the read ids of each file."""
    import pod5

    folder.mkdir()
    ids: list[list[str]] = []
    with pod5.Reader(source) as reader:
        records = reader.reads()
        for index, size in enumerate(sizes):
            with pod5.Writer(folder / f"part{index}.pod5") as writer:
                chosen = [next(records).to_read() for _ in range(size)]
                writer.add_reads(chosen)
            ids.append([str(read.read_id) for read in chosen])
    return ids


def test_snakemake_calls_each_file_as_a_job_and_merges_every_read_once(shared_data: Path, tmp_path: Path) -> None:
    if shutil.which("snakemake") is None and subprocess.run([sys.executable, "-m", "snakemake", "--version"], capture_output=True).returncode:
        pytest.skip("snakemake is not installed")
    import pysam

    ids = split_pod5(shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5", tmp_path / "reads", (3, 2))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "workflow" / "Snakefile"), "--cores", "2", "--quiet",
         "--directory", str(tmp_path), "--config", f"reads={tmp_path / 'reads'}", f"out={out}", f"model={MODEL}", "threads=1"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    headers = []
    for shard in sorted((out / "shards").glob("shard_*.bam")):
        with pysam.AlignmentFile(str(shard), check_sq=False) as handle:
            headers.append(handle.header.to_dict())
            assert sorted(r.query_name for r in handle) == sorted(ids[len(headers) - 1])  # one job per file
    assert len(headers) == 2 and headers[0] == headers[1]
    assert [g["ID"] for g in headers[0]["RG"]] == [f"248f8352d7c1a9aaaeb9f5207ceb43108a8cd9cb_{MODEL}"]
    with pysam.AlignmentFile(str(out / "calls.bam"), check_sq=False) as merged:
        names = [r.query_name for r in merged]
        assert merged.header.to_dict() == headers[0]
    assert sorted(names) == sorted(ids[0] + ids[1]) and len(set(names)) == 5
    rows = (out / "summary.tsv").read_text().splitlines()
    assert rows[0].startswith("filename\tread_id") and sorted(row.split("\t")[1] for row in rows[1:]) == sorted(names)


def test_merge_leaves_out_a_read_found_again_and_refuses_mixed_headers(tmp_path: Path) -> None:
    import pysam

    from edgecall.errors import EdgecallError
    from edgecall.workflow import merge

    def shard(path: Path, names: list[str], program: str = "edgecall") -> Path:
        header = {"HD": {"VN": "1.6", "SO": "unknown"}, "PG": [{"ID": "basecaller", "PN": program}]}
        with pysam.AlignmentFile(str(path), "wb", header=header) as out:
            for name in names:
                record = pysam.AlignedSegment(out.header)
                record.query_name, record.flag, record.query_sequence = name, 4, "ACGT"
                record.query_qualities = pysam.qualitystring_to_array("5555")
                out.write(record)
        return path

    a, b = shard(tmp_path / "a.bam", ["r1", "r2"]), shard(tmp_path / "b.bam", ["r2", "r3"])
    assert merge([a, b], [], tmp_path / "m.bam", None) == (3, 1)
    with pysam.AlignmentFile(str(tmp_path / "m.bam"), check_sq=False) as handle:
        assert [r.query_name for r in handle] == ["r1", "r2", "r3"]
    with pytest.raises(EdgecallError, match="header differs"):
        merge([a, shard(tmp_path / "c.bam", ["r4"], program="other")], [], tmp_path / "n.bam", None)
