"""End-to-end speed of ``edgecall run`` by output: FASTQ, unaligned BAM, BAM aligned with ``--reference``.

Each variant is a whole ``edgecall run`` process on the same reads; the variants
take turns (``--repeat`` rounds), so a noisy shared machine slows them alike.
Reported per variant: the run's own samples/s (from its last stderr line: calling
and writing, after the model and index are loaded) and the process's wall time.

    python bench/outputs.py --repeat 3 \\
        --reads ../shared/data/accuracy/lambda_r941/lambda_r941.pod5 \\
        --reference ../shared/data/accuracy/lambda_r941/Lambda_phage.fna
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgecall.devices.precision import cpu_description

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "accuracy" / "lambda_r941"
RATE = re.compile(r"= ([0-9.]+) M samples/s")


def run(args: list[str]) -> tuple[float, float]:
    """(M samples/s the run reports, process wall seconds)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgecall", "run", *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"edgecall run {' '.join(args)} failed:\n{result.stderr}")
    return float(RATE.findall(result.stderr)[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=Path, default=DATA / "lambda_r941.pod5")
    parser.add_argument("--reference", type=Path, default=DATA / "Lambda_phage.fna")
    parser.add_argument("--model", default=None, help="model name (default: edgecall's default)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "FASTQ": ["-o", f"{tmp}/calls.fastq"],
            "BAM": ["-o", f"{tmp}/calls.bam"],
            "BAM --reference": ["--reference", str(args.reference), "-o", f"{tmp}/aligned.bam"],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, extra in variants.items():
                results[name].append(run([*model, *extra, str(args.reads)]))
    print(f"CPU: {cpu_description()} ({__import__('os').cpu_count()} logical CPUs); reads: {args.reads.name}; "
          f"model: {args.model or 'default'}; {args.repeat} rounds, variants in turns")
    print("| output | M samples/s (median) | runs | process wall s (median) |")
    print("| --- | ---: | --- | ---: |")
    for name, runs in results.items():
        rates = [rate for rate, _ in runs]
        print(f"| {name} | {statistics.median(rates):.3f} | {', '.join(f'{r:.3f}' for r in rates)} | "
              f"{statistics.median(wall for _, wall in runs):.1f} |")


if __name__ == "__main__":
    main()
