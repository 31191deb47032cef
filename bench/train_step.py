"""Seconds per training step of ONT's R10.4.1 model sizes with hard-concrete gates, and the CRF loss's share.

For each size, ``edgecall train``'s own loop (:func:`edgecall.train.loop.train`)
runs ``--steps`` steps on synthetic batches (random signal, random targets of
the length 400 bases/s gives a chunk) starting from the ONT model with gates
on every LSTM neuron, as ``edgecall train --init-from ONT_FOLDER`` does; the
time per step comes from its log, the first (warm-up) step left out. Then the
CTC-CRF loss alone (forward and backward, on scores of the same shape, with the
scans under test) is timed, so its share of a step shows whether it dominates
(issue 20). On a GPU with koi installed, Bonito's own loss (koi's CUDA kernels)
is timed beside it on scores of Bonito's width for the same model. The last column is the
CPU time to simulate one batch of that shape (`edgecall train` without --data).

Sizes: ``r10-fast`` (dna_r10.4.1_e8.2_260bps_fast@v4.0.0: LSTM 96 x 5, state_len 3)
and ``r10-hac`` (dna_r10.4.1_e8.2_400bps_hac@v4.2.0: LSTM 384 x 5, state_len 4),
random weights written by Bonito's code as the tests do (needs ont-bonito --no-deps).

    python bench/train_step.py                                    # CPU, batch 8 x 6,000 samples
    python bench/train_step.py --lattices numba torch --batch-size 16 --chunksize 12000
    python bench/train_step.py --device cuda --batch-size 64 --chunksize 12000 --lattices triton torch
    python bench/train_step.py --count-ops                        # torch ops per frame of the loss
    python bench/train_step.py --precisions f32 bf16              # the network in f32 and in bf16, in turns
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "tests"))

from throughput import ONT_SIZES, SHARED  # noqa: E402

from edgecall.devices.precision import cpu_description  # noqa: E402
from edgecall.model.checkpoint import load_checkpoint  # noqa: E402
from edgecall.train import crf_loss as crf_loss_module  # noqa: E402
from edgecall.train import loop  # noqa: E402
from edgecall.train.crf_loss import crf_loss  # noqa: E402

BASES_PER_SECOND = 400


def synthetic_batches(batch_size: int, chunksize: int, sample_rate: int, seed: int = 0) -> loop.DataFn:
    """Step -> (signal, targets, lengths): random, but shaped as real R10.4.1 chunks are."""
    mean_bases = chunksize * BASES_PER_SECOND / sample_rate

    def data(step: int) -> loop.Batch:
        rng = np.random.default_rng([seed, step])
        lengths = rng.integers(int(0.8 * mean_bases), int(1.2 * mean_bases), batch_size)
        targets = np.zeros((batch_size, int(lengths.max())), np.int64)
        for row, n in zip(targets, lengths):
            row[:n] = rng.integers(1, 5, n)
        signal = rng.standard_normal((batch_size, 1, chunksize)).astype(np.float32)
        return torch.from_numpy(signal), torch.from_numpy(targets), torch.from_numpy(lengths)

    return data


def step_seconds(out_dir: Path) -> list[float]:
    """Seconds of each logged step after the first, from train.tsv's cumulative clock."""
    with open(out_dir / "train.tsv") as fh:
        clock = [float(row["seconds"]) for row in csv.DictReader(fh, delimiter="\t")]
    return [b - a for a, b in zip(clock, clock[1:])]


def loss_seconds(config, data: loop.DataFn, device: torch.device, repeats: int, bonito: bool = False) -> float:  # noqa: ANN001
    """Median seconds of the CRF loss's forward and backward on network-shaped random scores.

    ``bonito``: Bonito's ``CTC_CRF.ctc_loss`` (koi) on scores with its explicit stay column, else edgecall's."""
    signal, targets, lengths = data(0)
    frames = config.frames(signal.shape[-1])
    if bonito:
        from bonito.crf.model import CTC_CRF  # imports koi: CUDA only

        seqdist = CTC_CRF(config.state_len, "NACGT")
        width = seqdist.n_score()

        def loss_fn(scores: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return seqdist.ctc_loss(scores, targets, lengths, loss_clip=10.0)
    else:
        width = config.num_outputs

        def loss_fn(scores: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return crf_loss(scores, targets, lengths, state_len=config.state_len, blank_score=config.blank_score,
                            loss_clip=10.0)
    scores = torch.randn(frames, signal.shape[0], width, device=device, requires_grad=True)
    targets, lengths = targets.to(device), lengths.to(device)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        loss = loss_fn(scores, targets, lengths)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        scores.grad = None
    return statistics.median(times[1:])


# ops that only view or allocate, and launch no kernel on a GPU
NO_KERNEL = {"aten::" + name for name in (
    "view", "_unsafe_view", "reshape", "transpose", "permute", "select", "slice", "as_strided", "expand", "unsqueeze",
    "squeeze", "t", "detach", "alias", "lift_fresh", "resolve_conj", "resolve_neg", "result_type", "empty",
    "empty_like", "empty_strided", "new_empty", "new_empty_strided", "contiguous", "to", "_to_copy", "item",
    "_local_scalar_dense", "is_nonzero")}


def ops_per_frame(lattice: str, state_len: int) -> tuple[float, float]:
    """(kernel-launching, all) torch ops per frame of the loss's forward and backward: the slope between 100 and 200
    frames of the outermost aten calls torch.profiler records."""
    from torch.profiler import ProfilerActivity, profile

    counts = []
    for frames in (100, 200):
        scores = torch.randn(frames, 2, 4 ** (state_len + 1), requires_grad=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            crf_loss(scores, torch.randint(1, 5, (2, 20)), torch.tensor([20, 15]), state_len=state_len,
                     lattice=lattice).backward()
        outer = [e.name for e in prof.events()
                 if e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))]
        counts.append((sum(name not in NO_KERNEL for name in outer), len(outer)))
    (k1, a1), (k2, a2) = counts
    return (k2 - k1) / 100, (a2 - a1) / 100


def simulated_batch_seconds(config, batch_size: int, chunksize: int, repeats: int = 2) -> float:  # noqa: ANN001
    """Median seconds to simulate one batch of this shape, as ``edgecall train`` does without --data: the CPU work a
    GPU step would wait on unless the batch is made while the step before it runs."""
    from edgecall.train.data import MixedSource, SimulatedData, SimulatedSource, default_references, load_references
    from edgecall.train.simulate import SimulationOptions

    simulation = SimulationOptions.for_chemistry("r10.4.1", config.sample_rate)
    source = SimulatedSource(config, chunksize, load_references(list(default_references())),
                             SimulatedData(simulation=simulation))
    data = MixedSource([(source, 1.0)], batch_size)
    times = []
    for step in range(repeats):
        start = time.perf_counter()
        data(step)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(ONT_SIZES), choices=list(ONT_SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunksize", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=4, help="Training steps per size; the first is warm-up.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
    parser.add_argument("--count-ops", action="store_true",
                        help="Only count the torch ops per frame of each CPU lattice (numba, torch) and exit: on a GPU "
                             "each kernel-launching one is a launch per frame (Triton's scans are one launch each).")
    parser.add_argument("--lattices", nargs="+", choices=crf_loss_module.LATTICES,
                        help="The loss's scans, in turns: numba (the CPU's), triton (the GPU's) and/or the torch loops "
                             "(the reference); default: the device's own.")
    parser.add_argument("--precisions", nargs="+", choices=["f32", "bf16"],
                        help="The network's precision, in turns (edgecall train --precision); default: the device's "
                             "own (bf16 on a GPU, f32 on a CPU). bf16 on a CPU needs native bf16.")
    args = parser.parse_args()
    if args.count_ops:
        for lattice in ("numba", "torch"):
            launching, dispatched = ops_per_frame(lattice, state_len=3)
            print(f"{lattice:<6} {launching:5.1f} kernel-launching ops per frame ({dispatched:.1f} torch ops dispatched)")
        return
    cpu = args.device == "cpu"
    args.lattices = args.lattices or ["numba" if cpu else "triton"]
    args.precisions = args.precisions or ["f32" if cpu else "bf16"]
    if ("numba" in args.lattices and not cpu) or ("triton" in args.lattices and cpu):
        parser.error("numba scans run on --device cpu, triton scans on --device cuda")
    from factories import write_tiny_ont_folder

    if args.threads:
        torch.set_num_threads(args.threads)
    device = loop.torch_device(args.device)
    gpu = f"; GPU: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"# CPU: {cpu_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}")
    print(f"# batch {args.batch_size} x {args.chunksize} samples, {args.steps} steps (first left out), device {args.device}")
    koi = device.type == "cuda" and importlib.util.find_spec("koi") is not None
    print(f"# Bonito's loss (koi): {'timed' if koi else 'not timed, koi is not installed (it needs a CUDA GPU)'}")
    print(f"{'size':<10} {'lattice':<7} {'prec':<5} {'LSTM':<20} {'params':>9} {'s/step':>7} {'steps (s)':<22} {'CRF loss s':>10} "
          f"{'share':>6} {'bonito loss s':>13} {'sim batch s':>11}")
    per_size: dict[str, tuple[str, float]] = {}  # size -> (Bonito's loss seconds or "-", seconds to simulate a batch)
    with tempfile.TemporaryDirectory() as tmp:
        for size, lattice, precision in [(size, lattice, precision) for size in args.sizes for lattice in args.lattices
                                         for precision in args.precisions]:
            crf_loss_module.LATTICE = lattice
            folder = Path(tmp) / ONT_SIZES[size]
            if not folder.exists():
                write_tiny_ont_folder(folder, SHARED, ONT_SIZES[size], width=None, kind="bonito")
            ckpt = load_checkpoint(folder)
            config = ckpt.config
            chunksize = args.chunksize - args.chunksize % config.stride
            data = synthetic_batches(args.batch_size, chunksize, config.sample_rate)
            out = Path(tmp) / f"{size}-{lattice}-{precision}-run"
            options = loop.TrainOptions(out_dir=out, steps=args.steps, batch_size=args.batch_size, chunksize=chunksize,
                                        warmup_steps=1, log_every=1, checkpoint_every=10 ** 9, threads=args.threads,
                                        init_from=folder, device=args.device, precision=precision)
            loop.train(config, options, data)
            steps = step_seconds(out)
            per_step = statistics.median(steps)
            loss = loss_seconds(config, data, device, repeats=3)
            params = sum(t.numel() for t in ckpt.state.values())
            if size not in per_size:  # neither depends on the lattice under test: once per size
                bonito = f"{loss_seconds(config, data, device, repeats=3, bonito=True):.3f}" if koi else "-"
                per_size[size] = bonito, simulated_batch_seconds(config, args.batch_size, chunksize)
            bonito, simulated = per_size[size]
            share = f"{loss / per_step:.0%}" if per_step > 0 else "-"  # train.tsv's clock has 0.1 s steps
            print(f"{size:<10} {lattice:<7} {precision:<5} {'x'.join(map(str, config.encoder.hidden_sizes)):<20} {params:>9,} {per_step:>7.2f} "
                  f"{', '.join(f'{s:.1f}' for s in steps):<22} {loss:>10.3f} {share:>6} {bonito:>13} {simulated:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
