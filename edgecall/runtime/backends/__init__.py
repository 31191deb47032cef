"""One small inference interface over OpenVINO, ONNX Runtime and PyTorch.

``scores = backend(batch)``: batch (N, 1, T) float32 normalised signal with
N == backend.batch_size and T == backend.chunksize; scores (T/stride, N, C)
float32, any strides: a backend may lay them out chunk by chunk (each chunk's
(T, C) block contiguous, as :func:`chunk_major` does), which the decoder reads fastest. All session setup (threads, static
shapes, precision) happens once in :func:`open_backend`.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

import numpy as np

from edgecall.devices import resolve_device
from edgecall.devices.precision import REDUCED, native_precisions, why_not_native
from edgecall.errors import EdgecallError
from edgecall.package import ModelPackage


T = TypeVar("T")


def sequential_stream(
    backend: "Backend", items: Iterable[T], data_of: Callable[[T], np.ndarray | None]
) -> Iterator[tuple[T, np.ndarray | None]]:
    """One batch at a time: the stream of backends without asynchronous requests (their
    outputs are the runtime's own arrays, so there is nothing to recycle)."""
    for item in items:
        data = data_of(item)
        yield item, None if data is None else backend(data)


def chunk_major(scores: np.ndarray) -> np.ndarray:
    """A copy of (T, N, C) ``scores`` with each chunk's (T, C) block contiguous, still indexed (T, N, C).

    The decoder walks one chunk frame by frame; in the network's own layout its
    rows sit N*C apart, a stride that maps them all onto the same few cache sets.
    """
    out = np.empty((scores.shape[1], scores.shape[0], scores.shape[2]), np.float32)
    out[...] = scores.transpose(1, 0, 2)
    return out.transpose(1, 0, 2)


class ScoreBuffers:
    """Chunk-major score arrays handed back once decoded, for a later batch's inference to write into.

    Why: a batch's scores are tens of MB (chunks x frames x 1,024 float32). A fresh
    array of that size is fresh memory from the kernel, whose page faults and
    zeroing every batch paid again; copying the network's output into it cost 12%
    of the default model's inference time on a 2-core Zen 3 (bench/RESULTS.md,
    issue 19). The pipeline bounds how many batches are in flight, so a few
    buffers serve a whole run.
    """

    def __init__(self, keep: int = 6) -> None:
        self.keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, chunks: int, frames: int, width: int) -> np.ndarray:
        """A contiguous (chunks, frames, width) float32 array: a handed-back one if it fits, else new."""
        shape = (chunks, frames, width)
        with self._lock:
            for i, array in enumerate(self._free):
                if array.shape == shape:
                    return self._free.pop(i)
        return np.empty(shape, np.float32)

    def give(self, scores: np.ndarray) -> None:
        """(T, N, C) ``scores`` that nobody reads any more: kept if chunk-major (see :meth:`take`)."""
        whole = scores.transpose(1, 0, 2)
        if whole.flags.c_contiguous and whole.dtype == np.float32:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(whole)


class Backend(Protocol):
    name: str  # e.g. "openvino:CPU", "onnxruntime:CPUExecutionProvider", "torch:cpu"
    precision: str  # what the network's float arithmetic runs in: "f32", or a CPU's native "bf16"/"f16"
    output_width: int | None  # C, values per output frame, when the runtime can tell
    batch_size: int  # chunks per call (static)
    chunksize: int  # samples per chunk (static)

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def stream(self, items: Iterable[T], data_of: Callable[[T], np.ndarray | None],
               recycled: ScoreBuffers | None = None) -> Iterator[tuple[T, np.ndarray | None]]:
        """(item, scores) for each item in order; backends that can keep several batches
        in flight do so here. An item without data is a barrier: every item before it
        comes out before it does (with None scores), so nothing waits in flight for
        input that is not coming yet. Closing the stream waits for the requests in flight.
        ``recycled``: where the caller hands scores back once decoded; a backend that
        can write its output into memory of the caller's takes it from there."""
        ...

    def close(self) -> None: ...


PRECISIONS = ("auto", "f32", "int8", "bf16", "f16")


def open_backend(
    package: ModelPackage, device: str, *, batch_size: int, chunksize: int, threads: int | None = None,
    precision: str = "f32",
) -> Backend:
    """Open ``package`` on ``device`` (see :mod:`edgecall.devices.discovery`)."""
    found = resolve_device(device)
    if precision not in PRECISIONS:
        raise EdgecallError(f"unknown precision '{precision}' (choose {', '.join(PRECISIONS)})")
    if precision == "auto":
        precision = automatic_precision(package, found)
    ir_name = None
    if precision == "int8":
        if found.backend != "openvino" or found.target != "CPU":
            raise EdgecallError(f"--precision int8 runs on the OpenVINO CPU device only, not '{device}'")
        ir_name = "CPU-INT8"
        if package.openvino_ir(ir_name) is None:
            raise EdgecallError(
                f"{package.path}: has no int8 model; make one with 'edgecall compile CHECKPOINT --int8' "
                "(needs the export extra)"
            )
    reduced = "f32"
    if precision in REDUCED:
        check_reduced_precision(package, found, precision)
        reduced = precision
    backend = _open(package, found, batch_size=batch_size, chunksize=chunksize, threads=threads, ir_name=ir_name,
                    inference_precision=reduced)
    check_output_width(package, backend.output_width)
    return backend


def automatic_precision(package: ModelPackage, found) -> str:  # noqa: ANN001 - Device
    """bf16 (else f16) on the OpenVINO CPU where this CPU computes it natively and the package's calls in
    it passed their check against its f32 calls; f32 everywhere else.

    Why the default: on a Zen 4 CPU bf16 ran the bundled R9.4.1 models 1.35-1.7x faster end to end at
    the same identity (bench/RESULTS.md), the difference between keeping up with a MinION or not; the
    check (>= 99.5% of bases equal to f32's) is what makes it safe, and where either is missing f32 runs.
    """
    if found.backend != "openvino" or found.target != "CPU":
        return "f32"
    checks = package.provenance.get("precision_checks", {})
    return next((p for p in native_precisions() if checks.get(p, {}).get("passed")), "f32")


def check_reduced_precision(package: ModelPackage, found, precision: str) -> None:  # noqa: ANN001 - Device
    """bf16/f16 only on the OpenVINO CPU, only where native, only for a package whose check passed."""
    if found.backend != "openvino" or found.target != "CPU":
        raise EdgecallError(f"--precision {precision} runs on the OpenVINO CPU device only, not '{found.spec}'")
    if precision not in native_precisions():
        raise EdgecallError(f"--precision {precision}: {why_not_native(precision)}")
    check = package.provenance.get("precision_checks", {}).get(precision)
    if not check:
        raise EdgecallError(
            f"{package.path}: its {precision} calls were never checked against its f32 calls; run "
            f"'edgecall compile ... --check-precision {precision}' (export extra) or use --precision f32"
        )
    if not check.get("passed"):
        raise EdgecallError(
            f"{package.path}: its {precision} calls agree with its f32 calls on only {check['agreement']:.2%} of bases "
            f"(needs {check['min_agreement']:.1%}): {precision} is refused for this model; use --precision f32"
        )


def check_output_width(package: ModelPackage, width: int | None) -> None:
    """Refuse a package whose network and config disagree (edited or mixed-up files)."""
    expected = package.config.num_outputs
    if width is not None and width != expected:
        raise EdgecallError(
            f"{package.path}: the network outputs {width} values per frame but config.toml describes "
            f"{expected} ({package.config.decoder.kind}); the package is inconsistent, re-create it"
        )


def _open(
    package: ModelPackage, found, *, batch_size: int, chunksize: int, threads: int | None, ir_name: str | None,  # noqa: ANN001
    inference_precision: str = "f32",
) -> Backend:
    if found.backend == "openvino":
        from edgecall.runtime.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(
            package, found.target, batch_size=batch_size, chunksize=chunksize, threads=threads, ir_name=ir_name,
            inference_precision=inference_precision,
        )
    if found.backend == "onnxruntime":
        from edgecall.runtime.backends.onnxruntime import OrtBackend

        return OrtBackend(package, found.target, batch_size=batch_size, chunksize=chunksize, threads=threads)
    from edgecall.runtime.backends.torch import TorchBackend

    return TorchBackend(package, batch_size=batch_size, chunksize=chunksize, threads=threads)
