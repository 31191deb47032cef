"""int8 post-training quantisation of a package's CPU IR with OpenVINO NNCF.

Why: on a laptop CPU the recurrent layers dominate, and NNCF quantises
OpenVINO ``LSTMSequence`` nodes (and convolutions and the head's MatMul) to
int8, which ran the HAC-size CRF net several times faster than f32 here.
Quantisation ranges come from calibration data, so the data must look like
what the network sees at run time: normalised, chunked **real** reads (never
the reads accuracy is measured on). Simulated reads are a fallback only.

NNCF leaves ``GRUSequence`` nodes with ``linear_before_reset`` (PyTorch's GRU,
so the DeepNano-blitz models) in f32: only their convolution and head go int8.

No preset keeps a trained LSTM CRF model's calls in OpenVINO 2026.4, so
``compile`` refuses their int8 IRs (the agreement check below). With the
symmetric PERFORMANCE preset used here, edgecall-r941-v2 keeps 69% of its f32
calls. The asymmetric MIXED preset (what oneDNN's int8 LSTM expects: unsigned
activations with a shift) keeps 98.4% when the batch is dynamic, but only 56%
with the static batch ``run`` compiles, where OpenVINO picks its fast int8 LSTM
kernel (bench/RESULTS.md).

The result is written beside the f32 IR as ``openvino/<TARGET>-INT8/model.xml``
(+ .bin), FP32 except for the int8 FakeQuantize/weights, dynamic batch and time
like the f32 IR. Needs ``nncf`` (the ``export`` extra); never imported by ``run``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edgecall.config import ModelConfig
from edgecall.edit_distance import edit_distance
from edgecall.errors import EdgecallError, raise_missing_extra
from edgecall.package import PROVENANCE_NAME, ModelPackage, load_package
from edgecall.runtime.chunk import cut, plan_chunks
from edgecall.runtime.decode import crf, ctc
from edgecall.runtime.read import Read, ReadFailure
from edgecall.runtime.readers import find_inputs, iter_reads
from edgecall.runtime.signal import prepare

INT8_SUFFIX = "-INT8"  # openvino/<TARGET><INT8_SUFFIX>/model.xml
DEFAULT_SUBSET = 300  # calibration chunks (NNCF's default subset size)
CHECK_CHUNKS = 32  # further chunks of the calibration reads on which int8 calls are compared with f32 calls
# int8 vs f32 call agreement below which the int8 IR is refused as broken. Agreement
# bounds the identity loss only loosely (disagreements fall where f32 is unsure too):
# deepnano-blitz-w64 agreed 98.3% and lost 0.13 points on the lambda dev set, while
# edgecall-r941-v1's int8 agreed 10% and mapped no read. Whether int8 costs under 0.5
# points needs a truth set: bench/int8.py measures it.
MIN_AGREEMENT = 0.95
MAX_CHUNKS_PER_READ = 8  # spread calibration over many reads rather than a few long ones
SHARED_CALIBRATION = Path(__file__).resolve().parents[3] / "shared" / "data" / "models" / "deepnano-blitz" / "test_sample"
SIMULATED_READS = 40  # fallback: simulated reads of ~8 kb, ~70 k samples each
SIMULATED_GENOME = 50_000  # bases of the random reference the fallback reads come from


def int8_ir_dir(package_dir: Path, target: str = "CPU") -> Path:
    """Where the int8 IR of ``target`` lives inside a package."""
    return Path(package_dir) / "openvino" / f"{target.upper()}{INT8_SUFFIX}"


def calibration_chunks(
    reads: Iterable[Read | ReadFailure], config: ModelConfig, *, limit: int, chunksize: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """(n <= limit, 1, chunksize) float32 normalised chunks, as the runtime prepares them.

    At most MAX_CHUNKS_PER_READ chunks per read (drawn at random, kept in
    order), so a few long reads do not make up the whole calibration set.
    Failed reads are skipped; a read at another sample rate is an error.
    """
    chunksize = chunksize or config.basecaller.chunksize
    overlap = min(config.basecaller.overlap, chunksize - config.stride)
    out: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    for read in reads:
        if isinstance(read, ReadFailure):
            continue
        if read.sample_rate != config.sample_rate:
            raise EdgecallError(
                f"{read.source}: calibration read {read.read_id} was sampled at {read.sample_rate} Hz but model "
                f"'{config.name}' expects {config.sample_rate} Hz; calibrate on reads of the model's chemistry"
            )
        signal, _ = prepare(read, config.normalisation)
        if signal.shape[0] < chunksize // 2:  # mostly padding: not what the network usually sees
            continue
        chunks = cut(signal, plan_chunks(int(signal.shape[0]), chunksize, overlap, config.stride), chunksize)
        if chunks.shape[0] > MAX_CHUNKS_PER_READ:
            chunks = chunks[np.sort(rng.choice(chunks.shape[0], MAX_CHUNKS_PER_READ, replace=False))]
        out.extend(chunks)
        if len(out) >= limit:
            break
    if not out:
        raise EdgecallError("no calibration chunks: the calibration reads are empty, unreadable or all too short")
    return np.stack(out[:limit])[:, None, :].astype(np.float32, copy=False)


def simulated_reads(n: int = SIMULATED_READS, seed: int = 1) -> Iterator[Read]:
    """Fallback calibration reads: simulated R9.4.1 signal from a random genome."""
    from edgecall.train.simulate import SAMPLE_RATE, SimulationOptions, simulate_reads

    genome = "".join(np.random.default_rng(seed).choice(list("ACGT"), SIMULATED_GENOME))
    for sim in simulate_reads({"random": genome}, n, SimulationOptions(seed=seed)):
        yield Read(
            read_id=sim.read_id, raw=sim.raw, offset=sim.offset, scale=sim.scale, sample_rate=SAMPLE_RATE,
            channel=sim.channel, start_time="1970-01-01T00:00:00+00:00", run_id=sim.run_id, source=Path("simulated"),
        )


def default_calibration_reads() -> tuple[Iterator[Read | ReadFailure], str]:
    """(reads, description): the shared R9.4.1 test-sample fast5s if present, else simulated reads."""
    if SHARED_CALIBRATION.is_dir() and any(SHARED_CALIBRATION.glob("*.fast5")):
        return iter_reads(find_inputs([SHARED_CALIBRATION])), f"real reads in {SHARED_CALIBRATION}"
    return simulated_reads(), f"{SIMULATED_READS} simulated R9.4.1 reads (no real calibration reads found)"


def quantize_ir(xml: Path, out_xml: Path, chunks: np.ndarray, *, subset_size: int = DEFAULT_SUBSET) -> Path:
    """Quantise the IR at ``xml`` with ``chunks`` (n, 1, T) and write ``out_xml`` (+ .bin).

    Chunks are fed one per calibration step (batch 1), so ``subset_size``
    counts chunks. Target device CPU, preset PERFORMANCE (symmetric int8, what
    the CPU plugin runs fastest).
    """
    try:
        import nncf
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "int8 quantisation")
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    dataset = nncf.Dataset([chunks[i : i + 1] for i in range(chunks.shape[0])])
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is for data only
        quantized = nncf.quantize(
            model, dataset, subset_size=min(subset_size, chunks.shape[0]),
            target_device=nncf.TargetDevice.CPU, preset=nncf.QuantizationPreset.PERFORMANCE,
        )
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return out_xml


def quantize_package(
    package_dir: Path, calibration_reads: Sequence[Path] | Iterable[Read | ReadFailure] | None = None,
    subset_size: int = DEFAULT_SUBSET, *, target: str = "CPU", min_agreement: float = MIN_AGREEMENT,
) -> Path:
    """Write ``openvino/<target>-INT8/model.xml`` from the package's f32 IR; return its path.

    ``calibration_reads``: .pod5/.fast5 files or folders, or Read objects;
    None takes :func:`default_calibration_reads`. The provenance records what
    calibrated the IR, the int8 op counts and the int8 calls' agreement with the
    f32 calls on chunks beyond the calibration set; below ``min_agreement`` the
    int8 IR is removed again and this raises. ``target`` names the f32 IR to start from;
    only CPU has been measured (NNCF is told the target is a CPU).
    """
    if isinstance(calibration_reads, (str, Path)):
        calibration_reads = [Path(calibration_reads)]
    package = load_package(Path(package_dir))
    xml = package.openvino_ir(target)
    if xml is None:
        raise EdgecallError(f"{package.path}: no openvino/{target.upper()} IR to quantise; compile with --target {target}")
    widths, kept = package.provenance.get("lstm_widths"), package.provenance.get("neurons_kept")
    if widths is not None and widths != kept:  # NNCF's int8 LSTMs then disagree with f32 on most bases
        raise EdgecallError(f"{package.path}: its LSTMs are padded with zeroed neurons ({widths} wide for {kept} kept), "
                            "which int8 quantisation breaks; compile it with --lstm-multiple 1 to quantise it")
    if calibration_reads is None:
        reads, source = default_calibration_reads()
    else:
        items = list(calibration_reads) if isinstance(calibration_reads, (list, tuple)) else calibration_reads
        if isinstance(items, list) and items and isinstance(items[0], (str, Path)):
            reads, source = iter_reads(find_inputs([Path(p) for p in items])), ", ".join(map(str, items))
        else:
            reads, source = iter(items), "given reads"
    chunks = calibration_chunks(reads, package.config, limit=subset_size + CHECK_CHUNKS)
    calibration, check = _split(chunks, subset_size)
    out = quantize_ir(xml, int8_ir_dir(package.path, target) / "model.xml", calibration, subset_size=subset_size)
    agreement = call_agreement(package, check)
    if agreement < min_agreement:
        shutil.rmtree(out.parent)
        raise EdgecallError(
            f"{package.path}: int8 not written: its calls agree with the f32 calls on only {agreement:.2%} of the bases of "
            f"{check.shape[0]} chunks of the calibration reads (needs {min_agreement:.0%}): quantisation broke "
            "this model; use the f32 model"
        )
    _record(package.path, out, source, calibration.shape[0], agreement, check.shape[0])
    return out


def _split(chunks: np.ndarray, subset_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, check) chunks; check chunks come after the calibration ones when there are enough."""
    n = chunks.shape[0]
    if n > subset_size:
        return chunks[:subset_size], chunks[subset_size:]
    held = n // 5
    return (chunks[: n - held], chunks[n - held :]) if held else (chunks, chunks)


def call_agreement(package: ModelPackage, chunks: np.ndarray) -> float:
    """1 - (edit distance between the int8 and the f32 calls) / (f32 bases), over ``chunks``.

    Both IRs run as ``edgecall run`` runs them (:func:`runtime_scores`) on the
    same chunks, and their scores are decoded alike (CRF: Viterbi; CTC: greedy);
    a read's identity can fall by at most about the disagreement, usually far less.
    """
    f32 = _calls(package.config, runtime_scores(package, chunks))
    int8 = _calls(package.config, runtime_scores(package, chunks, f"CPU{INT8_SUFFIX}"))
    distance = sum(edit_distance(a, b) for a, b in zip(f32, int8))
    return 1.0 - distance / max(1, sum(len(a) for a in f32))


def runtime_scores(package: ModelPackage, chunks: np.ndarray, ir_name: str | None = None,
                   precision: str = "f32") -> np.ndarray:
    """(frames, chunks, outputs) scores of the package's CPU IR (or ``ir_name``), compiled as ``edgecall run`` does.

    That is a static batch of the run's default size. OpenVINO 2026.4 runs an int8
    LSTM by one kernel for a static batch and by another for a dynamic one, and they
    disagree on trained CRF models (asymmetric activations: 56% against 98% of the
    f32 calls kept, bench/RESULTS.md). A check on any other shape could pass IRs
    that ``run`` then calls wrong.
    """
    from edgecall.runtime.backends.openvino import OpenVinoBackend
    from edgecall.runtime.pipeline import auto_batch_size

    batch, chunksize = auto_batch_size("CPU"), chunks.shape[2]
    backend = OpenVinoBackend(package, "CPU", batch_size=batch, chunksize=chunksize, threads=None, ir_name=ir_name,
                              inference_precision=precision)
    try:
        parts = []
        for start in range(0, chunks.shape[0], batch):
            part = chunks[start : start + batch]
            padded = np.zeros((batch, 1, chunksize), np.float32)
            padded[: part.shape[0]] = part
            parts.append(backend(padded)[:, : part.shape[0]])  # the backend hands out its own copy
        return np.concatenate(parts, axis=1)
    finally:
        backend.close()


def _calls(config: ModelConfig, scores: np.ndarray) -> list[np.ndarray]:
    dec = config.decoder
    if dec.kind == "crf":
        decoded = crf.decode_batch(scores, mode="viterbi", state_len=config.state_len, blank_score=config.blank_score)
    else:
        labels = "".join(dec.labels)
        decoded = [ctc.greedy(np.ascontiguousarray(scores[:, i]), labels=labels) for i in range(scores.shape[1])]
    return [np.frombuffer(d.sequence.encode("ascii"), np.uint8) for d in decoded]


def int8_op_counts(xml: Path) -> dict[str, int]:
    """FakeQuantize nodes and int8/uint8 constants in an IR: evidence that it really is quantised."""
    import openvino as ov

    counts = {"FakeQuantize": 0, "i8/u8 constants": 0}
    for op in ov.Core().read_model(str(xml)).get_ops():
        if op.get_type_name() == "FakeQuantize":
            counts["FakeQuantize"] += 1
        elif op.get_type_name() == "Constant" and op.get_element_type() in (ov.Type.i8, ov.Type.u8):
            counts["i8/u8 constants"] += 1
    return counts


def _record(package_dir: Path, xml: Path, source: str, chunks: int, agreement: float, checked: int) -> None:
    path = package_dir / PROVENANCE_NAME
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc["int8"] = {
        "ir": str(xml.relative_to(package_dir)),
        "method": "OpenVINO NNCF post-training quantisation (target CPU, preset PERFORMANCE)",
        "calibration": source,
        "calibration_chunks": chunks,
        "ops": int8_op_counts(xml),
        "agreement_with_f32_calls": round(agreement, 6),
        "agreement_chunks": checked,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
