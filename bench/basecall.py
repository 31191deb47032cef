"""End-to-end basecalling benchmark: speed, time per stage and accuracy, models side by side.

For each model, in one process and on the same reads: wall-clock samples/s of the
whole pipeline (read, normalise, chunk, infer, decode, stitch, format FASTQ), the
busy time of each stage, and the median identity of the calls against the
reference. Stages run in overlapping threads, so busy times are also shown as a
share of their sum; "decode CPU" is the decoding threads' CPU time as a share of
all the CPU time the process used (busy shares count a stage's waiting for a core
when stages outnumber cores; CPU time does not).

    python bench/basecall.py --models deepnano-blitz-w64 deepnano-blitz-w96 \
        --reads ../shared/data/accuracy/lambda_r941/lambda_r941.pod5 \
        --reference ../shared/data/accuracy/lambda_r941/Lambda_phage.fna

``--beam-widths 16 8`` runs each model at each width and prints the read-by-read
identity change against the first; ``--repeat`` runs take turns, and each run's
decode CPU share is listed beside the fastest run's.

The decoders' compiled code is loaded from numba's disk cache before the first
run and its CPU cost printed on its own: a process pays it once (0.3 s), which a
run of hours never notices but a 5-second run here would count as decoding.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import AccuracyReport, measure  # noqa: E402

from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.fastq import format_record  # noqa: E402
from edgecall.runtime.pipeline import Basecaller, RunOptions, load_decoder  # noqa: E402
from edgecall.runtime.read import ReadFailure  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def bench_model(
    model: str, reads: list[Path], options: RunOptions, reference: Path | None, beam_width: int | None = None
) -> dict:
    package = load_package(model)
    if beam_width is not None:  # the package's own width otherwise
        config = dataclasses.replace(package.config, decoder=dataclasses.replace(package.config.decoder, beam_width=beam_width))
        package = dataclasses.replace(package, config=config)
    caller = Basecaller(package, options)
    calls: list[tuple[str, str]] = []
    write_time = 0.0
    failures = 0
    start, cpu_start = time.perf_counter(), os.times()
    for item in caller.run(reads):
        if isinstance(item, ReadFailure):
            failures += 1
            continue
        t0 = time.perf_counter()
        format_record(item, package.config.name)
        write_time += time.perf_counter() - t0
        calls.append((item.read.read_id, item.sequence))
    wall, cpu_end = time.perf_counter() - start, os.times()
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    caller.close()
    t = caller.times
    stages = {"read": t.read, "normalise": t.normalise, "infer": t.infer, "decode": t.decode, "write": write_time}
    result = {
        "model": package.config.name + (f" @beam {beam_width}" if beam_width is not None else ""),
        "backend": caller.backend.name,
        "batch": caller.batch_size,
        "reads": len(calls),
        "failures": failures,
        "samples": t.samples,
        "wall": wall,
        "samples_per_s": t.samples / wall,
        "stages": stages,
        "cpu": cpu,  # CPU seconds of the whole process over the run (every thread)
        "decode_cpu_share": t.decode_cpu / cpu if cpu > 0 else float("nan"),
    }
    if reference is not None:
        result["accuracy"] = measure(calls, reference)
    return result


def load_decoders(models: list[str]) -> float:
    """Load each model's decoder as ``edgecall run`` does before its clock starts; the CPU seconds that took."""
    start = time.thread_time()
    for model in models:
        load_decoder(load_package(model).config)
    return time.thread_time() - start


def paired_difference(base: AccuracyReport, other: AccuracyReport, label: str) -> str:
    """Identity change read by read, over the reads both mapped: mean, its standard error, median."""
    common = [r for r in base.identities if r in other.identities]
    diffs = [other.identities[r] - base.identities[r] for r in common]
    if len(diffs) < 2:
        return f"{label}: fewer than 2 reads mapped in both"
    error = statistics.stdev(diffs) / len(diffs) ** 0.5
    return (f"{label}, read by read over {len(diffs)} reads: mean {statistics.fmean(diffs):+.4f} "
            f"(standard error {error:.4f}), median {statistics.median(diffs):+.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["deepnano-blitz-w64"])
    parser.add_argument("--reads", nargs="+", type=Path, default=[SHARED / "accuracy/lambda_r941/lambda_r941.pod5"])
    parser.add_argument("--reference", type=Path, default=SHARED / "accuracy/lambda_r941/Lambda_phage.fna")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--decode", default=None, help="Decode mode (CRF: beam, viterbi; CTC: beam, greedy); default: run's.")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per model; the fastest is reported.")
    parser.add_argument("--beam-widths", nargs="+", type=int, default=None,
                        help="Run each model at each of these beam widths (default: the package's own), and "
                             "compare identities read by read against the first.")
    parser.add_argument("--precisions", nargs="+", default=["f32"],
                        help="Run each model at each inference precision (f32, bf16, f16; run's --precision) and "
                             "compare identities read by read against the first.")
    args = parser.parse_args()
    options = RunOptions(device=args.device, batch_size=args.batch_size, threads=args.threads)
    if args.decode:
        options = dataclasses.replace(options, decode_mode=args.decode)
    reference = args.reference if args.reference and args.reference.is_file() else None
    from edgecall.devices.precision import cpu_description

    print(f"# CPU: {cpu_description()}")
    print(f"# {os.cpu_count()} CPUs; reads: {' '.join(map(str, args.reads))}; device {args.device}")
    header = f"{'model':<22} {'backend':<14} {'batch':>5} {'reads':>5} {'Msamples/s':>10}  " \
             f"{'read':>5} {'norm':>5} {'infer':>5} {'decode':>6} {'write':>5}  (busy share)  decode CPU  identity"
    print(f"# decoders loaded from numba's cache first, once per process: {load_decoders(args.models):.2f} s CPU")
    print(header)
    combos = [(model, width, precision) for model in args.models for width in (args.beam_widths or [None])
              for precision in args.precisions]
    runs: dict[tuple[str, int | None, str], list[dict]] = {combo: [] for combo in combos}
    for _ in range(args.repeat):  # the combinations take turns, so drifting machine speed hits them alike
        for model, width, precision in combos:
            run_options = dataclasses.replace(options, precision=precision)
            runs[model, width, precision].append(bench_model(model, args.reads, run_options, reference, width))
    for model, width, precision in combos:
        r = max(runs[model, width, precision], key=lambda x: x["samples_per_s"])
        busy = sum(r["stages"].values())
        shares = "  ".join(f"{100 * v / busy:5.1f}" for v in r["stages"].values())
        acc = r.get("accuracy")
        ident = f"{acc.median_identity:.4f} ({acc.mapped}/{acc.reads} mapped)" if acc else "-"
        singles = ", ".join(f"{100 * x['decode_cpu_share']:.1f}" for x in runs[model, width, precision])
        label = r["model"] + (f"@{precision}" if len(args.precisions) > 1 else "")
        print(f"{label:<22} {r['backend']:<14} {r['batch']:>5} {r['reads']:>5} {r['samples_per_s'] / 1e6:>10.3f}  {shares}  "
              f"{100 * r['decode_cpu_share']:>10.1f}  {ident}" + (f"  [decode CPU of each run: {singles}]" if args.repeat > 1 else ""))
        first = runs[model, combos[0][1], combos[0][2]][0].get("accuracy") if len(combos) > len(args.models) else None
        if first is not None and (width, precision) != combos[0][1:]:
            what = f"beam {width} - beam {combos[0][1]}" if width != combos[0][1] else f"{precision} - {combos[0][2]}"
            print("    " + paired_difference(first, r["accuracy"], what))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
