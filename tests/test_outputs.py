"""Outputs the ecosystem reads: the sequencing summary (nanoget/NanoPlot), FASTQ header tags, BAM/SAM (pysam)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastq_records import read_fastq

MODEL = "deepnano-blitz-w48"  # the smallest bundled model: real calls, fast


def edgecall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgecall", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def lambda_pod5(shared_data: Path) -> Path:
    return shared_data / "accuracy" / "lambda_r941" / "lambda_r941.pod5"


def pod5_facts(path: Path) -> dict[str, dict]:
    """What pod5 itself says of each read, to check the outputs against."""
    import pod5

    with pod5.Reader(path) as reader:
        return {
            str(r.read_id): {"start": r.start_sample / r.run_info.sample_rate, "samples": r.num_samples,
                             "channel": r.pore.channel, "mux": r.pore.well, "read_number": r.read_number,
                             "run_id": r.run_info.acquisition_id, "flow_cell": r.run_info.flow_cell_id}
            for r in reader.reads()
        }


def summary_rows(path: Path) -> list[dict[str, str]]:
    header, *rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert all(len(row) == len(header) for row in rows)
    return [dict(zip(header, row)) for row in rows]


# ---- summary -------------------------------------------------------------------------------


def test_summary_is_read_by_nanoget_and_matches_the_reads(lambda_pod5: Path, tmp_path: Path) -> None:
    from nanoget.extraction_functions import process_summary

    result = edgecall("run", "--model", MODEL, "--max-reads", "6", "-o", str(tmp_path / "calls.fastq"),
                      "--emit-summary", str(tmp_path / "summary.tsv"), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    records = {r.read_id: r for r in read_fastq(tmp_path / "calls.fastq")}
    frame = process_summary(str(tmp_path / "summary.tsv"), readtype="1D", barcoded=False)  # NanoPlot --summary's loader
    assert len(frame) == len(records) == 6
    assert sorted(frame["lengths"]) == sorted(len(r.sequence) for r in records.values())
    rows = summary_rows(tmp_path / "summary.tsv")
    facts = pod5_facts(lambda_pod5)
    for row in rows:
        record, fact = records[row["read_id"]], facts[row["read_id"]]
        assert row["mean_qscore_template"] == record.tags["qs"].removeprefix("f:")
        assert int(row["sequence_length_template"]) == len(record.sequence)
        assert float(row["start_time"]) == pytest.approx(fact["start"], abs=1e-6)
        assert float(row["duration"]) == pytest.approx(fact["samples"] / 4000, abs=1e-6)
        assert (int(row["channel"]), int(row["mux"]), row["run_id"]) == (fact["channel"], fact["mux"], fact["run_id"])
        assert row["passes_filtering"] == "TRUE" and row["filename"] == lambda_pod5.name


def test_filtered_reads_have_rows_that_do_not_pass(lambda_pod5: Path, tmp_path: Path) -> None:
    result = edgecall("run", "--model", MODEL, "--max-reads", "3", "--min-qscore", "60",
                      "--emit-summary", str(tmp_path / "summary.tsv"), str(lambda_pod5))
    assert result.returncode == 0 and result.stdout == ""
    rows = summary_rows(tmp_path / "summary.tsv")
    assert len(rows) == 3 and {row["passes_filtering"] for row in rows} == {"FALSE"}


def test_resume_keeps_the_kept_reads_rows_and_drops_the_others(lambda_pod5: Path, tmp_path: Path) -> None:
    out, summary = tmp_path / "calls.fastq", tmp_path / "summary.tsv"
    first = edgecall("run", "--model", MODEL, "--max-reads", "5", "-o", str(out), "--emit-summary", str(summary), str(lambda_pod5))
    assert first.returncode == 0, first.stderr
    records = read_fastq(out)
    text = out.read_text()
    out.write_text(text[: text.rindex("\n@") + 1] + "@cut-off")  # the last record cut by a crash: it is called again
    old_rows = summary.read_text().splitlines()
    with open(summary, "a") as fh:
        fh.write(old_rows[1] + "\n")  # a duplicate row
        fh.write(old_rows[2][:30])  # and a row cut off mid-line
    result = edgecall("run", "--model", MODEL, "--max-reads", "3", "--resume-from", str(out), "-o", str(out),
                      "--emit-summary", str(summary), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    rows = summary_rows(summary)
    ids = [row["read_id"] for row in rows]
    assert len(ids) == len(set(ids)) == 4 + 3  # 4 kept, 3 new (the cut-off one among them)
    assert ids == [r.read_id for r in read_fastq(out)]
    assert summary.read_text().splitlines()[1:5] == [line for line in old_rows[1:] if line.split("\t")[1] in ids[:4]]
    assert records[4].read_id in ids[4:]


def test_summary_rows_survive_a_sigkill(lambda_pod5: Path, tmp_path: Path) -> None:
    out, summary = tmp_path / "calls.fastq", tmp_path / "summary.tsv"
    proc = subprocess.Popen([sys.executable, "-m", "edgecall", "run", "--model", MODEL, "--batch-size", "2", "-o", str(out),
                             "--emit-summary", str(summary), str(lambda_pod5)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size == 0):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    text = out.read_text()
    written = {r.read_id for r in read_fastq_text(text[: text.rindex("\n@") + 1] if "\n@" in text else "")}
    rows = summary_rows_text(summary.read_text())
    assert written and written <= {row["read_id"] for row in rows}


def read_fastq_text(text: str) -> list:
    from fastq_records import parse

    return parse(text) if text else []


def summary_rows_text(text: str) -> list[dict[str, str]]:
    lines = text.split("\n")[:-1]  # whole lines only
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


# ---- FASTQ header tags ---------------------------------------------------------------------


def test_fastq_headers_carry_dorado_tags(lambda_pod5: Path, tmp_path: Path) -> None:
    result = edgecall("run", "--model", MODEL, "--max-reads", "2", str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    facts = pod5_facts(lambda_pod5)
    from fastq_records import parse

    for record in parse(result.stdout):
        fact, tags = facts[record.read_id], record.tags
        assert {"RG", "DT", "ch", "st", "PU", "qs", "du", "ns", "ts", "mx", "rn", "fn", "sm", "sd", "sv"} <= set(tags)
        assert tags["PU"] == f"Z:{fact['flow_cell']}" and tags["DT"] == "Z:2021-03-15T15:36:48.000+00:00"
        assert tags["ns"] == f"i:{fact['samples']}" and tags["mx"] == f"i:{fact['mux']}" and tags["rn"] == f"i:{fact['read_number']}"
        assert tags["RG"] == f"Z:{fact['run_id']}_{MODEL}" and tags["sv"] == "Z:med_mad"


# ---- BAM / SAM -----------------------------------------------------------------------------


def test_bam_has_dorado_header_and_tags(lambda_pod5: Path, tmp_path: Path) -> None:
    import pysam

    result = edgecall("run", "--model", MODEL, "--max-reads", "4", "--emit-moves", "-o", str(tmp_path / "calls.bam"), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    assert "not in the BAM header" not in result.stderr
    facts = pod5_facts(lambda_pod5)
    with pysam.AlignmentFile(str(tmp_path / "calls.bam"), "rb", check_sq=False) as bam:
        header = bam.header.to_dict()
        records = list(bam)
    fact = next(iter(facts.values()))
    assert header["HD"] == {"VN": "1.6", "SO": "unknown"}
    assert header["PG"][0]["ID"] == "basecaller" and header["PG"][0]["PN"] == "edgecall" and "-o" in header["PG"][0]["CL"]
    (group,) = header["RG"]
    assert group == {
        "ID": f"{fact['run_id']}_{MODEL}", "PU": fact["flow_cell"], "PM": "X4", "DT": "2021-03-15T15:36:48.000+00:00",
        "PL": "ONT", "DS": f"runid={fact['run_id']} basecall_model={MODEL} model_stride=3", "LB": "no_sample", "SM": "no_sample",
    }
    assert len(records) == 4
    for record in records:
        fact = facts[record.query_name]
        assert record.is_unmapped and record.flag == 4
        tags = record.get_tags(with_value_type=True)
        types = {name: kind for name, _, kind in tags}
        assert types == {"qs": "f", "du": "f", "ns": "i", "ts": "i", "mx": "i", "ch": "i", "st": "Z", "rn": "i", "fn": "Z",
                         "sm": "f", "sd": "f", "sv": "Z", "dx": "i", "RG": "Z", "mv": "B"}
        value = {name: v for name, v, _ in tags}
        assert (value["ns"], value["ch"], value["mx"], value["rn"]) == (fact["samples"], fact["channel"], fact["mux"], fact["read_number"])
        assert value["du"] == pytest.approx(fact["samples"] / 4000, rel=1e-6) and value["RG"] == group["ID"]
        moves = list(value["mv"])
        assert moves[0] == 3 and sum(moves[1:]) == len(record.query_sequence)
    sam = pysam.view(str(tmp_path / "calls.bam")).splitlines()[0].split("\t")
    assert "mv:B:c,3," + ",".join(map(str, list(records[0].get_tag("mv"))[1:3])) in "\t".join(sam)


def test_sam_file_and_bam_on_stdout_hold_the_same_records(lambda_pod5: Path, tmp_path: Path) -> None:
    import pysam

    sam = edgecall("run", "--model", MODEL, "--max-reads", "2", "-o", str(tmp_path / "calls.sam"), str(lambda_pod5))
    assert sam.returncode == 0, sam.stderr
    with open(tmp_path / "stdout.bam", "wb") as out:
        piped = subprocess.run([sys.executable, "-m", "edgecall", "run", "--model", MODEL, "--max-reads", "2", "--emit-bam", str(lambda_pod5)],
                               stdout=out, stderr=subprocess.PIPE, timeout=600)
    assert piped.returncode == 0, piped.stderr

    def records(path: Path) -> list[str]:  # as SAM text: BAM keeps float32 tags that SAM prints to 6 digits
        return pysam.view(str(path)).splitlines()

    assert (tmp_path / "calls.sam").read_text().startswith("@HD\tVN:1.6")
    assert len(records(tmp_path / "calls.sam")) == 2 and records(tmp_path / "calls.sam") == records(tmp_path / "stdout.bam")


def test_resume_from_a_bam_cut_off_by_a_crash(lambda_pod5: Path, tmp_path: Path) -> None:
    import pysam

    out = tmp_path / "calls.bam"
    first = edgecall("run", "--model", MODEL, "--max-reads", "5", "-o", str(out), str(lambda_pod5))
    assert first.returncode == 0, first.stderr
    with pysam.AlignmentFile(str(out), check_sq=False) as handle:
        before = [(r.query_name, r.query_sequence) for r in handle]
    data = out.read_bytes()
    out.write_bytes(data[: int(len(data) * 0.9)])  # as a kill leaves it: no EOF block, the last block cut
    result = edgecall("run", "--model", MODEL, "--max-reads", "2", "--resume-from", str(out), "-o", str(out), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and "cut-off end" in result.stderr
    with pysam.AlignmentFile(str(out), check_sq=False) as handle:  # a whole BAM again: it reads to its EOF block
        after = [(r.query_name, r.query_sequence) for r in handle]
    kept = int(result.stderr.split("resuming: ")[1].split()[0])
    assert 0 < kept < 5 and after[:kept] == before[:kept]
    assert len(after) == kept + 2 and len({name for name, _ in after}) == len(after)
    assert [name for name, _ in after] == [name for name, _ in before][: kept + 2]  # kept < 5: the next reads in order


def test_resume_refuses_another_format(lambda_pod5: Path, tmp_path: Path) -> None:
    first = edgecall("run", "--model", MODEL, "--max-reads", "1", "-o", str(tmp_path / "calls.fastq"), str(lambda_pod5))
    assert first.returncode == 0, first.stderr
    result = edgecall("run", "--model", MODEL, "--resume-from", str(tmp_path / "calls.fastq"), "-o", str(tmp_path / "calls.bam"), str(lambda_pod5))
    assert result.returncode != 0 and "resume into the same format" in result.stderr and "Traceback" not in result.stderr


# ---- --reference ---------------------------------------------------------------------------


def _fasta(path: Path) -> dict[str, str]:
    sequences: dict[str, list[str]] = {}
    name = ""
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            sequences[name] = []
        elif line:
            sequences[name].append(line.strip().upper())
    return {k: "".join(v) for k, v in sequences.items()}


def _edit_distance(record, reference: str) -> int:  # noqa: ANN001 - pysam.AlignedSegment
    """NM recomputed from the CIGAR, the read and the reference (independent of minimap2's tags)."""
    distance, query, target = 0, record.query_sequence, record.reference_start
    position = 0
    for op, length in record.cigartuples:
        if op in (0, 7, 8):  # M = X
            distance += sum(a != b for a, b in zip(query[position:position + length], reference[target:target + length]))
            position, target = position + length, target + length
        elif op == 1:
            distance, position = distance + length, position + length
        elif op == 2:
            distance, target = distance + length, target + length
        elif op == 4:
            position += length
    return distance


def test_reference_gives_aligned_bam_with_the_default_model(shared_data: Path, lambda_pod5: Path, tmp_path: Path) -> None:
    import pysam

    reference = shared_data / "accuracy" / "lambda_r941" / "Lambda_phage.fna"
    result = edgecall("run", "--reference", str(reference), "-o", str(tmp_path / "aligned.bam"), str(lambda_pod5))
    assert result.returncode == 0, result.stderr
    genome = _fasta(reference)
    with pysam.AlignmentFile(str(tmp_path / "aligned.bam")) as bam:
        assert [(s["SN"], s["LN"]) for s in bam.header.to_dict()["SQ"]] == [(name, len(seq)) for name, seq in genome.items()]
        records = list(bam)
    primary = [r for r in records if not (r.is_secondary or r.is_supplementary)]
    assert len(primary) == 50 and len({r.query_name for r in primary}) == 50
    mapped = [r for r in primary if not r.is_unmapped]
    assert len(mapped) >= 45
    assert any(r.is_reverse for r in mapped) and any(not r.is_reverse for r in mapped)
    for record in mapped:
        assert record.get_tag("NM") == _edit_distance(record, genome[record.reference_name])
        assert record.get_tag("RG").endswith("_edgecall-r941-v2") and record.has_tag("MD") and record.has_tag("qs")
        assert record.infer_read_length() == len(record.query_sequence)
    for record in records:
        if record.is_supplementary or record.is_secondary:
            assert record.query_name in {r.query_name for r in mapped}


def test_reference_needs_bam_output(shared_data: Path, lambda_pod5: Path) -> None:
    reference = shared_data / "accuracy" / "lambda_r941" / "Lambda_phage.fna"
    result = edgecall("run", "--reference", str(reference), str(lambda_pod5))
    assert result.returncode != 0 and "-o calls.bam" in result.stderr and "Traceback" not in result.stderr
    bad = edgecall("run", "--reference", str(reference), "--mm2-opts=--frobnicate", "--emit-bam", str(lambda_pod5))
    assert bad.returncode != 0 and "'--frobnicate' is not supported" in bad.stderr


def test_progress_knows_the_total_where_pod5_says(shared_data: Path, lambda_pod5: Path) -> None:
    from edgecall.cli.run import _expected_reads
    from edgecall.runtime.pipeline import RunOptions
    from edgecall.runtime.readers import count_reads

    fast5 = sorted((shared_data / "accuracy" / "lambda_r941" / "fast5").glob("*.fast5"))[:1]
    assert count_reads([lambda_pod5]) == 50 and count_reads([lambda_pod5, *fast5]) is None
    assert _expected_reads([lambda_pod5], None, RunOptions(), None) == 50
    assert _expected_reads([lambda_pod5], None, RunOptions(max_reads=7), None) == 7
    assert _expected_reads([lambda_pod5], lambda_pod5.parent, RunOptions(), None) is None  # watching: open-ended
