"""Can a laptop CPU keep up with a MinION? NN-only and end-to-end samples/s, engines side by side.

In one run, on the same real reads (normalised chunks made by the runtime's
own prepare + chunk code) and the same models: PyTorch eager (the Bonito way),
ONNX Runtime, OpenVINO LATENCY and THROUGHPUT (f32), each over a batch sweep,
then ``edgecall run``'s pipeline end to end with its time per stage. Beside
samples/s: FLOPs per sample, achieved GFLOP/s and its share of this CPU's
estimated peak (STYLE item 11), and each engine's peak RSS. Every engine runs
in its own process so thread pools never compete, and the engines take turns
batch by batch (engine_pool.py), so load from other jobs on a shared machine
falls on all of them alike; the best of ``--rounds`` turns counts.
``--contention`` repeats the NN-only sweep while a busy-loop process keeps one
core busy. ``torch-1t`` (PyTorch eager on one thread) is an optional engine:
it shows that eager's collapse under load is thread synchronisation.

Models: ``dense`` (HAC size: features 384, LSTM 384x5, state_len 4), the
paper's shrunk sizes ``lambda2e-7``, ``lambda6e-7``, ``lambda2e-6`` (compiled
from random factories-style checkpoints into a temp dir: speed does not depend
on weight values), ``r10-fast`` / ``r10-hac`` (ONT's fast@v4.0.0 and hac@v4.2.0 at
their own sizes, random weights, built by Bonito's code as the tests do: needs
ont-bonito --no-deps), ``default`` (the bundled default model), or any bundled
name / package directory.

    python bench/throughput.py                      # ~10 min on 2 cores
    python bench/throughput.py --contention --models lambda6e-7 default --engines torch torch-1t ort ov-latency ov-throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from engine_pool import interleaved_sweep  # noqa: E402
from nn_speed import ENGINES, EXTRA_ENGINES, cpu_peak, cpu_threads, peak_rss_mib  # noqa: E402

from edgecall.devices.precision import cpu_description  # noqa: E402
from edgecall.layers import LSTM_WIDTH_MULTIPLE  # noqa: E402
from edgecall.runtime.pipeline import minion_keep_up  # noqa: E402

SHARED = BENCH.parents[1] / "shared" / "data"
PAPER_SIZES = {  # BCB'24 Table 1, hidden sizes after shrinking
    "lambda2e-7": (213, 126, 119, 291, 324),
    "lambda6e-7": (111, 48, 55, 179, 229),
    "lambda2e-6": (55, 22, 21, 88, 145),
}
BUILT = {"dense": (384,) * 5, **PAPER_SIZES}
ONT_SIZES = {  # ONT's R10.4.1 models at their own sizes, random weights (needs ont-bonito --no-deps, as the tests)
    "r10-fast": "dna_r10.4.1_e8.2_260bps_fast@v4.0.0",
    "r10-hac": "dna_r10.4.1_e8.2_400bps_hac@v4.2.0",
}


def build_package(name: str, root: Path, lstm_multiple: int = LSTM_WIDTH_MULTIPLE) -> Path:
    """A compiled package of the named size from a random factories-style checkpoint, or a bundled/package path;
    ``lstm_multiple``: compile's LSTM width padding."""
    from edgecall.package import DEFAULT_MODEL, load_package

    if name not in BUILT and name not in ONT_SIZES:
        package = load_package(DEFAULT_MODEL if name == "default" else name)
        if package.provenance.get("lstm_width_multiple", 1) in (1, lstm_multiple):
            return package.path
        return _recompiled(package, root, lstm_multiple)
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from factories import write_efficient_basecallers, write_tiny_ont_folder

    from edgecall.export.compile import compile_checkpoint

    if name in ONT_SIZES:
        folder = write_tiny_ont_folder(root / ONT_SIZES[name], SHARED, ONT_SIZES[name], width=None, kind="bonito")
        compile_checkpoint(folder, root / name, targets=["CPU"], name=ONT_SIZES[name], lstm_multiple=lstm_multiple)
        return root / name
    ckpt = write_efficient_basecallers(root / f"{name}.pt", BUILT[name])
    compile_checkpoint(ckpt, root / name, targets=["CPU"], name=name, lstm_multiple=lstm_multiple)
    return root / name


def _recompiled(package, root: Path, lstm_multiple: int) -> Path:  # noqa: ANN001 - ModelPackage
    """``package`` compiled again from the checkpoint its provenance names, with LSTMs padded to ``lstm_multiple``
    (bench/int8.py needs the unpadded network, which NNCF can quantise, of a bundled package compiled padded)."""
    from edgecall.export.compile import compile_checkpoint
    from edgecall.model.checkpoint import sha256_of

    recorded = Path(package.provenance.get("source", ""))
    parts = recorded.parts
    candidates = [recorded] + ([BENCH.parent.joinpath(*parts[parts.index("train-runs"):])] if "train-runs" in parts else [])
    want = package.provenance.get("source_sha256")
    for checkpoint in candidates:
        if checkpoint.is_file() and sha256_of(checkpoint) == want:
            out = root / f"{package.config.name}-x{lstm_multiple}"
            compile_checkpoint(checkpoint, out, targets=["CPU"], name=package.config.name,
                               beam_width=package.config.decoder.beam_width, lstm_multiple=lstm_multiple)
            return out
    raise SystemExit(f"{package.path}: its LSTMs are padded to multiples of {package.provenance['lstm_width_multiple']} "
                     f"and its checkpoint ({recorded}, sha256 {want}) is not here to compile it with multiple {lstm_multiple}")


def save_chunks(package: Path, reads: list[Path], count: int, out: Path) -> Path:
    """(count, 1, chunksize) float32 chunks of the reads, as the runtime prepares them for this model."""
    import numpy as np

    from edgecall.export.quantize import calibration_chunks
    from edgecall.package import load_package
    from edgecall.runtime.readers import iter_reads

    np.save(out, calibration_chunks(iter_reads(reads), load_package(package).config, limit=count))
    return out


def worker(spec: dict) -> None:
    """Child process for one-shot jobs (end to end, MatMul peak): print JSON lines."""
    if spec["engine"] == "sgemm":
        from nn_speed import sgemm_flops

        print(json.dumps({"flops": sgemm_flops()}), flush=True)
    else:
        from basecall import bench_model

        from edgecall.runtime.pipeline import RunOptions

        ref = Path(spec["reference"]) if spec.get("reference") else None
        r = bench_model(spec["package"], [Path(p) for p in spec["reads"]], RunOptions(max_reads=spec["max_reads"]), ref)
        acc = r.pop("accuracy", None)
        r["identity"] = None if acc is None else {"median": acc.median_identity, "mapped": acc.mapped, "reads": acc.reads}
        print(json.dumps(r), flush=True)
    print(json.dumps({"rss_mib": peak_rss_mib()}), flush=True)


def run_worker(spec: dict, timeout: float) -> tuple[list[dict], float | None, str | None]:
    """(results, peak RSS MiB, error); a worker past ``timeout`` is killed and keeps what it printed."""
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    error = None
    try:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode:
            error = (err.strip().splitlines() or ["exit %d" % proc.returncode])[-1][:200]
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        error = f"timed out after {timeout:g} s"
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rss = next((x["rss_mib"] for x in lines if "rss_mib" in x), None)
    return [x for x in lines if "rss_mib" not in x], rss, error


def measure_nn(models: dict, args: argparse.Namespace, label: str) -> dict:
    """model -> engine -> interleaved sweep (see engine_pool.py)."""
    out: dict = {}
    for name, info in models.items():
        t0 = time.perf_counter()
        specs = {e: {"engine": e, "package": str(info["package"]), "chunks": str(info["chunks"])}
                 for e in args.engines if e != "e2e"}
        out[name] = interleaved_sweep(specs, args.batches, rounds=args.rounds, min_time=args.min_time,
                                      max_call=args.max_call, timeout=args.worker_timeout,
                                      log=lambda s, n=name: print(f"  [{label}] {n:<12} {s}", file=sys.stderr, flush=True))
        print(f"  [{label}] {name:<12} {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def best_rate(result: dict, engine: str) -> float | None:
    best = result.get(engine, {}).get("best")
    return best["samples_per_s"] if best else None


def print_nn(nn: dict, models: dict, peak: float) -> None:
    print("\n(* one call, warm-up included: calls took longer than --max-call; '-': not run after that)")
    print(f"{'model':<12} {'MFLOP/smp':>9} {'engine':<13} {'batch':>5} {'k smp/s':>8} {'xMinION':>7} "
          f"{'GFLOP/s':>7} {'%peak':>6} {'RSS MiB':>7}  sweep (batch: k samples/s)")
    for name, result in nn.items():
        flops = models[name]["flops"]
        for engine, r in result.items():
            b = r["best"]
            sweep_txt = " ".join(f"{s['batch']}:{s['samples_per_s'] / 1e3:.1f}{'*' if s.get('warmup_only') else ''}"
                                 if s.get("samples_per_s") else f"{s['batch']}:-"
                                 for s in r["sweep"]) + (f" [{r['error']}]" if r["error"] else "")
            if b is None:
                print(f"{name:<12} {flops / 1e6:>9.3f} {engine:<13} {'-':>5} {'-':>8} {'':>7} {'':>7} {'':>6} {'':>7}  {sweep_txt}")
                continue
            g = b["samples_per_s"] * flops
            rss = f"{r['rss_mib']:.0f}" if r["rss_mib"] else "-"
            print(f"{name:<12} {flops / 1e6:>9.3f} {engine:<13} {b['batch']:>5} {b['samples_per_s'] / 1e3:>8.1f} "
                  f"{b['samples_per_s'] / models[name]['keep_up']:>7.2f} {g / 1e9:>7.1f} {100 * g / peak:>5.1f}% {rss:>7}  {sweep_txt}")


def ratio_line(result: dict) -> str:
    parts = []
    for base in ("torch", "torch-1t"):
        for engine in ("ov-throughput", "ov-latency", "ort"):
            if best_rate(result, base) and best_rate(result, engine):
                parts.append(f"{engine}/{base} {best_rate(result, engine) / best_rate(result, base):.1f}x")
    return ", ".join(parts) or "-"


def print_e2e(e2e: dict, models: dict, peak: float) -> None:
    print("\nend to end (edgecall run pipeline, OpenVINO CPU, automatic batch; busy share per stage; "
          "dec CPU: decoding's share of the process's CPU time)")
    print(f"{'model':<12} {'backend':<14} {'batch':>5} {'reads':>5} {'k smp/s':>8} {'xMinION':>7} {'%peak':>6} "
          f"{'RSS MiB':>7}  {'read':>5} {'norm':>5} {'infer':>5} {'decode':>6} {'write':>5}  {'dec CPU':>7}  identity")
    for name, r in e2e.items():
        if not r.get("samples_per_s"):
            print(f"{name:<12} failed: {r.get('error')}")
            continue
        busy = sum(r["stages"].values()) or 1.0
        shares = " ".join(f"{100 * v / busy:>5.1f}" for v in r["stages"].values())
        ident = r.get("identity")
        ident_txt = f"{ident['median']:.4f} ({ident['mapped']}/{ident['reads']})" if ident else "- (random weights)"
        print(f"{name:<12} {r['backend']:<14} {r['batch']:>5} {r['reads']:>5} {r['samples_per_s'] / 1e3:>8.1f} "
              f"{r['samples_per_s'] / models[name]['keep_up']:>7.2f} {100 * r['samples_per_s'] * models[name]['flops'] / peak:>5.1f}% "
              f"{r.get('rss_mib') or 0:>7.0f}  {shares}  {100 * r.get('decode_cpu_share', float('nan')):>6.1f}%  {ident_txt}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=["dense", "lambda2e-7", "lambda6e-7", "lambda2e-6", "default"])
    parser.add_argument("--engines", nargs="+", default=[*ENGINES, "e2e"], choices=[*ENGINES, *EXTRA_ENGINES, "e2e"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument("--reads", nargs="+", type=Path, default=[SHARED / "accuracy/lambda_r941/lambda_r941.pod5"])
    parser.add_argument("--reference", type=Path, default=SHARED / "accuracy/lambda_r941/Lambda_phage.fna")
    parser.add_argument("--chunks", type=int, default=128, help="Pool of real chunks the NN-only timings cycle through.")
    parser.add_argument("--min-time", type=float, default=1.0, help="Seconds timed per (engine, batch, round) after a warm-up call.")
    parser.add_argument("--rounds", type=int, default=2, help="Engines take turns this many times per batch; the best round counts.")
    parser.add_argument("--max-call", type=float, default=10.0, help="Stop a sweep at the first batch whose call takes longer (s).")
    parser.add_argument("--e2e-reads", type=int, default=10, help="Reads called end to end per model.")
    parser.add_argument("--worker-timeout", type=float, default=240.0)
    parser.add_argument("--contention", action="store_true", help="Measure NN-only again with one core kept busy by another process.")
    parser.add_argument("--json", type=Path, help="Write every number here.")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    peak = cpu_peak()
    print(f"# CPU: {cpu_description()}")
    print(f"# {cpu_threads()} cores; {peak.assumption()}")
    print(f"# reads: {' '.join(map(str, args.reads))}; {args.chunks}-chunk pool; per batch, engines take turns "
          f"{args.rounds}x, >= {args.min_time:g} s each, best round kept")
    load_start = os.getloadavg()[0]  # other jobs share these cores: say how busy they were
    matmul = [run_worker({"engine": "sgemm"}, 60)[0]]
    from edgecall.costs import model_costs
    from edgecall.package import load_package

    report: dict = {"cpu": {**peak.__dict__, "peak_flops": peak.flops, "assumption": peak.assumption()}, "models": {}}
    models: dict = {}
    nn, e2e, busy_nn = {}, {}, {}
    reference = str(args.reference) if args.reference.is_file() else None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in args.models:  # per model: build, NN idle, end to end, NN busy -- close together in time
            package = build_package(name, root)
            config = load_package(package).config
            info = models[name] = {"package": package, "flops": model_costs(config).flops,
                                   "keep_up": minion_keep_up(config.sample_rate),
                                   "layers": list(config.encoder.hidden_sizes), "chunksize": config.basecaller.chunksize,
                                   "chunks": save_chunks(package, args.reads, args.chunks, root / f"{name}.npy")}
            report["models"][name] = {k: str(v) if isinstance(v, Path) else v for k, v in info.items()}
            nn.update(measure_nn({name: info}, args, "idle"))
            if "e2e" in args.engines:
                spec = {"engine": "e2e", "package": str(package), "reads": [str(p) for p in args.reads],
                        "max_reads": args.e2e_reads, "reference": reference if name not in BUILT else None}
                results, rss, error = run_worker(spec, args.worker_timeout)
                e2e[name] = {**(results[0] if results else {}), "rss_mib": rss, "error": error}
                print(f"  [e2e] {name:<12} {(e2e[name].get('samples_per_s') or 0) / 1e3:.1f} k/s", file=sys.stderr, flush=True)
            if args.contention:
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    busy_nn.update(measure_nn({name: info}, args, "busy"))
                finally:
                    busy.terminate()
                    busy.wait()
    report.update(nn=nn, e2e=e2e, nn_contention=busy_nn or None)

    print_nn(nn, models, peak.flops)
    print("\nratios of best samples/s (NN only, no load added by this benchmark):")
    for name in nn:
        print(f"  {name:<12} {ratio_line(nn[name])}")
    if e2e:
        print_e2e(e2e, models, peak.flops)
    if busy_nn:
        print("\nwith one core kept busy by another process (NN only):")
        print_nn(busy_nn, models, peak.flops)
        print("\nslowdown under contention (best idle / best busy) and OpenVINO/torch ratios:")
        for name in nn:
            slow = "  ".join(f"{e} {best_rate(nn[name], e) / best_rate(busy_nn[name], e):.1f}x"
                             for e in nn[name] if best_rate(nn[name], e) and best_rate(busy_nn[name], e))
            print(f"  {name:<12} slowdown: {slow}\n  {'':<12} idle: {ratio_line(nn[name])}\n  {'':<12} busy: {ratio_line(busy_nn[name])}")
    matmul.append(run_worker({"engine": "sgemm"}, 60)[0])
    got = [m[0]["flops"] for m in matmul if m]
    report["matmul_flops"] = got
    print("\n# attainable: a 2048^2 f32 MatMul in OpenVINO ran at " + ", then ".join(f"{g / 1e9:.0f}" for g in got)
          + f" GFLOP/s (start, end) = {', '.join(f'{100 * g / peak.flops:.0f}%' for g in got)} of the estimated peak")
    report["load_average_1min"] = {"start": load_start, "end": os.getloadavg()[0]}
    print(f"\n# 1-min load average: {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end ({cpu_threads()} cores)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"\n# wrote {args.json}")


if __name__ == "__main__":
    main()
