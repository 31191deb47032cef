"""Does padding pruned LSTMs with zeroed neurons speed up the network on this CPU, and at which width multiple?

``edgecall compile`` writes each shrunk LSTM with zeroed neurons up to a multiple of
``--lstm-multiple`` (default 8): a neuron whose gate weights and biases are zero outputs
exactly 0, so the function does not change, but OpenVINO's LSTM kernels are faster at
some widths (in bf16 on AMX the default model's LSTMs took 1.8x as long unpadded as
padded to multiples of 8). This compiles each checkpoint at each multiple, then times the networks in turns
(one inference request, batch 16, the given threads), in f32 and in each reduced
precision the CPU computes natively, and prints the LSTM layers' own time from
OpenVINO's per-layer counters beside the whole network's.

    python bench/lstm_padding.py                         # v2's and r1041-v1's checkpoints, multiples 1 8 16
    python bench/lstm_padding.py --multiples 1 2 8 16 --turns 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))
from tanh_rewrite import best_ms, compiled  # noqa: E402

from edgecall.devices.precision import cpu_description, native_precisions  # noqa: E402
from edgecall.package import load_package  # noqa: E402

CHECKPOINTS = [BENCH.parent / "train-runs" / "sparse-v6" / "checkpoint_00016000.pt",  # edgecall-r941-v2's
               BENCH.parent / "train-runs" / "r1041-v1" / "checkpoint_00003000.pt"]  # edgecall-r1041-v1's


def lstm_ms(request) -> float:  # noqa: ANN001 - InferRequest
    """The last inference's time in LSTM layers."""
    return sum(p.real_time.total_seconds() * 1e3 for p in request.profiling_info if p.node_type == "LSTMSequence")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", type=Path, default=CHECKPOINTS)
    parser.add_argument("--multiples", nargs="+", type=int, default=[1, 8, 16])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--passes", type=int, default=4, help="timed inferences per turn (best counts)")
    args = parser.parse_args()
    import openvino as ov

    from edgecall.export.compile import compile_checkpoint

    core = ov.Core()
    precisions = ["f32", *native_precisions()]
    print(f"# CPU: {cpu_description()}; OpenVINO {ov.get_version()}; batch {args.batch}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        for checkpoint in args.checkpoints:
            packages = {m: load_package(compile_checkpoint(checkpoint, Path(tmp) / f"{checkpoint.parent.name}-{m}",
                                                           targets=["CPU"], lstm_multiple=m).package.path)
                        for m in args.multiples}
            chunksize = packages[args.multiples[0]].config.basecaller.chunksize
            data = np.random.default_rng(0).standard_normal((args.batch, 1, chunksize)).astype(np.float32)
            print(f"\n{checkpoint}:")
            for m, package in packages.items():
                print(f"  multiple {m:>2}: widths {', '.join(map(str, package.provenance['lstm_widths']))}")
            for precision in precisions:
                requests = {m: compiled(core, p, args.batch, args.threads, False, precision)[0] for m, p in packages.items()}
                for request in requests.values():
                    request.infer({0: data})  # warm-up
                turns = [{m: (best_ms(r, data, args.passes), lstm_ms(r)) for m, r in requests.items()}
                         for _ in range(args.turns)]
                base = args.multiples[0]
                for m in args.multiples:
                    whole = [t[m][0] for t in turns]
                    speedup = statistics.median(t[base][0] / t[m][0] for t in turns)
                    print(f"  {precision:>4} multiple {m:>2}: ms per batch {', '.join(f'{w:.1f}' for w in whole)} "
                          f"(LSTMs {statistics.median(t[m][1] for t in turns):.1f}); {speedup:.2f}x against multiple {base}")


if __name__ == "__main__":
    main()
