"""Reliability figures: bad inputs among good ones, reads lost, peak memory on a large input.

    python bench/reliability.py [--model deepnano-blitz-w64] [--copies 10]

1. A folder of the 50 lambda reads (pod5 + fast5 copies of the same reads are NOT
   mixed: ids must stay unique) plus every real malformed file in ../shared/data
   (slow5tools err/, dorado degenerate/) plus mutated files made here (empty,
   truncated at several points, corrupted bytes, text named .pod5/.fast5).
   Counts: bad inputs named on stderr, good reads lost, tracebacks, exit status.
2. Peak RSS of `edgecall run` on the lambda reads repeated ``--copies`` times under
   fresh read ids (one pod5 file), against the plain lambda run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LAMBDA = SHARED / "accuracy" / "lambda_r941"


def run_edgecall(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """The run, its wall time and the child's peak RSS in MiB (GNU time when available)."""
    timer = shutil.which("time") or "/usr/bin/time"
    start = time.perf_counter()
    if Path(timer).exists():
        result = subprocess.run([timer, "-v", sys.executable, "-m", "edgecall", *args], capture_output=True, text=True)
        found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
        peak = int(found.group(1)) / 1024 if found else float("nan")
    else:
        result = subprocess.run([sys.executable, "-m", "edgecall", *args], capture_output=True, text=True)
        peak = float("nan")
    return result, time.perf_counter() - start, peak


def make_bad_inputs(folder: Path) -> list[str]:
    names = []
    for src in sorted((SHARED / "fast5" / "slow5tools" / "err").glob("*.fast5")) + sorted(
        (SHARED / "pod5" / "dorado" / "degenerate").glob("*.pod5")
    ):
        shutil.copyfile(src, folder / src.name)
        names.append(src.name)
    good_pod5 = (LAMBDA / "lambda_r941.pod5").read_bytes()
    good_fast5 = sorted((LAMBDA / "fast5").glob("*.fast5"))[0].read_bytes()
    made = {
        "empty.pod5": b"",
        "empty.fast5": b"",
        "text.pod5": b"this is not a pod5 file\n",
        "text.fast5": b"this is not a fast5 file\n",
    }
    for frac in (0.1, 0.5, 0.9):
        made[f"truncated_{int(frac * 100)}.pod5"] = good_pod5[: int(len(good_pod5) * frac)]
        made[f"truncated_{int(frac * 100)}.fast5"] = good_fast5[: int(len(good_fast5) * frac)]
    corrupt = bytearray(good_pod5)
    for i in range(50_000, len(corrupt), 40_000):
        corrupt[i : i + 32] = b"\x00" * 32
    made["zeroed_blocks.pod5"] = bytes(corrupt)
    for name, data in made.items():
        (folder / name).write_bytes(data)
        names.append(name)
    return names


def bad_input_check(model: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        folder.mkdir()
        shutil.copyfile(LAMBDA / "lambda_r941.pod5", folder / "lambda.pod5")
        bad = make_bad_inputs(folder)
        result, wall, peak = run_edgecall(["run", "--model", model, str(folder)])
    called = {line[1:].split("\t")[0] for line in result.stdout.splitlines() if line.startswith("@")}
    good = {p.stem for p in (LAMBDA / "fast5").glob("*.fast5")}
    skipped = [line for line in result.stderr.splitlines() if line.startswith("edgecall: skipped")]
    named = [name for name in bad if any(name in line for line in skipped)]
    print(f"bad inputs tried: {len(bad)}; named on stderr: {len(named)}; not named: {sorted(set(bad) - set(named)) or 'none'}")
    print(f"good reads: {len(good)}; called: {len(good & called)}; lost: {len(good - called)}")
    print(f"tracebacks: {result.stderr.count('Traceback')}; exit status: {result.returncode}; wall {wall:.1f} s; peak RSS {peak:.0f} MiB")


def memory_check(model: str, copies: int) -> None:
    import pod5

    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.pod5"
        with pod5.Reader(LAMBDA / "lambda_r941.pod5") as reader, pod5.Writer(big) as writer:
            reads = [r.to_read() for r in reader.reads()]
            for copy in range(copies):
                for read in reads:
                    read.read_id = uuid.uuid4()
                    writer.add_read(read)
        samples = sum(len(r.signal) for r in reads)
        base, base_wall, base_peak = run_edgecall(["run", "--model", model, str(LAMBDA / "lambda_r941.pod5")])
        result, wall, peak = run_edgecall(["run", "--model", model, str(big)])
    n = result.stdout.count("\n@") + result.stdout.startswith("@")
    print(f"lambda x1  ({len(reads)} reads, {samples / 1e6:.1f} M samples): peak RSS {base_peak:.0f} MiB, {samples / base_wall / 1e6:.2f} M samples/s")
    print(f"lambda x{copies} ({n} reads called of {copies * len(reads)}, {copies * samples / 1e6:.1f} M samples): "
          f"peak RSS {peak:.0f} MiB, {copies * samples / wall / 1e6:.2f} M samples/s, exit {result.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deepnano-blitz-w64")
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args()
    bad_input_check(args.model)
    memory_check(args.model, args.copies)


if __name__ == "__main__":
    main()
