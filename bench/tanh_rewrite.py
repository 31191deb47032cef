"""Does recomputing Tanh as 2 * sigmoid(2x) - 1 speed up a package's network on this CPU?

The OpenVINO backend does this rewrite (``_tanh_via_sigmoid``) for f32 inference on
CPUs without AVX-512, where it was measured: OpenVINO fuses a CRF head's tanh into
the matrix product as a post-op that on AVX2 cost more than the product itself. This
times each package's network both ways, in turns, one inference request with the
given threads, batch 16, f32, and prints the largest score difference. Run it on an
AVX-512 CPU to decide whether the rewrite should apply there too.

    python bench/tanh_rewrite.py
    python bench/tanh_rewrite.py --models edgecall-r941-v2 deepnano-blitz-w96 --threads 2
    python bench/tanh_rewrite.py --models edgecall-r941-v2 --profile     # OpenVINO's per-layer times, both ways
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgecall.devices.precision import cpu_description  # noqa: E402
from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.backends.openvino import _tanh_via_sigmoid  # noqa: E402


def compiled(core, package, batch: int, threads: int, rewrite: bool, precision: str = "f32"):  # noqa: ANN001, ANN202 - openvino objects
    """An inference request on the package's CPU network, its Tanh rewritten or not; and how many were."""
    import openvino as ov

    model = core.read_model(str(package.openvino_ir("CPU") or package.onnx_path))
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([batch, 1, package.config.basecaller.chunksize])})
    replaced = _tanh_via_sigmoid(model) if rewrite else 0
    config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "PERF_COUNT": True}
    return core.compile_model(model, "CPU", config).create_infer_request(), replaced


def best_ms(request, data: np.ndarray, passes: int) -> float:  # noqa: ANN001 - InferRequest
    times = []
    for _ in range(passes):
        begin = time.perf_counter()
        request.infer({0: data})
        times.append(time.perf_counter() - begin)
    return min(times) * 1e3


def layer_times(request, top: int = 6) -> str:  # noqa: ANN001 - InferRequest
    """The last inference's slowest layers: ms, type, kernel, name."""
    layers = sorted(((p.real_time.total_seconds() * 1e3, p.node_type, p.exec_type, p.node_name)
                     for p in request.profiling_info), reverse=True)
    total = sum(ms for ms, *_ in layers)
    rows = [f"    {ms:7.1f} ms  {kind:14s} {kernel:18s} {name[:50]}" for ms, kind, kernel, name in layers[:top]]
    return "\n".join([f"  {total:.1f} ms in all layers; slowest:", *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+",
                        default=["edgecall-r941-v2", "edgecall-r941-fast-v1", "edgecall-r1041-v1", "deepnano-blitz-w96"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--passes", type=int, default=4, help="timed inferences per turn (best counts)")
    parser.add_argument("--profile", action="store_true", help="also print OpenVINO's per-layer times, both ways")
    args = parser.parse_args()
    import openvino as ov

    core = ov.Core()
    print(f"# CPU: {cpu_description()}; OpenVINO {ov.get_version()}; f32, batch {args.batch}, {args.threads} thread(s)")
    for name in args.models:
        package = load_package(name)
        (plain, _), (rewritten, replaced) = (compiled(core, package, args.batch, args.threads, rewrite)
                                             for rewrite in (False, True))
        shape = (args.batch, 1, package.config.basecaller.chunksize)
        data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        for request in (plain, rewritten):
            request.infer({0: data})  # warm-up
        difference = float(np.abs(plain.get_output_tensor(0).data - rewritten.get_output_tensor(0).data).max())
        turns = [(best_ms(plain, data, args.passes), best_ms(rewritten, data, args.passes)) for _ in range(args.turns)]
        ratio = statistics.median(a / b for a, b in turns)
        shown = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in turns)
        print(f"{name}: {replaced} Tanh; ms per batch tanh/sigmoid form {shown}; speed-up {ratio:.2f}x (median); "
              f"max |score difference| {difference:.1e}")
        if args.profile:
            for label, request in (("tanh", plain), ("sigmoid form", rewritten)):
                print(f" {label}:\n{layer_times(request)}")


if __name__ == "__main__":
    main()
