"""What kinds of errors a model makes on the dev reads, and how the CRF's fixed stay score trades them.

For each model: substitutions, insertions and deletions (and the deletions inside a
reference homopolymer) per 100 alignment columns of the dev reads' primary
minimap2 alignments (``cs`` tags, map-ont; bench/accuracy.py's scoring), with the
median identity. ``--blank-scores`` also runs the first model with its package's
fixed stay score (``blank_score`` in config.toml, what the decoder adds for a stay)
set to each value, in a temporary copy of the package: a higher score makes stays
likelier, so fewer insertions and more deletions.

    python bench/error_kinds.py --models deepnano-blitz-w96 deepnano-blitz-w64 edgecall-r941-v1 edgecall-r941-v2
    python bench/error_kinds.py --models edgecall-r941-v2 --blank-scores 1.8 2.3 2.6 3.0

Models are package names or folders, or training checkpoints (``.pt``, compiled
first for the CPU); all run in f32 on the OpenVINO CPU.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import compiled, measure  # noqa: E402
from teacher_consensus import DEV_READS, DEV_REFERENCE  # noqa: E402
from teacher_fit import call  # noqa: E402
from edgecall.devices.precision import cpu_description  # noqa: E402
from edgecall.package import load_package  # noqa: E402


def error_kinds(calls: dict[str, str], reference: Path) -> dict[str, float]:
    """Per 100 alignment columns over all mapped reads: sub, ins, del, del_homopolymer."""
    import mappy

    aligner = mappy.Aligner(str(reference), preset="map-ont")
    counts = dict(match=0, sub=0, ins=0, dele=0, del_homopolymer=0)
    for sequence in calls.values():
        hits = [h for h in aligner.map(sequence, cs=True) if h.is_primary]
        if not hits:
            continue
        hit = max(hits, key=lambda h: h.mlen)
        ref = aligner.seq(hit.ctg, hit.r_st, hit.r_en).upper()
        at = 0  # reference offset within the alignment (cs walks the reference forward on either strand)
        for op, value in re.findall(r"([:*+\-])([0-9]+|[a-z]+)", hit.cs):
            if op == ":":
                counts["match"] += int(value)
                at += int(value)
            elif op == "*":
                counts["sub"] += 1
                at += 1
            elif op == "+":
                counts["ins"] += len(value)
            else:
                base, gap = value[0].upper(), value.upper()
                counts["dele"] += len(gap)
                around = ref[max(0, at - 1):at + len(gap) + 1]
                if set(gap) == {base} and (around[:1] == base or around[-1:] == base):
                    counts["del_homopolymer"] += len(gap)
                at += len(gap)
    columns = max(1, counts["match"] + counts["sub"] + counts["ins"] + counts["dele"])
    return {k: 100 * counts[key] / columns for k, key in
            (("sub", "sub"), ("ins", "ins"), ("del", "dele"), ("del_homopolymer", "del_homopolymer"))}


def with_blank_score(package: Path, score: float, folder: Path) -> Path:
    """A copy of ``package`` whose CRF decoder adds ``score`` for a stay."""
    text = (package / "config.toml").read_text()
    if not re.search(r"^blank_score = ", text, re.M):
        raise SystemExit(f"{package}: no fixed blank_score in config.toml (a learned-stay head?)")
    copy = folder / f"{package.name}-blank{score:g}"
    shutil.copytree(package, copy)
    (copy / "config.toml").write_text(re.sub(r"^blank_score = .*$", f"blank_score = {score!r}", text, flags=re.M))
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--blank-scores", type=float, nargs="*", default=[])
    parser.add_argument("--reads", type=Path, nargs="+", default=[DEV_READS])
    parser.add_argument("--reference", type=Path, default=DEV_REFERENCE)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    print(f"# CPU: {cpu_description()}")
    print("model\tmedian identity\tsub\tins\tdel\t(del in homopolymers) per 100 columns")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(m, compiled(Path(m), Path(tmp) / f"m{i}")) for i, m in enumerate(args.models)]
        if args.blank_scores:
            first = load_package(str(runs[0][1])).path
            runs += [(f"{args.models[0]} blank_score {s:g}", with_blank_score(first, s, Path(tmp))) for s in args.blank_scores]
        for label, model in runs:
            calls = call(str(model), args.reads, args.threads)
            kinds = error_kinds(calls, args.reference)
            identity = measure(calls.items(), args.reference)
            print(f"{label}\t{identity.median_identity:.4f} ({identity.mapped}/{identity.reads})\t{kinds['sub']:.2f}\t"
                  f"{kinds['ins']:.2f}\t{kinds['del']:.2f}\t({kinds['del_homopolymer']:.2f})", flush=True)


if __name__ == "__main__":
    main()
