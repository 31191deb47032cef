"""The one module that chains the stages: read -> prepare -> batch -> infer -> decode -> stitch.

Each stage is an iterator; :class:`Stages` runs the reading, inference and
decoding stages in their own threads behind small bounded queues, so I/O,
inference and decoding overlap while memory stays flat. Called reads come out
in input order; failed reads come out as :class:`ReadFailure` in their place.
An :class:`Idle` marker in the input (a watched folder waiting) comes out
after every read before it is finished. :meth:`Basecaller.stop_reading` ends
the input early (Ctrl-C) with the reads already read still finished;
:meth:`Basecaller.close` stops everything and waits for the stage threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from edgecall.chemistry import RunChemistry, RunCheck, check_run, run_chemistry
from edgecall.config import DecoderConfig, ModelConfig, validate_chunking
from edgecall.devices.precision import REDUCED
from edgecall.errors import EdgecallError, UsageError
from edgecall.package import ModelPackage
from edgecall.runtime.background import Stages
from edgecall.runtime.backends import Backend, ScoreBuffers, open_backend
from edgecall.runtime.chunk import ChunkPlan, cut, plan_chunks
from edgecall.runtime.decode import crf, ctc
from edgecall.runtime.read import IDLE, CalledRead, DecodedChunk, Idle, Read, ReadFailure
from edgecall.runtime.readers import iter_reads
from edgecall.runtime.resample import resample_read
from edgecall.runtime.signal import SCALING_NAMES, prepare_scaled
from edgecall.runtime.stitch import stitch_decoded, stitch_scores

AUTO_BATCH_SIZE = 16  # chunks per inference call when --batch-size is not given (see auto_batch_size)
QUEUE_DEPTH = 4  # batches buffered between stages


@dataclass(frozen=True)
class RunOptions:
    device: str = "CPU"  # see edgecall.devices
    precision: str = "auto"  # auto (see backends.automatic_precision), f32, int8, bf16 or f16
    batch_size: int | None = None  # chunks per inference call; None: automatic
    chunksize: int | None = None  # samples per chunk; None: the model's
    overlap: int | None = None  # samples shared by neighbouring chunks; None: the model's
    threads: int | None = None  # CPU threads for inference and decoding; None: all
    decode_mode: str = "beam"  # beam, or viterbi (CRF) / greedy (CTC)
    read_ids: frozenset[str] | None = None  # only these reads
    skip_read_ids: frozenset[str] = frozenset()  # never these (already called, when resuming)
    max_reads: int | None = None  # stop after this many reads
    max_memory: int | None = None  # bytes the pipeline's buffers may use; None: no cap

    def __post_init__(self) -> None:
        """Refuse values that would otherwise be read as 'default' (0) or fail deep inside a runtime (-1)."""
        for flag, value, least in (
            ("--batch-size", self.batch_size, 1), ("--chunksize", self.chunksize, 1), ("--overlap", self.overlap, 0),
            ("--threads", self.threads, 1), ("--max-reads", self.max_reads, 1),
        ):  # a --max-memory too small for anything is named by _fit_memory, in GB
            if value is not None and value < least:
                raise UsageError(f"{flag} must be at least {least}, got {value}")


@dataclass
class StageTimes:
    """Seconds spent in each stage (threads overlap, so they may sum past wall time)."""

    read: float = 0.0
    normalise: float = 0.0
    infer: float = 0.0
    decode: float = 0.0
    decode_cpu: float = 0.0  # CPU seconds of the decoding threads (decode is their wall time)
    samples: int = 0  # raw samples of the reads that entered the pipeline
    batches: int = 0
    decoder_load: float = 0.0  # wall seconds the pipeline waited for the decoder's kernels (see load_decoder)


@dataclass(eq=False)
class _Job:
    """One read in flight: its plan and the per-chunk results gathered so far."""

    read: Read
    plan: ChunkPlan
    trimmed: int
    shift: float  # pA the normalisation subtracted (sm:f)
    scale: float  # pA per normalised unit (sd:f)
    chunks: np.ndarray | None  # (chunks, chunksize) float32 until batched
    pieces: list = field(default_factory=list)

    @property
    def done(self) -> bool:
        return len(self.pieces) == self.plan.num_chunks


@dataclass(eq=False)
class _Batch:
    data: np.ndarray | None  # (batch, 1, chunksize) float32; None for a marker and once inferred
    owners: list[tuple[_Job, int]]  # (job, chunk index) per filled row
    started: list[_Job | ReadFailure]  # entries first seen in this batch, input order
    idle: bool = False  # an Idle marker (no data): everything before it is to be finished now
    scores: np.ndarray | None = None  # (frames, batch, C) after inference
    results: list | None = None  # per owner: DecodedChunk (CRF) or (frames, C) scores (CTC)


class Basecaller:
    """Open once (backend compiled once), then call :meth:`run` on inputs."""

    def __init__(self, package: ModelPackage, options: RunOptions, *,
                 warn: Callable[[str], None] | None = None, advice: Callable[[RunChemistry], str] | None = None,
                 decoder_loaded: Callable[[float, bool], None] | None = None) -> None:
        """``warn``: where once-per-file warnings go (unknown chemistry); ``advice``: what to
        add to a chemistry refusal (e.g. the installed models that would fit); ``decoder_loaded``:
        told the seconds the decoder's kernels took to load, and whether numba had to compile them first (not
        in its cache), once, when the first callable read needed them."""
        config = package.config
        self.package = package
        self.options = options
        self.warn = warn or (lambda line: None)
        self.advice = advice
        self.decoder_loaded = decoder_loaded or (lambda seconds, compiled: None)
        self._decoder_ready = False
        self.chunksize = options.chunksize if options.chunksize is not None else config.basecaller.chunksize
        self.overlap = options.overlap if options.overlap is not None else config.basecaller.overlap
        _check_overlap(config, options, self.chunksize, self.overlap)
        validate_chunking(config, self.chunksize, self.overlap)
        self.batch_size = options.batch_size if options.batch_size is not None else auto_batch_size(options.device)
        self.queue_depth = QUEUE_DEPTH
        if options.max_memory is not None:
            self.batch_size, self.queue_depth = _fit_memory(config, self.chunksize, options)
        if options.decode_mode not in _modes(config):
            raise EdgecallError(f"decode mode '{options.decode_mode}' does not fit a {config.decoder.kind.upper()} model (choose {', '.join(_modes(config))})")
        self.backend: Backend = open_backend(
            package, options.device, batch_size=self.batch_size, chunksize=self.chunksize,
            threads=options.threads, precision=options.precision,
        )
        self.times = StageTimes()
        self._times_lock = threading.Lock()  # finishing threads add to times.decode
        self._stop_reading = threading.Event()
        self._recycled = ScoreBuffers()
        self._runs: list[tuple[Iterator, Stages]] = []  # runs started, so close() can stop them

    @property
    def config(self) -> ModelConfig:
        return self.package.config

    def run(self, inputs: Iterable[Path | Idle]) -> Iterator[CalledRead | ReadFailure | Idle]:
        depth = self.queue_depth
        stages = Stages()
        jobs = stages.background(self._prepared(self._reads(inputs)), depth, "read")
        # scores are the big buffers (frames x batch x C float32): keep few of them queued
        inferred = stages.background(self._infer(self._batches(jobs)), max(1, depth // 2), "infer")
        decoded = stages.background(self._decode(inferred), depth, "decode")
        results = self._assemble(decoded)
        self._runs.append((results, stages))
        return results

    def stop_reading(self) -> None:
        """Read no more input; reads already read are still finished and come out (Ctrl-C)."""
        self._stop_reading.set()

    def reading_stopped(self) -> bool:
        return self._stop_reading.is_set()

    def close(self) -> None:
        """Stop any run still going, wait for its threads, then release the backend.

        A thread still inside inference after the wait keeps the backend (the
        process must then leave without running destructors; see cli.main).
        """
        ended = True
        for results, stages in self._runs:
            results.close()  # type: ignore[attr-defined]
            ended = stages.close() and ended
        self._runs = []
        if ended:
            self.backend.close()

    def _workers(self) -> int:
        """The CPU threads the run may use: --threads, else every CPU."""
        return max(1, self.options.threads or os.cpu_count() or 1)

    def _chunk_decoders(self) -> int:
        """Threads decoding CRF chunks: every worker where the network runs in bf16/f16, else half, at least one.

        In a reduced precision the network needs about half its f32 CPU, and its
        batches come out faster than one decoding thread takes them: inference
        then waits on the bounded queue between the two and a core idles. On an
        AMX Xeon two decoding threads ran the default model 6% faster end to end
        in bf16 (fast-v1 3-4%), but bought nothing in f32, where they cost more
        decoding CPU beside inference, as one did on a Zen 4 before (bench/RESULTS.md,
        issue 19: session 14; session 5).
        """
        return self._workers() if self.backend.precision in REDUCED else max(1, self._workers() // 2)

    def _load_decoder(self) -> None:
        """Load the decoder's kernels when the first read that will be called needs them, not before: a run
        whose every read is refused (the wrong chemistry) should not first compile a decoder for nothing.
        Nothing is in flight behind the first read, so the whole pipeline waits on this and its seconds
        can be taken off the run's time exactly."""
        from edgecall.runtime.decode import kernels_compiled

        before = kernels_compiled()
        seconds = load_decoder(self.config, self.options.decode_mode)
        self.times.decoder_load += seconds
        self._decoder_ready = True
        self.decoder_loaded(seconds, kernels_compiled() > before)

    # ---- stages ---------------------------------------------------------------

    def _reads(self, inputs: Iterable[Path | Idle]) -> Iterator[Read | ReadFailure | Idle]:
        taken = 0
        seen: set[int] = set()  # hashes of read ids: a few tens of bytes per read, millions of reads fit
        source = iter_reads(inputs, read_ids=self.options.read_ids, skip_ids=self.options.skip_read_ids or None)
        while (self.options.max_reads is None or taken < self.options.max_reads) and not self._stop_reading.is_set():
            t0 = time.perf_counter()
            item = next(source, None)
            self.times.read += time.perf_counter() - t0
            if item is None:
                return
            if isinstance(item, Read):
                key = hash(item.read_id)
                if key in seen:
                    item = ReadFailure(item.source, "duplicate read id: a read with this id was already called in this run", item.read_id)
                else:
                    seen.add(key)
                    taken += 1
            yield item

    def _checked(self, reads: Iterator[Read | ReadFailure | Idle]) -> Iterator[Read | ReadFailure | Idle]:
        """Reads of a chemistry (or rate) the model cannot call never reach it: one failure per file and run,
        counting its reads; unknown chemistry is called, with one warning per file."""
        config = self.config
        checks: dict[tuple[str, str, int], tuple[RunChemistry, RunCheck]] = {}
        warned: set[tuple[Path, tuple[str, str, int]]] = set()
        refused: dict[tuple[Path, str], int] = {}  # (file, reason) -> reads, flushed when the file ends

        def flush() -> Iterator[ReadFailure]:
            for (source, reason), count in refused.items():
                if count == 1 and reason.startswith("are "):
                    reason = "is " + reason[4:]
                yield ReadFailure(source, f"{count} read{'s' * (count != 1)} {reason}", None, reads=count)
            refused.clear()

        for item in reads:
            if isinstance(item, Idle):  # the input waits: its refusals so far are reported now
                yield from flush()
                yield item
                continue
            if refused and next(iter(refused))[0] != item.source:
                yield from flush()
            if isinstance(item, ReadFailure):
                yield item
                continue
            key = (item.run.flow_cell_product_code, item.run.sequencing_kit, item.sample_rate)
            if key not in checks:
                chemistry = run_chemistry(*key)
                checks[key] = (chemistry, check_run(chemistry, config.name, config.chemistry, config.sample_rate,
                                                    config.resample_from))
            chemistry, check = checks[key]
            if check.refusal is not None:
                reason = check.refusal + (f"; {self.advice(chemistry)}" if self.advice else "")
                refused[(item.source, reason)] = refused.get((item.source, reason), 0) + 1
                continue
            if check.warning is not None and (item.source, key) not in warned:
                warned.add((item.source, key))
                self.warn(f"{item.source}: reads {check.warning}")
            yield resample_read(item, config.sample_rate) if check.resample else item
        yield from flush()

    def _prepared(self, reads: Iterator[Read | ReadFailure | Idle]) -> Iterator[_Job | ReadFailure | Idle]:
        config = self.config
        for item in self._checked(reads):
            if isinstance(item, (ReadFailure, Idle)):
                yield item
                continue
            if not self._decoder_ready:
                self._load_decoder()
            t0 = time.perf_counter()
            prepared = prepare_scaled(item, config.normalisation)
            plan = plan_chunks(int(prepared.signal.shape[0]), self.chunksize, self.overlap, config.stride)
            chunks = cut(prepared.signal, plan, self.chunksize)
            self.times.normalise += time.perf_counter() - t0
            self.times.samples += item.num_samples
            yield _Job(item, plan, prepared.trimmed, prepared.shift, prepared.scale, chunks)

    def _batches(self, jobs: Iterator[_Job | ReadFailure | Idle]) -> Iterator[_Batch]:
        size, chunksize = self.batch_size, self.chunksize
        data = np.zeros((size, 1, chunksize), np.float32)
        owners: list[tuple[_Job, int]] = []
        started: list[_Job | ReadFailure] = []
        for item in jobs:
            if isinstance(item, Idle):  # send the part-filled batch now, then the marker behind it
                if owners or started:
                    yield _Batch(data, owners, started)
                    data = np.zeros((size, 1, chunksize), np.float32)
                    owners, started = [], []
                yield _Batch(None, [], [], idle=True)
                continue
            started.append(item)
            if isinstance(item, ReadFailure):
                continue
            assert item.chunks is not None
            for index in range(item.plan.num_chunks):
                data[len(owners), 0] = item.chunks[index]
                owners.append((item, index))
                if len(owners) == size:
                    yield _Batch(data, owners, started)
                    data = np.zeros((size, 1, chunksize), np.float32)
                    owners, started = [], []
            item.chunks = None  # release the read's signal once it is batched
        if owners or started:
            yield _Batch(data, owners, started)

    def _infer(self, batches: Iterator[_Batch]) -> Iterator[_Batch]:
        """Batches with their scores, in order; the backend may keep several in flight."""
        clock = {"last": time.perf_counter()}

        def timed(source: Iterator[_Batch]) -> Iterator[_Batch]:
            for batch in source:  # time waiting for input is not inference time
                yield batch
                clock["last"] = time.perf_counter()

        for batch, scores in self.backend.stream(timed(batches), _data_of, self._recycled):
            now = time.perf_counter()
            if batch.owners:
                batch.scores = scores
                self.times.infer += now - clock["last"]
                self.times.batches += 1
            clock["last"] = now
            batch.data = None  # type: ignore[assignment]
            yield batch

    def _decode(self, batches: Iterator[_Batch]) -> Iterator[_Batch]:
        """CRF chunks decode on one pool for the whole run, so its threads keep their buffers."""
        with ThreadPoolExecutor(max_workers=self._chunk_decoders(), thread_name_prefix="edgecall-decode") as pool:
            yield from self._decode_on(pool, batches)

    def _decode_on(self, pool: ThreadPoolExecutor, batches: Iterator[_Batch]) -> Iterator[_Batch]:
        dec = self.config.decoder
        for batch in batches:
            if batch.scores is not None:
                t0 = time.perf_counter()
                filled = batch.scores[:, : len(batch.owners)]
                if dec.kind == "crf":
                    cpu: list[float] = []
                    batch.results = _crf_decode(filled, self.config, self.options.decode_mode, cpu_seconds=cpu, pool=pool)
                    self.times.decode_cpu += sum(cpu)
                    self._recycled.give(batch.scores)  # the decoded chunks hold no view of it
                else:  # these results are views of the scores: not recycled
                    batch.results = [np.ascontiguousarray(filled[:, i]) for i in range(len(batch.owners))]
                self.times.decode += time.perf_counter() - t0
                batch.scores = None
            yield batch

    def _assemble(self, batches: Iterator[_Batch]) -> Iterator[CalledRead | ReadFailure]:
        """Reads in input order once all their chunks are back, finished on a thread pool.

        Finishing a CTC read is its whole decode (the search needs the stitched read),
        so reads finish in parallel; ``finishing`` keeps their order and bounds how
        many are in flight.
        """
        pending: deque[_Job | ReadFailure] = deque()
        finishing: deque[Future[CalledRead] | ReadFailure] = deque()
        workers = self._workers()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgecall-finish") as pool:
            for batch in batches:
                pending.extend(batch.started)
                for (job, _), result in zip(batch.owners, batch.results or []):
                    job.pieces.append(result)
                while pending and (isinstance(pending[0], ReadFailure) or pending[0].done):
                    head = pending.popleft()
                    finishing.append(head if isinstance(head, ReadFailure) else pool.submit(self._finish, head))
                while finishing and (len(finishing) > 2 * workers or _ready(finishing[0])):
                    yield _result_of(finishing.popleft())
                if batch.idle:  # every read before the marker had all its chunks back: finish them all
                    while finishing:
                        yield _result_of(finishing.popleft())
                    yield IDLE
            for head in pending:  # only failures can remain once every batch is in
                finishing.append(head if isinstance(head, ReadFailure) else pool.submit(self._finish, head))
            while finishing:
                yield _result_of(finishing.popleft())

    def _finish(self, job: _Job) -> CalledRead:
        dec = self.config.decoder
        if dec.kind == "crf":
            called: DecodedChunk = stitch_decoded(job.pieces, job.plan)
        else:
            t0, cpu0 = time.perf_counter(), time.thread_time()
            scores = stitch_scores(job.pieces, job.plan)
            called = _ctc_decode(scores, dec, self.options.decode_mode)
            with self._times_lock:
                self.times.decode += time.perf_counter() - t0
                self.times.decode_cpu += time.thread_time() - cpu0
        job.pieces = []
        return CalledRead(
            read=job.read, sequence=called.sequence, qstring=called.qstring,
            mean_qscore=crf.mean_qscore(called.qstring), moves=called.moves, trimmed_samples=job.trimmed,
            shift=job.shift, scale=job.scale, scaling=SCALING_NAMES[self.config.normalisation.strategy],
        )


def _ready(item: Future[CalledRead] | ReadFailure) -> bool:
    return isinstance(item, ReadFailure) or item.done()


def _result_of(item: Future[CalledRead] | ReadFailure) -> CalledRead | ReadFailure:
    return item if isinstance(item, ReadFailure) else item.result()


def load_decoder(config: ModelConfig, mode: str = "beam") -> float:
    """Decode one tiny input as the pipeline decodes, so the decoder's numba kernels are loaded before a read
    waits on them; the wall seconds it took. Loading them from numba's disk cache takes ~0.3 s; the first run
    after an install compiles them for this CPU first (~9 s on 2 Zen 3 cores), which a run's speed should
    not be charged with, nor a user left to guess at."""
    start = time.perf_counter()
    dec = config.decoder
    if dec.kind == "crf":
        _crf_decode(np.zeros((2, 1, config.num_outputs), np.float32), config, mode, threads=1)
    else:
        _ctc_decode(np.full((2, config.num_outputs), 1.0 / config.num_outputs, np.float32), dec, mode)
    return time.perf_counter() - start


def _crf_decode(scores: np.ndarray, config: ModelConfig, mode: str, *, threads: int | None = None,
                pool: ThreadPoolExecutor | None = None, cpu_seconds: list[float] | None = None) -> list[DecodedChunk]:
    """(T, N, C) CRF scores decoded chunk by chunk by ``mode`` with the model's decoder settings."""
    dec = config.decoder
    return crf.decode_batch(scores, mode=mode, state_len=config.state_len, beam_width=dec.beam_width,
                            beam_cut=dec.beam_cut, blank_score=config.blank_score, qscale=dec.qscale, qbias=dec.qbias,
                            threads=threads, pool=pool, cpu_seconds=cpu_seconds)


def _ctc_decode(posteriors: np.ndarray, dec: DecoderConfig, mode: str) -> DecodedChunk:
    """One read's stitched CTC posteriors decoded by ``mode``: greedy (the best label per frame, which reads the
    same either way in time) or the model's beam search (in its direction, width and cut)."""
    labels = "".join(dec.labels)
    if mode == "greedy":
        return ctc.greedy(posteriors, labels=labels)
    return ctc.beam_search(posteriors, beam_width=dec.beam_width, beam_cut=dec.beam_cut, reverse=dec.reverse, labels=labels)


MINION_KEEP_UP_4KHZ = 0.72e6  # samples/s: Oxford Nanopore's keep-up yardstick for a MinION sampling at 4 kHz


def minion_keep_up(sample_rate: int) -> float:
    """Samples/s a MinION produces at ``sample_rate``: the yardstick scales with the rate (0.90 M at 5 kHz), and
    a run's samples are counted at its model's rate (4 kHz reads resampled for a 5 kHz model count as 5 kHz)."""
    return MINION_KEEP_UP_4KHZ * sample_rate / 4000


def auto_batch_size(device: str) -> int:
    """Chunks per call where each backend ran fastest in bench/throughput.py (2-core CPU):
    OpenVINO's throughput streams peak at 16 (and keep score buffers small), ONNX Runtime
    at 64; accelerators want large batches."""
    key = device.lower()
    if key.startswith("ort"):
        return 64 if key in ("ort", "ort:cpu") else 128
    if key in ("gpu", "npu", "myriad") or key.startswith("gpu."):
        return 64
    return AUTO_BATCH_SIZE


def _data_of(batch: _Batch) -> np.ndarray | None:
    """A batch's signal; None (a barrier, see Backend.stream) for a marker or a batch of failures only."""
    return batch.data if batch.owners else None


def batch_bytes(config: ModelConfig, chunksize: int, batch_size: int) -> int:
    """Bytes of one batch in flight: its input signal and its output scores (float32)."""
    return 4 * batch_size * (chunksize + config.frames(chunksize) * config.num_outputs)


def _fit_memory(config: ModelConfig, chunksize: int, options: RunOptions) -> tuple[int, int]:
    """(batch size, queue depth) whose buffers fit half of --max-memory (the rest: model, runtime)."""
    assert options.max_memory is not None
    budget = options.max_memory // 2
    largest = auto_batch_size(options.device)
    sizes = [options.batch_size] if options.batch_size else [b for b in (128, 64, 32, 16, 8, 4, 2, 1) if b <= largest]
    for depth in (QUEUE_DEPTH, 2, 1):
        for size in sizes:
            if (3 * depth + 2) * batch_bytes(config, chunksize, size) <= budget:
                return size, depth
    need = 2 * 5 * batch_bytes(config, chunksize, sizes[-1]) / 1e9
    raise EdgecallError(
        f"--max-memory {options.max_memory / 1e9:g} GB is too small for this model at chunksize {chunksize} "
        f"(needs about {need:.2f} GB); raise it or lower --chunksize"
    )


def _check_overlap(config: ModelConfig, options: RunOptions, chunksize: int, overlap: int) -> None:
    """A chunk must be longer than the overlap it shares with its neighbours; say which option to change."""
    if overlap < chunksize:
        return
    if options.chunksize is None:  # the model's chunksize, so --overlap is what was given
        raise UsageError(f"--overlap {overlap} is not shorter than the model's chunksize {chunksize}: use an --overlap below {chunksize}")
    whose = "--overlap" if options.overlap is not None else f"model '{config.name}'"
    smallest = (overlap // config.stride + 1) * config.stride
    raise UsageError(
        f"--chunksize {chunksize} is no longer than the {overlap}-sample overlap between chunks ({whose}): "
        f"use --chunksize {smallest} or more, a multiple of the stride {config.stride} (the model's is {config.basecaller.chunksize})"
        + ("" if options.overlap is not None else ", or a smaller --overlap")
    )


def _modes(config: ModelConfig) -> tuple[str, ...]:
    return ("beam", "viterbi") if config.decoder.kind == "crf" else ("beam", "greedy")
