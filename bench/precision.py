"""bf16/f16 on this CPU: do a package's calls agree with its f32 calls, and what does compiling cost?

For each package and each reduced precision this CPU computes natively, on a private copy
of the package (the bundled one is never written): the agreement of its calls with its
f32 calls, exactly as ``edgecall compile --check-precision`` measures and records it (64
chunks of ``--reads``; run offers the precision at >= 99.5%), and the seconds OpenVINO
takes to compile its CPU network in f32 and in that precision (``--compile-rounds``
times each, in turns; a first run pays this once per process). ``--reads`` must be of
the models' chemistry: the default is the R9.4.1 calibration sample; give R10.4.1 reads
that are not the dev set for an R10.4.1 model.

    python bench/precision.py
    python bench/precision.py --models edgecall-r1041-v1 --reads ../shared/data/pod5/dorado-extra/duplex_r1041.pod5 \\
      ../shared/data/pod5/dorado-extra/single_channel_multi_read_r1041.pod5 ../shared/data/pod5/slow5-converted/p2solo_ulk114_dna.pod5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from edgecall.devices.precision import cpu_description, native_precisions  # noqa: E402
from edgecall.export.precision_check import check_precision  # noqa: E402
from edgecall.export.quantize import default_calibration_reads  # noqa: E402
from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.readers import find_inputs, iter_reads  # noqa: E402


def compile_seconds(core, package, precision: str) -> float:  # noqa: ANN001 - openvino.Core
    model = core.read_model(str(package.openvino_ir("CPU")))
    start = time.perf_counter()
    core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["edgecall-r941-v2", "edgecall-r941-fast-v1",
                                                        "deepnano-blitz-w96", "deepnano-blitz-w64"])
    parser.add_argument("--reads", nargs="+", type=Path, default=None, help="Real reads of the models' chemistry (default: the R9.4.1 calibration sample).")
    parser.add_argument("--compile-rounds", type=int, default=2)
    args = parser.parse_args()
    import openvino as ov

    reduced = native_precisions()
    print(f"# CPU: {cpu_description()}; OpenVINO {ov.get_version()}")
    if not reduced:
        print("# this CPU computes neither bf16 nor f16 natively: nothing to check")
        return
    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            package = load_package(shutil.copytree(load_package(name).path, Path(tmp) / Path(name).name))
            times = {p: [] for p in ("f32", *reduced)}
            for _ in range(args.compile_rounds):
                for precision in times:
                    times[precision].append(compile_seconds(core, package, precision))
            for precision in reduced:
                if args.reads:
                    reads, source = iter_reads(find_inputs(args.reads)), ", ".join(map(str, args.reads))
                else:
                    reads, source = default_calibration_reads()
                record = check_precision(package.path, precision, reads, source)
                print(f"{name}: {precision} calls agree with f32 on {record['agreement']:.2%} of bases of "
                      f"{record['chunks']} chunks ({'passes' if record['passed'] else 'refused'}); compile "
                      f"{statistics.median(times[precision]):.2f} s against f32's {statistics.median(times['f32']):.2f} s")


if __name__ == "__main__":
    main()
