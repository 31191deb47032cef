"""Is a student model limited by its teacher's labels, or by how well it learns them?

A model trained on a teacher's calls (``edgecall train --real-calls``) cannot be
expected to beat the teacher where it copies the teacher's errors, but it can only
reach the teacher if it learns the labels in the first place. For each model this
prints, on the same reads:

- **dev identity**: median identity on the dev reads against their reference
  (as ``bench/accuracy.py``);
- **fit**: median identity of its calls of the *training* reads against the
  teacher's calls of them (the labels it was trained on; labels of mean Q below
  ``--min-qscore`` are left out, as training leaves them out);
- **agreement**: the same against the teacher's calls of the dev reads;
- **shared errors**: the share of its errors on the dev reads (reference positions
  of substitutions, deletions and insertions) that lie within one base of an error
  of the teacher's on the same read.

A student that fits its labels far below 1 while sharing few of the teacher's
errors is limited by learning (capacity, training, data mix), not by the labels.

    python bench/teacher_fit.py --models edgecall-r941-v2 edgecall-r941-v1 \
        --teacher deepnano-blitz-w96 --labels train-runs/labels_w96.fastq \
        --label-summary train-runs/labels_w96.tsv --training-reads ../shared/data/models/deepnano-blitz/test_sample ...

Models are package names or folders, or training checkpoints (``.pt``, compiled
first for the CPU). Everything runs in f32 on the OpenVINO CPU.
"""

from __future__ import annotations

import argparse
import csv
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import compiled, fastq_calls, measure  # noqa: E402
from edgecall.devices.precision import cpu_description  # noqa: E402
from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.pipeline import Basecaller, RunOptions  # noqa: E402
from edgecall.runtime.read import ReadFailure  # noqa: E402
from edgecall.runtime.readers import find_inputs  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
Calls = dict[str, str]


def call(model: str, reads: list[Path], threads: int | None) -> Calls:
    caller = Basecaller(load_package(model), RunOptions(threads=threads, precision="f32"))
    items = caller.run(find_inputs(reads, recursive=True))
    calls = {item.read.read_id: item.sequence for item in items if not isinstance(item, ReadFailure)}
    caller.close()
    return calls


def identity(query: str, target: str) -> float | None:
    """Matches / alignment columns of ``query``'s primary alignment to ``target``."""
    import mappy

    hits = [h for h in mappy.Aligner(seq=target, preset="map-ont").map(query) if h.is_primary]
    if not hits:
        return None
    best = max(hits, key=lambda h: h.mlen)
    return best.mlen / best.blen


class ErrorMap:
    """Per read, the reference positions of its alignment errors and the span it covers."""

    def __init__(self, calls: Calls, reference: Path):
        import mappy

        aligner = mappy.Aligner(str(reference), preset="map-ont")
        self.reads: dict[str, tuple[set[int], int, int]] = {}
        for read_id, sequence in calls.items():
            hits = [h for h in aligner.map(sequence, cs=True) if h.is_primary]
            if hits:
                best = max(hits, key=lambda h: h.mlen)
                self.reads[read_id] = (self._errors(best.r_st, best.cs), best.r_st, best.r_en)

    @staticmethod
    def _errors(start: int, cs: str) -> set[int]:
        # minimap2's cs is in the read's orientation along the forward reference.
        position, errors = start, set()
        for op, value in re.findall(r"([:*+\-])([0-9]+|[a-z]+)", cs):
            if op == ":":
                position += int(value)
            elif op == "*":  # value is two bases: reference then read
                errors.add(position)
                position += 1
            elif op == "-":
                errors.update(range(position, position + len(value)))
                position += len(value)
            else:  # insertion before this reference position
                errors.add(position)
        return errors

    def shared_share(self, teacher: "ErrorMap") -> float:
        shared = total = 0
        for read_id, (errors, start, end) in self.reads.items():
            if read_id not in teacher.reads:
                continue
            other, other_start, other_end = teacher.reads[read_id]
            lo, hi = max(start, other_start), min(end, other_end)
            near = {p + d for p in other for d in (-1, 0, 1)}
            mine = [p for p in errors if lo <= p < hi]
            shared += sum(p in near for p in mine)
            total += len(mine)
        return shared / total if total else float("nan")


def label_ids(labels: Calls, summary: Path | None, min_qscore: float) -> list[str]:
    if summary is None:
        return [r for r, s in labels.items() if len(s) > 500]
    with open(summary) as fh:
        qscores = {row["read_id"]: float(row["mean_qscore_template"]) for row in csv.DictReader(fh, delimiter="\t")}
    return [r for r, s in labels.items() if len(s) > 500 and qscores.get(r, 0.0) >= min_qscore]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--teacher", required=True, help="the model whose calls were the labels")
    parser.add_argument("--labels", type=Path, required=True, help="the teacher's calls of the training reads (FASTQ)")
    parser.add_argument("--label-summary", type=Path, help="their --emit-summary TSV (mean Q per read)")
    parser.add_argument("--min-qscore", type=float, default=7.0, help="as edgecall train's --real-min-qscore")
    parser.add_argument("--training-reads", type=Path, nargs="+", required=True)
    parser.add_argument("--reads", type=Path, nargs="+", default=[SHARED / "accuracy/lambda_r941/lambda_r941.pod5"])
    parser.add_argument("--reference", type=Path, default=SHARED / "accuracy/lambda_r941/Lambda_phage.fna")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    print(f"# CPU: {cpu_description()}")
    labels = dict(fastq_calls(args.labels))
    scored = label_ids(labels, args.label_summary, args.min_qscore)
    teacher_dev = call(args.teacher, args.reads, args.threads)
    teacher_errors = ErrorMap(teacher_dev, args.reference)
    teacher_report = measure(teacher_dev.items(), args.reference)
    print(f"teacher {args.teacher}: dev {teacher_report.line()}; {len(scored)} labelled training reads scored")
    print("| model | dev identity | fit to labels (training reads) | agreement with teacher (dev) | errors shared with teacher |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for index, model in enumerate(args.models):
            package = str(compiled(Path(model), Path(tmp) / f"pkg{index}"))
            dev = call(package, args.reads, args.threads)
            training = call(package, args.training_reads, args.threads)
            fit = [x for x in (identity(training[r], labels[r]) for r in scored if r in training) if x is not None]
            agreement = [x for x in (identity(dev[r], teacher_dev[r]) for r in dev if r in teacher_dev) if x is not None]
            report = measure(dev.items(), args.reference)
            shared = ErrorMap(dev, args.reference).shared_share(teacher_errors)
            print(f"| {model} | {report.median_identity:.4f} ({report.mapped}/{report.reads}) | "
                  f"{statistics.median(fit):.4f} ({len(fit)}) | {statistics.median(agreement):.4f} | {shared:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
