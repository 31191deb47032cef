"""int8 (OpenVINO NNCF post-training quantisation) vs f32: NN-only speed and read accuracy, side by side.

For each model: copy the package to a temp dir, quantise its CPU IR with
``edgecall.export.quantize.quantize_package`` (calibration: real R9.4.1 reads
that are not the dev set, ``models/deepnano-blitz/test_sample``), then in one
run on the same chunks of the lambda dev reads: OpenVINO LATENCY and
THROUGHPUT samples/s of the f32 and the int8 IR over a batch sweep; how far the
int8 scores move (correlation with f32); and the whole ``edgecall run``
pipeline on the dev reads with each IR (a second package copy whose
``openvino/CPU`` IR is the int8 one), scored by median identity
(bench/accuracy.py). Identity is meaningful only for trained weights (the
bundled DeepNano-blitz models); ``dense``/``lambda*`` models (random weights,
see throughput.py) give speed only.

    python bench/int8.py                                   # w64 and w96, ~6 min on 2 cores
    python bench/int8.py --models dense lambda6e-7 --no-e2e  # LSTM CRF speed only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from engine_pool import interleaved_sweep  # noqa: E402
from nn_speed import cpu_peak, cpu_threads  # noqa: E402
from throughput import BUILT, SHARED, build_package, run_worker, save_chunks  # noqa: E402

from edgecall.costs import model_costs  # noqa: E402
from edgecall.export.quantize import (  # noqa: E402
    INT8_SUFFIX,
    int8_op_counts,
    quantize_package,
    runtime_scores,
)
from edgecall.package import load_package  # noqa: E402

ENGINES = ("ov-latency", "ov-throughput")


def prepare(name: str, root: Path, calibration: list[Path] | None, subset: int) -> dict:
    """f32 package copy, its int8 IR, and an 'int8 package' whose CPU IR is the int8 one."""
    source = build_package(name, root, lstm_multiple=1)  # int8 breaks zeroed padding neurons (quantize_package refuses them)
    f32 = root / f"{name}-f32"
    shutil.copytree(source, f32, dirs_exist_ok=True)
    t0 = time.perf_counter()
    int8_xml = quantize_package(f32, calibration, subset, min_agreement=0.0)  # measure it even if compile would refuse it
    seconds = time.perf_counter() - t0
    int8_pkg = root / f"{name}-int8"
    shutil.copytree(f32, int8_pkg, dirs_exist_ok=True)
    shutil.rmtree(int8_pkg / "openvino" / "CPU")
    shutil.copytree(int8_xml.parent, int8_pkg / "openvino" / "CPU")
    return {"f32": f32, "int8_xml": int8_xml, "int8_pkg": int8_pkg, "quantize_seconds": seconds,
            "ops": int8_op_counts(int8_xml), "config": load_package(f32).config,
            "call_agreement": load_package(f32).provenance["int8"]["agreement_with_f32_calls"]}


def score_agreement(package_dir: Path, chunks) -> dict:  # noqa: ANN001 - (n, 1, T) float32
    """Correlation and mean |difference| of int8 vs f32 outputs on the same real chunks, both IRs
    compiled as ``edgecall run`` compiles them."""
    import numpy as np

    package = load_package(package_dir)
    a, b = runtime_scores(package, chunks).ravel(), runtime_scores(package, chunks, f"CPU{INT8_SUFFIX}").ravel()
    return {"correlation": float(np.corrcoef(a, b)[0, 1]), "mean_abs_diff": float(np.abs(a - b).mean()),
            "max_abs_diff": float(np.abs(a - b).max()), "f32_mean_abs": float(np.abs(a).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["deepnano-blitz-w64", "deepnano-blitz-w96"])
    parser.add_argument("--calibration", nargs="+", type=Path, default=None,
                        help="Calibration reads (default: the shared test_sample fast5s, else simulated reads).")
    parser.add_argument("--subset", type=int, default=300, help="Calibration chunks.")
    parser.add_argument("--reads", nargs="+", type=Path, default=[SHARED / "accuracy/lambda_r941/lambda_r941.pod5"])
    parser.add_argument("--reference", type=Path, default=SHARED / "accuracy/lambda_r941/Lambda_phage.fna")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64])
    parser.add_argument("--chunks", type=int, default=128)
    parser.add_argument("--min-time", type=float, default=1.0, help="Seconds timed per (engine, precision, batch, round).")
    parser.add_argument("--rounds", type=int, default=2, help="f32 and int8 take turns this many times per batch; best round kept.")
    parser.add_argument("--max-call", type=float, default=10.0)
    parser.add_argument("--e2e-reads", type=int, default=50)
    parser.add_argument("--no-e2e", action="store_true", help="Skip the end-to-end accuracy runs.")
    parser.add_argument("--worker-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import numpy as np

    peak = cpu_peak()
    print(f"# {cpu_threads()} cores; {peak.assumption()}; 1-min load average {os.getloadavg()[0]:.2f}")
    report: dict = {"cpu": peak.assumption(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.models:
            info = prepare(name, root, args.calibration, args.subset)
            flops = model_costs(info["config"]).flops
            chunks_file = save_chunks(info["f32"], args.reads, args.chunks, root / f"{name}.npy")
            agree = score_agreement(info["f32"], np.load(chunks_file)[:16])
            r: dict = {"flops_per_sample": flops, "quantize_seconds": info["quantize_seconds"], "int8_ops": info["ops"],
                       "call_agreement": info["call_agreement"], "agreement": agree, "nn": {}, "e2e": {}}
            specs = {f"{engine}:{precision}": {"engine": engine, "package": str(info["f32"]), "chunks": str(chunks_file),
                                               "xml": str(xml) if xml else None}
                     for engine in ENGINES for precision, xml in (("f32", None), ("int8", info["int8_xml"]))}
            r["nn"] = interleaved_sweep(specs, args.batches, rounds=args.rounds, min_time=args.min_time,
                                        max_call=args.max_call, timeout=args.worker_timeout,
                                        log=lambda s, n=name: print(f"  {n} {s}", file=sys.stderr, flush=True))
            if not args.no_e2e:
                reference = str(args.reference) if args.reference.is_file() and name not in BUILT else None
                for precision, pkg in (("f32", info["f32"]), ("int8", info["int8_pkg"])):
                    spec = {"engine": "e2e", "package": str(pkg), "reads": [str(p) for p in args.reads],
                            "max_reads": args.e2e_reads, "reference": reference}
                    results, rss, error = run_worker(spec, args.worker_timeout)
                    r["e2e"][precision] = {**(results[0] if results else {}), "rss_mib": rss, "error": error}
            report["models"][name] = r
    print(f"# int8 peak = {peak.int8_factor} x the FP32 peak ({'VNNI' if peak.int8_factor == 4 else 'no VNNI'}); "
          "int8 utilisation counts the model's multiply-adds as int8 ops")
    print_report(report, peak.flops, peak.int8_factor)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"# wrote {args.json}")


def _best(entry: dict) -> dict | None:
    done = [s for s in entry["sweep"] if s.get("samples_per_s")]
    return max(done, key=lambda s: s["samples_per_s"]) if done else None


def print_report(report: dict, peak: float, int8_factor: int) -> None:
    print(f"\n{'model':<20} {'engine':<13} {'batch':>5} {'f32 k/s':>8} {'int8 k/s':>8} {'int8/f32':>8} "
          f"{'f32 %pk':>7} {'int8 %i8pk':>10}")
    for name, r in report["models"].items():
        flops = r["flops_per_sample"]
        for engine in ENGINES:
            f32, q8 = r["nn"][f"{engine}:f32"]["sweep"], r["nn"][f"{engine}:int8"]["sweep"]
            for a, b in zip(f32, q8):
                fa, fb = a.get("samples_per_s"), b.get("samples_per_s")
                if not fa or not fb:
                    continue
                print(f"{name:<20} {engine:<13} {a['batch']:>5} {fa / 1e3:>8.1f} {fb / 1e3:>8.1f} {fb / fa:>7.2f}x "
                      f"{100 * fa * flops / peak:>6.1f}% {100 * fb * flops / (peak * int8_factor):>9.1f}%")
        bf, bq = _best(r["nn"]["ov-throughput:f32"]), _best(r["nn"]["ov-throughput:int8"])
        if bf and bq:
            print(f"{name:<20} best THROUGHPUT: f32 {bf['samples_per_s'] / 1e3:.1f} k/s (batch {bf['batch']}), "
                  f"int8 {bq['samples_per_s'] / 1e3:.1f} k/s (batch {bq['batch']}): {bq['samples_per_s'] / bf['samples_per_s']:.2f}x")
        a = r["agreement"]
        print(f"{name:<20} int8 ops {r['int8_ops']}; quantised in {r['quantize_seconds']:.0f} s; scores vs f32: "
              f"correlation {a['correlation']:.4f}, mean |diff| {a['mean_abs_diff']:.2e} (f32 mean |x| {a['f32_mean_abs']:.2e}); "
              f"calls agree with f32 on {100 * r['call_agreement']:.2f}% of bases (compile --int8 needs 95%)")
        for precision, e in r["e2e"].items():
            if not e.get("samples_per_s"):
                print(f"{name:<20} e2e {precision}: failed ({e.get('error')})")
                continue
            ident = e.get("identity")
            ident_txt = f"median identity {ident['median']:.4f} ({ident['mapped']}/{ident['reads']} mapped)" if ident else "no identity (random weights)"
            busy = sum(e["stages"].values()) or 1.0
            print(f"{name:<20} e2e {precision:<4}: {e['samples_per_s'] / 1e3:.1f} k samples/s over {e['reads']} reads, "
                  f"infer {100 * e['stages']['infer'] / busy:.0f}% decode {100 * e['stages']['decode'] / busy:.0f}% of busy time; {ident_txt}")


if __name__ == "__main__":
    main()
