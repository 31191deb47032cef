"""NN-only speed of one model on one engine at one batch size, and this CPU's peak (throughput.py, int8.py).

Engines: ``torch`` (PyTorch eager, the Bonito way: inference_mode, all cores;
``torch-1t`` the same on one thread),
``ort`` (ONNX Runtime CPU), ``ov-latency`` / ``ov-throughput`` (OpenVINO CPU,
f32 precision hint, static shape per batch; THROUGHPUT keeps the plugin's
optimal number of requests in flight with an AsyncInferQueue). Each runs in
its own process (engine_pool.py), so thread pools never compete and peak RSS is
per engine.

Timing (see engine_pool.py for the interleaved sweep): a warm-up call when an
(engine, batch) is opened, then calls until ``min_time`` seconds have passed;
samples/s = chunks x chunksize / seconds.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


ENGINES = ("torch", "ort", "ov-latency", "ov-throughput")
EXTRA_ENGINES = ("torch-1t",)  # PyTorch eager on one thread: shows that its collapse is thread synchronisation
Runner = Callable[[list[np.ndarray], float], tuple[int, float]]  # (batches, min_time) -> (calls, seconds)


def cpu_threads() -> int:
    """Cores this process may run on (all of them is what each engine is given)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class CpuPeak:
    """Peak FP32 FLOP/s estimated from the core count, clock and SIMD width (nanoGPT-style MFU)."""

    cores: int  # usable cores
    ghz: float  # clock from /proc/cpuinfo "cpu MHz" (nominal on VMs; no turbo assumed)
    isa: str  # widest FMA SIMD found in the flags
    flops_per_cycle: int  # per core: lanes x 2 (FMA) x FMA_UNITS
    int8_factor: int  # int8 ops per FP32 FLOP: 4 with VNNI (4 int8 MACs per 32-bit lane), else 2

    @property
    def flops(self) -> float:
        return self.cores * self.ghz * 1e9 * self.flops_per_cycle

    def assumption(self) -> str:
        return (f"peak FP32 = {self.cores} cores x {self.ghz:.2f} GHz x {self.flops_per_cycle} FLOP/cycle "
                f"({self.isa}: {self.flops_per_cycle // (2 * FMA_UNITS)} lanes x 2 (FMA) x {FMA_UNITS} FMA units) "
                f"= {self.flops / 1e9:.0f} GFLOP/s; halve it for cores with one 512-bit FMA unit (e.g. Zen 4)")


FMA_UNITS = 2  # FMA pipes per core on current server cores (Intel since Skylake-SP Gold, AMD Zen 5)


def cpu_peak() -> CpuPeak:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    if "avx512f" in flags:
        isa, lanes = "AVX-512", 16
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "AVX2+FMA", 8
    else:
        isa, lanes = "SSE (no FMA)", 4
    int8 = 4 if flags & {"avx512_vnni", "avx_vnni"} else 2
    return CpuPeak(cpu_threads(), max(mhz) / 1000 if mhz else 1.0, isa, lanes * 2 * FMA_UNITS, int8)


def sgemm_flops(size: int = 2048, seconds: float = 2.0) -> float:
    """FP32 FLOP/s of a large square MatMul in OpenVINO (oneDNN), all cores: an attainable peak.

    oneDNN, not numpy: numpy's OpenBLAS and torch's matmul reached 50-60 GFLOP/s
    on this CPU where oneDNN reached 110-230 (same 2 cores, shared with other jobs).
    """
    import openvino as ov
    import openvino.opset13 as ops
    import openvino.properties.hint as hints

    x = ops.parameter([size, size], np.float32)
    w = ops.constant(np.random.default_rng(0).standard_normal((size, size), dtype=np.float32))
    model = ov.Model([ops.matmul(x, w, False, False)], [x])
    compiled = ov.Core().compile_model(model, "CPU", {hints.performance_mode: hints.PerformanceMode.LATENCY,
                                                      hints.inference_precision: ov.Type.f32})
    request, a = compiled.create_infer_request(), np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    request.infer({0: a})  # warm-up
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        request.infer({0: a})
        calls += 1
    return calls * 2.0 * size**3 / (time.perf_counter() - start)


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec from the parent."""
    status = Path("/proc/self/status")
    found = re.search(r"^VmHWM:\s*(\d+) kB", status.read_text(), re.M) if status.is_file() else None
    if found:
        return int(found.group(1)) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_engine(engine: str, package_dir: Path, batch: int, chunksize: int, threads: int, xml: Path | None = None) -> Runner:
    """A runner for one (engine, batch); ``xml`` overrides the package's CPU IR (int8 comparisons)."""
    from edgecall.package import load_package

    package = load_package(package_dir)
    if engine in ("torch", "torch-1t"):
        return _torch(package, 1 if engine == "torch-1t" else threads)
    if engine == "ort":
        return _ort(package, threads)
    if engine in ("ov-latency", "ov-throughput"):
        return _openvino(xml or package.openvino_ir("CPU") or package.onnx_path, batch, chunksize, engine == "ov-throughput")
    raise ValueError(f"unknown engine {engine} (known: {', '.join(ENGINES)})")


def _loop(call: Callable[[np.ndarray], object]) -> Runner:
    def run(batches: list[np.ndarray], min_time: float) -> tuple[int, float]:
        calls, start = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - start < min_time:
            call(batches[calls % len(batches)])
            calls += 1
        return calls, time.perf_counter() - start

    return run


def _torch(package, threads: int) -> Runner:  # noqa: ANN001 - ModelPackage
    import torch

    from edgecall.model.build import model_from_arrays

    torch.set_num_threads(threads)
    model = model_from_arrays(package.config, package.weights()).eval()

    def call(x: np.ndarray) -> None:
        with torch.inference_mode():
            model(torch.from_numpy(x))

    return _loop(call)


def _ort(package, threads: int) -> Runner:  # noqa: ANN001 - ModelPackage
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(package.onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return _loop(lambda x: session.run(None, {name: x}))


def _openvino(xml: Path, batch: int, chunksize: int, throughput: bool) -> Runner:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    core = ov.Core()
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([batch, 1, chunksize])})
    mode = hints.PerformanceMode.THROUGHPUT if throughput else hints.PerformanceMode.LATENCY
    # f32 explicitly: bf16 is emulated on CPUs without bf16 hardware and ran 12-32x slower here
    compiled = core.compile_model(model, "CPU", {hints.performance_mode: mode, hints.inference_precision: ov.Type.f32})
    if not throughput:
        request = compiled.create_infer_request()
        return _loop(lambda x: request.infer({0: x}))
    nireq = int(compiled.get_property(props.optimal_number_of_infer_requests))
    queue = ov.AsyncInferQueue(compiled, nireq)

    def run(batches: list[np.ndarray], min_time: float) -> tuple[int, float]:
        calls, start = 0, time.perf_counter()
        while calls < nireq or time.perf_counter() - start < min_time:
            queue.start_async({0: batches[calls % len(batches)]})
            calls += 1
        queue.wait_all()
        return calls, time.perf_counter() - start

    run.requests = nireq  # type: ignore[attr-defined]
    return run


def make_batches(chunks: np.ndarray, batch: int, limit: int = 8) -> list[np.ndarray]:
    """Distinct (batch, 1, T) batches cut from the chunk pool in order (wrapping round)."""
    n = chunks.shape[0]
    count = max(1, min(limit, n // batch))
    return [np.ascontiguousarray(chunks[np.arange(i * batch, (i + 1) * batch) % n]) for i in range(count)]


def measure_batch(run: Runner, data: list[np.ndarray], *, min_time: float, max_call: float, warm_up: bool) -> dict:
    """Time one opened (engine, batch): samples/s, calls, seconds, seconds per call.

    ``warm_up`` (first use of the runner): one untimed call first; if that
    call alone is slower than ``max_call`` it is the measurement
    (``warmup_only``), since PyTorch eager under contention can take minutes per call.
    """
    batch, chunksize = data[0].shape[0], data[0].shape[-1]
    warmup_only = False
    if warm_up:
        calls, seconds = run(data[:1], 0.0)
        warmup_only = seconds / calls > max_call
    if not warmup_only:
        calls, seconds = run(data, min_time)
    return {"batch": batch, "samples_per_s": calls * batch * chunksize / seconds, "calls": calls, "seconds": seconds,
            "call_seconds": seconds / calls, "requests": getattr(run, "requests", 1), "warmup_only": warmup_only}
