"""The training loop behind ``edgecall train``: CRF loss + delayed L0 masking, resumable.

Resuming is exact: the batch of step k comes from ``data(k)`` (no iterator
state), and a checkpoint holds the model, Adam's state, the step, every RNG
(torch's draws the gate noise) and the options, so "3 steps, crash, resume, 3
steps" gives bit-for-bit the weights and losses of 6 straight steps. The
learning rate and lambda are pure functions of the step, so the schedule's
state is the step itself.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from edgecall.config import ModelConfig
from edgecall.costs import lstm_step_flops
from edgecall.edit_distance import edit_distance
from edgecall.errors import EdgecallError, exact_div
from edgecall.model.checkpoint import EDGECALL_FORMAT, load_checkpoint
from edgecall.train.crf_loss import crf_loss
from edgecall.train.masked_model import (
    MaskedBonitoCRF, delayed_lambda, from_checkpoint_state, from_pretrained, kept_neurons, l0_penalty,
    to_checkpoint_state,
)

# signal (N, 1, T) float32, targets (N, S) int64 bases 1..4 (A, C, G, T; 0 pads), target lengths (N,) int64
Batch = tuple[Tensor, Tensor, Tensor]
DataFn = Callable[[int], Batch]  # step -> that step's batch, deterministic
CHECKPOINT_NAME = "checkpoint_{step:08d}.pt"
LOG_NAME = "train.tsv"
LOG_COLUMNS = ("step", "loss", "crf_loss", "penalty", "lambda", "lr", "kept", "lstm_flops_per_sample",
               "val_loss", "val_accuracy", "seconds")


@dataclass(frozen=True)
class TrainOptions:
    """Defaults follow the seed paper's script (Adam, lr 1e-3, 5k warm-up, clip 2) except Adam's eps."""

    out_dir: Path  # checkpoints and train.tsv; a run resumes from the latest checkpoint here
    steps: int = 100_000  # optimiser steps in the whole run
    batch_size: int = 64  # chunks per step (checked against the data)
    chunksize: int = 4000  # samples per chunk (checked against the data; a multiple of the stride)
    lr: float = 1e-3  # peak learning rate
    adam_eps: float = 1e-8  # Adam epsilon; the reference's 1e-4 swamped CRF gradients here: loss stuck at ln 4
    warmup_steps: int = 5000  # linear learning-rate warm-up, then cosine decay to min_lr at `steps`
    min_lr: float = 1e-5  # learning rate at the last step
    lambda_initial: float = 5e-8  # L0 weight before lambda_step (delayed masking)
    lambda_target: float = 2e-7  # L0 weight from lambda_step on (paper: 2e-7, 6e-7, 2e-6)
    lambda_step: int = 10_000  # step at which lambda switches to lambda_target
    gate_lr_scale: float = 1.0  # the gates' (log alpha) learning rate as a multiple of the weights'
    grad_clip: float = 2.0  # max global gradient norm
    loss_clip: float | None = 10.0  # per-chunk CRF loss clamp (bonito's loss_clip); None: off
    log_every: int = 100  # steps per log line (means over the steps since the last line)
    checkpoint_every: int = 1000  # steps per checkpoint (and one at the end)
    validate_every: int = 1000  # steps per validation (needs val_data)
    keep_checkpoints: int = 3  # newest checkpoints kept in out_dir
    seed: int = 25  # seeds torch, numpy and random at a fresh start
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    init_from: Path | None = None  # a fresh run starts from this checkpoint's weights (resumes ignore it)
    device: str = "cpu"  # cpu, cuda or cuda:N
    precision: str = "auto"  # the network's: f32, or bf16 autocast (the loss stays f32); auto: bf16 on a GPU, f32 on a CPU

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "chunksize", "log_every", "checkpoint_every", "validate_every"):
            if getattr(self, name) < 1:
                raise EdgecallError(f"train option {name} must be at least 1, got {getattr(self, name)}")
        if not self.gate_lr_scale > 0:
            raise EdgecallError(f"train option gate_lr_scale must be positive, got {self.gate_lr_scale}")
        if self.keep_checkpoints < 1:
            raise EdgecallError(f"train option keep_checkpoints must be at least 1, got {self.keep_checkpoints}")
        if self.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", self.device):
            raise EdgecallError(f"--device {self.device}: expected cpu, cuda or cuda:N")
        if self.precision not in PRECISIONS:
            raise EdgecallError(f"--precision {self.precision}: expected {', '.join(PRECISIONS)}")


PRECISIONS = ("auto", "f32", "bf16")


def network_precision(options: TrainOptions) -> str:
    """The precision the network trains in: f32 or bf16 (autocast; weights, optimiser and loss stay f32).

    auto is bf16 on a GPU, as Bonito trains with mixed precision, and f32 on a CPU: there bf16 is asked for with
    --precision bf16, and only where the CPU computes it natively (AVX512_BF16 or AMX), since elsewhere torch
    emulates it, slower than f32."""
    from edgecall.devices.precision import native_precisions, why_not_native

    on_cpu = options.device == "cpu"
    if options.precision == "auto":
        return "f32" if on_cpu else "bf16"
    if options.precision == "bf16" and on_cpu and "bf16" not in native_precisions():
        raise EdgecallError(f"--precision bf16 --device cpu: {why_not_native('bf16', 'torch')}")
    return options.precision


def torch_device(name: str) -> torch.device:
    """The training device; a CUDA request without a visible GPU is one clear line."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        raise EdgecallError(f"--device {name}: PyTorch ({torch.__version__}, {build}) sees no CUDA GPU; "
                            "train with --device cpu, or install a CUDA build of torch on the GPU machine")
    return torch.device(name)


def _to_cpu(value: Any) -> Any:
    """Checkpoints hold CPU tensors only, so they resume on any device."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


@dataclass(frozen=True)
class TrainResult:
    step: int  # steps done in total (== options.steps when finished)
    checkpoint: Path  # the last checkpoint written
    losses: tuple[float, ...]  # total loss of every step this call ran, in order


def learning_rate(step: int, options: TrainOptions) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``steps``."""
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    span = max(1, options.steps - options.warmup_steps)
    progress = min(1.0, (step - options.warmup_steps) / span)
    return options.min_lr + (options.lr - options.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- checkpoints -----------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    """Every RNG as tensors and plain values, so ``torch.load(weights_only=True)`` reads it."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss = random.getstate()
    cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() and torch.cuda.is_initialized() else {}
    return {
        **cuda,
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])  # a GPU run resumed on GPUs repeats its gate noise
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(w) for w in p["words"]), p["gauss"]))


def options_dict(options: TrainOptions) -> dict[str, Any]:
    """The options as a checkpoint stores them (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()}


def save_checkpoint(path: Path, config: ModelConfig, options: TrainOptions, model: MaskedBonitoCRF,
                    optimizer: torch.optim.Optimizer, step: int) -> Path:
    """Write atomically (temp file, fsync, rename): a crash never leaves a half checkpoint."""
    obj = {
        "format": EDGECALL_FORMAT,
        "config": config.to_toml(),
        "model_state": _to_cpu(to_checkpoint_state(model)),
        "optimizer": _to_cpu(optimizer.state_dict()),
        "schedule": {"kind": "linear-warmup-cosine", "step": step},
        "step": step,
        "rng": _rng_state(),
        "options": options_dict(options),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of this run's checkpoints, oldest first."""
    found = [(re.fullmatch(r"checkpoint_(\d+)\.pt", p.name), p) for p in Path(out_dir).glob("checkpoint_*.pt")]
    return sorted((int(m.group(1)), p) for m, p in found if m)


def _prune(out_dir: Path, keep: int) -> None:
    for _, path in checkpoints(out_dir)[:-keep]:
        path.unlink(missing_ok=True)


# ---- validation and logging ----------------------------------------------------------


def validate(model: MaskedBonitoCRF, batch: Batch) -> tuple[float, float]:
    """(CRF loss, mean identity 1 - edits/len(target)) of the eval-mode (binary-gate) model."""
    from edgecall.runtime.decode.crf import decode_batch  # numba; only when validating

    config = model.config
    signal, targets, lengths = batch
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            scores = model(signal.to(device)).float().cpu()
            loss = float(crf_loss(scores, targets, lengths, state_len=config.state_len, blank_score=config.blank_score))
    finally:
        model.train()
    called = decode_batch(
        scores.numpy(), mode="viterbi", threads=1, state_len=config.state_len, blank_score=config.blank_score
    )
    identities = []
    for chunk, target, length in zip(called, targets.numpy(), lengths.tolist()):
        seq = np.frombuffer(chunk.sequence.encode(), np.uint8)
        ref = np.frombuffer(b"ACGT", np.uint8)[target[:length] - 1]
        identities.append(max(0.0, 1.0 - edit_distance(seq, ref) / max(length, 1)))
    return loss, float(np.mean(identities))


def _open_log(out_dir: Path, resumed_step: int) -> Any:
    """train.tsv, dropping rows an interrupted run wrote after its last checkpoint."""
    path = out_dir / LOG_NAME
    rows = path.read_text().splitlines()[1:] if path.exists() else []
    rows = [r for r in rows if r.split("\t", 1)[0].isdigit() and int(r.split("\t", 1)[0]) <= resumed_step]
    path.write_text("\t".join(LOG_COLUMNS) + "\n" + "".join(r + "\n" for r in rows))
    return open(path, "a", buffering=1)


# ---- the loop ------------------------------------------------------------------------


def _check_batch(batch: Batch, options: TrainOptions, step: int) -> None:
    signal, targets, lengths = batch
    n = options.batch_size
    if tuple(signal.shape) != (n, 1, options.chunksize) or targets.dim() != 2 or tuple(lengths.shape) != (n,):
        raise EdgecallError(
            f"step {step}: batch has signal {tuple(signal.shape)}, targets {tuple(targets.shape)}, lengths "
            f"{tuple(lengths.shape)}; expected ({n}, 1, {options.chunksize}), ({n}, S), ({n},)"
        )


def _optimizer(model: MaskedBonitoCRF, options: TrainOptions) -> torch.optim.Adam:
    """Adam over two groups, the weights then the gates, so the gates can move faster.

    Adam moves a parameter by about lr per step whatever its gradient's size, and a
    saturated gate (log alpha ~4) must travel ~5 to switch off; at the weights' lr a
    short run cannot prune at all, however large lambda is.
    """
    weights, gates = _parameter_groups(model)
    return torch.optim.Adam([{"params": weights}, {"params": gates}], lr=options.lr, eps=options.adam_eps)


def _parameter_groups(model: MaskedBonitoCRF) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    gate_ids = {id(layer.log_alpha) for layer in model.masked_layers()}
    params = list(model.parameters())
    return [p for p in params if id(p) not in gate_ids], [p for p in params if id(p) in gate_ids]


def _grouped_optimizer_state(state: dict[str, Any], model: MaskedBonitoCRF) -> dict[str, Any]:
    """An optimizer state saved with one group over ``model.parameters()`` (older
    checkpoints), re-laid as :func:`_optimizer`'s two groups; others pass through."""
    if len(state["param_groups"]) != 1:
        return state
    params = list(model.parameters())
    weights, gates = _parameter_groups(model)
    old_index = {id(p): i for i, p in enumerate(params)}
    order = [old_index[id(p)] for p in weights + gates]
    group = {k: v for k, v in state["param_groups"][0].items() if k != "params"}
    return {
        "state": {new: state["state"][old] for new, old in enumerate(order) if old in state["state"]},
        "param_groups": [{**group, "params": list(range(len(weights)))},
                         {**group, "params": list(range(len(weights), len(params)))}],
    }


def _resume(config: ModelConfig, options: TrainOptions) -> tuple[MaskedBonitoCRF, torch.optim.Optimizer, int]:
    """Fresh seeded model at step 0, or everything restored from the newest checkpoint, on the run's device.

    The model moves before its optimiser is made, so optimiser state loads onto the
    parameters' device: a checkpoint written on a GPU resumes on a CPU and back.
    """
    device = torch_device(options.device)
    found = checkpoints(options.out_dir)
    if not found:
        torch.manual_seed(options.seed)
        np.random.seed(options.seed)
        random.seed(options.seed)
        if options.init_from is not None:
            model = from_pretrained(load_checkpoint(Path(options.init_from)), config)
        else:
            model = MaskedBonitoCRF(config)
        model = model.to(device)
        return model, _optimizer(model, options), 0
    path = found[-1][1]
    obj = torch.load(path, map_location="cpu", weights_only=True)
    stored = ModelConfig.from_toml(obj["config"], str(path))
    if stored != ModelConfig.from_toml(config.to_toml()):
        raise EdgecallError(f"{path}: this run was started with another model config; use a new out_dir")
    model = from_checkpoint_state(stored, obj["model_state"]).to(device)
    optimizer = _optimizer(model, options)
    optimizer.load_state_dict(_grouped_optimizer_state(obj["optimizer"], model))
    _set_rng_state(obj["rng"])
    return model, optimizer, int(obj["step"])


def train(config: ModelConfig, options: TrainOptions, data: DataFn, val_data: Batch | None = None) -> TrainResult:
    """Train until ``options.steps``, resuming from the newest checkpoint in ``out_dir`` if any.

    A resumed run keeps its weights, optimiser, step and RNGs but takes this call's
    options (so ``steps`` can be raised); the model config must be the stored one.
    """
    exact_div(options.chunksize, config.stride, "train chunksize vs model stride")
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, optimizer, step = _resume(config, options)
    device = next(model.parameters()).device
    precision = network_precision(options)
    model.train()
    log = _open_log(out_dir, step)
    losses: list[float] = []
    window: list[tuple[float, float, float]] = []
    started = time.perf_counter()
    batches = _batches(data, step, options.steps, device)
    try:
        for batch in batches:
            _check_batch(batch, options, step)
            signal, targets, lengths = _on_device(batch, device)
            lam = delayed_lambda(step, warmup_steps=options.lambda_step, initial=options.lambda_initial,
                                 target=options.lambda_target)
            lr = learning_rate(step, options)
            with _autocast(device, precision):
                scores = model(signal)
            crf = crf_loss(scores.float(), targets, lengths, state_len=config.state_len, blank_score=config.blank_score,
                           loss_clip=options.loss_clip)
            penalty = l0_penalty(model)
            loss = crf + lam * penalty
            if not torch.isfinite(loss):
                raise EdgecallError(f"step {step}: loss is {loss.item()}; lower lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            weight_group, gate_group = optimizer.param_groups
            weight_group["lr"], gate_group["lr"] = lr, lr * options.gate_lr_scale
            optimizer.step()
            step += 1
            losses.append(loss.item())
            window.append((loss.item(), crf.item(), penalty.item()))
            val = validate(model, val_data) if val_data is not None and step % options.validate_every == 0 else None
            if step % options.log_every == 0 or val is not None or step == options.steps:
                _log_row(log, model, step, window, lam, lr, val, time.perf_counter() - started)
                window = []
            if step % options.checkpoint_every == 0 or step == options.steps:
                path = out_dir / CHECKPOINT_NAME.format(step=step)
                save_checkpoint(path, config, options, model, optimizer, step)
                _prune(out_dir, options.keep_checkpoints)
    finally:
        batches.close()
        log.close()
    return TrainResult(step, checkpoints(out_dir)[-1][1], tuple(losses))  # the last step always checkpoints


def _batches(data: DataFn, first: int, end: int, device: torch.device) -> Iterator[Batch]:
    """The batches of steps [first, end). Off the CPU, each is made (and pinned) in a thread while the step before
    it runs on the device, which would otherwise wait for the CPU to simulate or read it; a batch is a function of
    its step alone, so the run is the same either way. On the CPU the step itself keeps every core busy."""
    if not _make_ahead(device):
        yield from (data(step) for step in range(first, end))
        return

    def pinned(step: int) -> Batch:
        return tuple(t.pin_memory() if device.type == "cuda" else t for t in data(step))  # type: ignore[return-value]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgecall-train-data") as pool:
        coming = pool.submit(pinned, first) if first < end else None
        for step in range(first, end):
            batch = coming.result()  # type: ignore[union-attr]
            coming = pool.submit(pinned, step + 1) if step + 1 < end else None
            yield batch


def _make_ahead(device: torch.device) -> bool:
    return device.type != "cpu"


def _on_device(batch: Batch, device: torch.device) -> Batch:
    """The batch on the training device: from pinned host memory, copies that overlap the GPU's work."""
    if device.type == "cpu":
        return batch
    return tuple(t.to(device, non_blocking=True) for t in batch)  # type: ignore[return-value]


def _autocast(device: torch.device, precision: str) -> Any:
    """bf16 autocast for the LSTMs and convolutions (the CRF loss stays f32), or nothing for f32."""
    import contextlib

    if precision == "f32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _log_row(log: Any, model: MaskedBonitoCRF, step: int, window: list[tuple[float, float, float]],
             lam: float, lr: float, val: tuple[float, float] | None, seconds: float) -> None:
    """One TSV row (means over the window) to train.tsv and one readable line to stderr."""
    enc = model.config.encoder
    kept = kept_neurons(model)
    flops = lstm_step_flops(model.config.replace(encoder=enc.with_hidden_sizes(kept))) / enc.stride
    mean = np.mean(np.array(window), axis=0) if window else np.full(3, np.nan)
    val_loss, val_acc = val if val is not None else (float("nan"), float("nan"))
    values = (step, f"{mean[0]:.6f}", f"{mean[1]:.6f}", f"{mean[2]:.2f}", f"{lam:.3g}", f"{lr:.4g}",
              ",".join(map(str, kept)), f"{flops:.0f}", f"{val_loss:.6f}", f"{val_acc:.4f}", f"{seconds:.1f}")
    log.write("\t".join(map(str, values)) + "\n")
    print(f"step {step} loss {mean[0]:.4f} crf {mean[1]:.4f} penalty {mean[2]:.0f} lambda {lam:.3g} lr {lr:.3g} "
          f"kept {','.join(map(str, kept))} lstm {flops:.4g} FLOP/sample"
          + (f" val loss {val_loss:.4f} acc {val_acc:.4f}" if val is not None else ""), file=sys.stderr)
