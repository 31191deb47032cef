"""How much of the network's own speed reaches the user: end to end against NN only, same package, one run.

For each model, on the same reads and in one process, two passes take turns
``--rounds`` times (this machine's speed drifts by 25% within minutes, so only
turns compare):

- **end to end**: ``edgecall run``'s pipeline (read, normalise, chunk, infer,
  decode, stitch, FASTQ records), as ``bench/basecall.py`` times it;
- **NN only**: the very batches that pipeline infers (cut beforehand by the
  pipeline's own read/prepare/batch stages and held in memory), streamed
  through the same backend with the same batch size, requests in flight and
  score buffers, and nothing else.

Both rates are raw read samples per second of wall time, so the overlap between
chunks counts against neither; the NN-only rate over chunk samples (what
``bench/throughput.py`` reports) is printed beside it. The ratio end to end /
NN only is the share of the network's speed the pipeline delivers (issue 19's
goal: >= 0.8). CPU seconds of each pass show where the rest goes. When the
cores are busy throughout, the ratio cannot exceed the **ceiling** printed
beside it, NN CPU / (NN CPU + decoding CPU): the share of the work left to the
network once the chunks must also be decoded, whatever the pipeline does.

    python bench/pipeline_share.py                                  # the default model, 3 rounds
    python bench/pipeline_share.py --models edgecall-r941-v2 deepnano-blitz-w96 --batch-sizes 16 32
    python bench/pipeline_share.py --decode-threads 1 2 --rounds 4     # one CRF decoding thread or two, in turns
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from basecall import bench_model, load_decoders  # noqa: E402

from edgecall.devices.precision import cpu_description  # noqa: E402
from edgecall.package import DEFAULT_MODEL, load_package  # noqa: E402
from edgecall.runtime.pipeline import Basecaller, RunOptions, _data_of, minion_keep_up  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def nn_only(model: str, reads: list[Path], options: RunOptions) -> dict:
    """Wall and CPU time of inferring exactly the batches the pipeline would, with nothing else running."""
    caller = Basecaller(load_package(model), options)
    try:
        batches = list(caller._batches(caller._prepared(caller._reads(reads))))
        for batch in batches:  # the pipeline's _batches hands each batch its own array
            if batch.data is not None:
                batch.data = batch.data.copy()
        filled = [b for b in batches if b.owners]
        if not filled:
            raise SystemExit(f"{model}: none of --reads is of its chemistry and sample rate; pass reads it calls with --reads")
        chunks = sum(len(b.owners) for b in filled)
        recycled = caller._recycled
        next(iter(caller.backend.stream(filled[:1], _data_of, recycled)))  # warm-up: first-call allocations
        start, cpu_start = time.perf_counter(), os.times()
        for _, scores in caller.backend.stream(filled, _data_of, recycled):
            recycled.give(scores)
        wall, cpu_end = time.perf_counter() - start, os.times()
        return {
            "samples": caller.times.samples, "wall": wall, "batches": len(filled), "chunks": chunks,
            "chunk_samples": len(filled) * caller.batch_size * caller.chunksize,
            "cpu": (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system),
            "batch": caller.batch_size, "backend": caller.backend.name, "keep_up": minion_keep_up(caller.config.sample_rate),
        }
    finally:
        caller.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--reads", nargs="+", type=Path, default=[SHARED / "accuracy/lambda_r941/lambda_r941.pod5"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[None],
                        help="Batch sizes to compare (default: run's automatic choice).")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", help="run's --precision (default: run's automatic choice).")
    parser.add_argument("--decode-threads", nargs="+", type=int, default=[None],
                        help="CRF decoding threads to compare end to end (default: run's own choice).")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print(f"# CPU: {cpu_description()}")
    print(f"# {os.cpu_count()} CPUs; 1-min load average {os.getloadavg()[0]:.2f}; reads: {' '.join(map(str, args.reads))}")
    print(f"# decoders loaded from numba's cache first: {load_decoders(args.models):.2f} s CPU")
    combos = [(m, b, d) for m in args.models for b in args.batch_sizes for d in args.decode_threads]
    runs: dict = {c: [] for c in combos}
    chosen = Basecaller._chunk_decoders
    for round_ in range(args.rounds):
        for model, batch_size, decoders in combos:
            options = RunOptions(batch_size=batch_size, threads=args.threads, precision=args.precision)
            nn = nn_only(model, args.reads, options)
            Basecaller._chunk_decoders = chosen if decoders is None else (lambda self, d=decoders: d)  # type: ignore[method-assign]
            try:
                e2e = bench_model(model, args.reads, options, None)
            finally:
                Basecaller._chunk_decoders = chosen  # type: ignore[method-assign]
            runs[model, batch_size, decoders].append((nn, e2e))
            print(f"  round {round_ + 1} {model} batch {nn['batch']} decoding threads {decoders or 'auto'}: NN only "
                  f"{nn['samples'] / nn['wall'] / 1e6:.3f}, end to end {e2e['samples_per_s'] / 1e6:.3f} M samples/s",
                  file=sys.stderr, flush=True)
    print(f"\n{'model':<22} {'batch':>5} {'dec':>4} {'round':>5} {'NN only':>8} {'(chunk smp)':>11} {'e2e':>7} {'e2e/NN':>7} "
          f"{'xMinION':>7}  {'NN CPU s':>8} {'e2e CPU s':>9} {'decode CPU s':>12} {'ceiling':>7}")
    for (model, batch_size, decoders), pairs in runs.items():
        ratios = []
        for i, (nn, e2e) in enumerate(pairs):
            nn_rate = nn["samples"] / nn["wall"]
            ratio = e2e["samples_per_s"] / nn_rate
            ratios.append(ratio)
            decode_cpu = e2e["decode_cpu_share"] * e2e["cpu"]
            print(f"{model:<22} {nn['batch']:>5} {decoders or 'auto':>4} {i + 1:>5} {nn_rate / 1e6:>8.3f} {nn['chunk_samples'] / nn['wall'] / 1e6:>11.3f} "
                  f"{e2e['samples_per_s'] / 1e6:>7.3f} {ratio:>7.2f} {e2e['samples_per_s'] / nn['keep_up']:>7.2f}  "
                  f"{nn['cpu']:>8.1f} {e2e['cpu']:>9.1f} {decode_cpu:>12.1f} {nn['cpu'] / (nn['cpu'] + decode_cpu):>7.2f}")
        nn0 = pairs[0][0]
        print(f"{'':<22} {'':>5} {'':>4} median e2e/NN {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f}); "
              f"{nn0['chunks']} chunks in {nn0['batches']} batches, {nn0['samples']:,} read samples; {nn0['backend']}")
    print(f"\n# 1-min load average at the end: {os.getloadavg()[0]:.2f} (M samples/s throughout)")


if __name__ == "__main__":
    main()
