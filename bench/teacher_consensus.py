"""Would a consensus of teachers label real reads better than the best teacher alone?

Issue 21 asks whether the labels of the real R9.4.1 training reads (DeepNano-blitz
w96's calls) could be lifted by a consensus of several models' calls of the same
read. This measures it on the dev reads (measuring only, never training): each
model calls the lambda reads; for every combination of models that holds the
first one (the backbone), each read's consensus is built in windows of the
backbone's call (``--window`` bases; every other call is cut at the positions an
edlib global alignment to the backbone gives those window ends) by abPOA's
partial-order alignment, as racon does; consensus and calls are scored alike
(``bench/accuracy.py``). A consensus is worth labelling with only where its
identity beats the backbone's on most reads.

    python bench/teacher_consensus.py --models deepnano-blitz-w96 deepnano-blitz-w80 \
        deepnano-blitz-w64 edgecall-r941-v1 train-runs/r941-ft-real1.0/checkpoint_00001500.pt

Needs ``pip install pyabpoa edlib`` beside the test extras. Models are package names
or folders, or training checkpoints (``.pt``, compiled first for the CPU); all run
in f32 on the OpenVINO CPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import re
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import AccuracyReport, compiled, measure  # noqa: E402
from teacher_fit import SHARED, call  # noqa: E402
from edgecall.devices.precision import cpu_description  # noqa: E402

DEV_READS = SHARED / "accuracy" / "lambda_r941" / "lambda_r941.pod5"
DEV_REFERENCE = SHARED / "accuracy" / "lambda_r941" / "Lambda_phage.fna"


def backbone_map(backbone: str, other: str) -> np.ndarray:
    """For each backbone position 0..len(backbone), the position in ``other`` aligned to it (global alignment)."""
    import edlib

    cigar = edlib.align(backbone, other, mode="NW", task="path")["cigar"]
    where = np.zeros(len(backbone) + 1, dtype=np.int64)
    i = j = 0
    for count, op in re.findall(r"(\d+)([=XID])", cigar):
        n = int(count)
        if op in "=X":
            where[i:i + n] = np.arange(j, j + n)
            i, j = i + n, j + n
        elif op == "I":  # backbone bases the other call lacks
            where[i:i + n] = j
            i += n
        else:  # D: bases only the other call has
            j += n
    where[len(backbone)] = len(other)
    return where


def consensus(calls: list[str], window: int) -> str:
    """Windowed partial-order consensus of one read's calls; ``calls[0]`` sets the windows."""
    import pyabpoa

    backbone, others = calls[0], calls[1:]
    maps = [backbone_map(backbone, other) for other in others]
    ends = list(range(window, len(backbone) - window // 3, window)) + [len(backbone)]
    pieces, start = [], 0
    for end in ends:
        parts = [backbone[start:end]] + [o[m[start] if start else 0:m[end]] for o, m in zip(others, maps)]
        aligner = pyabpoa.msa_aligner()  # a fresh one per window: abPOA keeps its graph between calls
        pieces.append(aligner.msa([p for p in parts if p], out_cons=True, out_msa=False).cons_seq[0])
        start = end
    return "".join(pieces)


def compare(report: AccuracyReport, backbone: AccuracyReport) -> str:
    diffs = [report.identities[r] - backbone.identities[r] for r in report.identities if r in backbone.identities]
    better = sum(d > 0 for d in diffs)
    return f"read by read vs the backbone: mean {statistics.fmean(diffs):+.4f}, better on {better}/{len(diffs)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="the first is the backbone (the teacher)")
    parser.add_argument("--reads", type=Path, nargs="+", default=[DEV_READS])
    parser.add_argument("--reference", type=Path, default=DEV_REFERENCE)
    parser.add_argument("--window", type=int, default=300, help="backbone bases per consensus window")
    parser.add_argument("--min-members", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    missing = [name for name in ("edlib", "pyabpoa") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"teacher_consensus.py: needs {' and '.join(missing)}: pip install pyabpoa edlib")

    print(f"# CPU: {cpu_description()}")
    with tempfile.TemporaryDirectory() as tmp:
        calls = {m: call(str(compiled(Path(m), Path(tmp) / f"m{i}")), args.reads, args.threads)
                 for i, m in enumerate(args.models)}
    names = list(calls)
    read_ids = sorted(set.intersection(*(set(c) for c in calls.values())))
    reports = {m: measure(((r, calls[m][r]) for r in read_ids), args.reference) for m in names}
    for m in names:
        print(f"{m}: {reports[m].line()}")
    backbone = reports[names[0]]
    for size in range(max(2, args.min_members), len(names) + 1):
        for members in itertools.combinations(names[1:], size - 1):
            merged = {r: consensus([calls[m][r] for m in (names[0], *members)], args.window) for r in read_ids}
            report = measure(merged.items(), args.reference)
            print(f"consensus {' + '.join((names[0], *members))}: {report.line()}; {compare(report, backbone)}",
                  flush=True)


if __name__ == "__main__":
    main()
