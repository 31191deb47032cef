"""Where a CRF chunk's decoding time goes, per step, on one core.

Real scores: the model's OpenVINO CPU IR on chunks of the lambda dev reads,
prepared as the runtime prepares them. Then each decoding step is timed alone
on the same chunks, in this (single) thread: the exponentials, the whole
forward/backward scans with per-thread reused buffers and with fresh buffers
per chunk (what the decoder did before), the beam search at the shipped width,
16 and 32, each with and without its row prefetch, Viterbi; finally the decoder
end to end, on the scores laid out chunk by chunk (as the OpenVINO backend hands
them over) and in the network's own (T, N, C) layout, where a chunk's rows sit
N*C apart; and once more with the fixed blank given as learned stay scores
(bonito's 5 * 4**L layout, ``blank_score=None``), which adds the split into
steps and stays. Best of ``--rounds`` passes over the chunks. The scores come from a
child process, so this one never loads OpenVINO, which changes malloc's
behaviour for the whole process (it raises glibc's mmap threshold, hiding the
cost of fresh buffers).

``--against REV`` also loads the forward/backward and beam search modules as
they were at git revision REV and times them in turns with the working tree's
(this machine's speed drifts by up to 25% within minutes, so only runs that take
turns compare), after checking that both give the same results.

    python bench/decode.py --model edgecall-r941-v1
    python bench/decode.py --model edgecall-r941-v2 --against 82f48a5
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from throughput import SHARED, build_package, save_chunks  # noqa: E402

from edgecall.export.quantize import runtime_scores  # noqa: E402
from edgecall.package import load_package  # noqa: E402
from edgecall.runtime.backends import chunk_major  # noqa: E402
from edgecall.runtime.decode import crf  # noqa: E402
from edgecall.runtime.decode.crf_posteriors import Workspace, _weights, guides, split_stays  # noqa: E402
from edgecall.runtime.decode.crf_search import beam_path, viterbi_path  # noqa: E402


def best_ms(step, chunks: int, rounds: int) -> float:  # noqa: ANN001 - callable(n)
    """Milliseconds per chunk of ``step(n)`` over chunks 0..chunks-1, best of ``rounds``."""
    step(0)  # compile / warm
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for n in range(chunks):
            step(n)
        best = min(best, (time.perf_counter() - start) / chunks * 1e3)
    return best


def module_at(revision: str, name: str, tmp: Path):  # noqa: ANN201 - a module
    """``edgecall/runtime/decode/NAME.py`` as it was at git ``revision``, compiled afresh (no disk cache)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:edgecall/runtime/decode/{name}.py"], cwd=BENCH.parent, check=True,
        capture_output=True, text=True,
    ).stdout.replace("cache=True", "cache=False")
    path = tmp / f"{name}_at_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(revision: str, scores: np.ndarray, dec, blank: float, rounds: int, tmp: Path) -> None:  # noqa: ANN001 - DecoderConfig
    """Forward/backward and beam search at ``revision`` and now, taking turns on the same chunks."""
    from edgecall.runtime.decode import crf_posteriors, crf_search

    old_post, old_search = module_at(revision, "crf_posteriors", tmp), module_at(revision, "crf_search", tmp)
    count = scores.shape[1]
    chunks = [scores[:, n : n + 1] for n in range(count)]
    look_ahead = [guides(c, 0, blank)[0].copy() for c in chunks]
    for n, chunk in enumerate(chunks):
        for now, then in zip(guides(chunk, 0, blank), old_post.guides(chunk, 0, blank)):
            assert np.array_equal(now, then), f"forward/backward differ from {revision}'s on chunk {n}"
        now, then = beam_path(chunk, 0, look_ahead[n], dec.beam_width, dec.beam_cut, blank), old_search.beam_path(
            chunk, 0, look_ahead[n], dec.beam_width, dec.beam_cut, blank)
        assert all(np.array_equal(a, b) for a, b in zip(now, then)), f"beam path differs from {revision}'s on chunk {n}"
    pairs = {
        "forward/backward": (crf_posteriors, old_post, lambda m, sp, n: m.guides(chunks[n], 0, blank, sp)),
        f"beam search, width {dec.beam_width}": (crf_search, old_search, lambda m, sp, n: m.beam_path(
            chunks[n], 0, look_ahead[n], dec.beam_width, dec.beam_cut, blank)),
    }
    print(f"# against {revision}: same results on all {count} chunks; ms/chunk, best of 3 passes, {rounds} turns each")
    for name, (new, old, step) in pairs.items():
        times: dict[str, list[float]] = {"now": [], revision: []}
        spaces = {"now": crf_posteriors.Workspace(), revision: old_post.Workspace()}
        for _ in range(rounds):
            for label, module in (("now", new), (revision, old)):
                times[label].append(best_ms(lambda n, m=module, sp=spaces[label], f=step: f(m, sp, n), count, 3))
        mid = {label: float(np.median(v)) for label, v in times.items()}
        print(f"{name:<34} {revision}: {mid[revision]:.3f}  now: {mid['now']:.3f}  ratio {mid[revision] / mid['now']:.2f}x"
              f"  (turns: {' '.join(f'{a:.3f}/{b:.3f}' for a, b in zip(times[revision], times['now']))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--reads", nargs="+", type=Path, default=[SHARED / "accuracy/lambda_r941/lambda_r941.pod5"])
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", metavar="REV", help="Also time the decoder at this git revision, in turns.")
    parser.add_argument("--write-scores", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.write_scores:  # child: the model's scores on the chunks, then exit
        package = load_package(args.model)
        chunks = np.load(save_chunks(package.path, args.reads, args.chunks, args.write_scores.with_suffix(".chunks.npy")))
        np.save(args.write_scores, np.ascontiguousarray(runtime_scores(package, chunks)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        package = load_package(build_package(args.model, Path(tmp)))
        dec = package.config.decoder
        if dec.kind != "crf":
            sys.exit(f"{package.config.name} is a {dec.kind.upper()} model; this profiles the CRF decoder")
        out = Path(tmp) / "scores.npy"
        subprocess.run([sys.executable, __file__, "--model", str(package.path), "--chunks", str(args.chunks),
                        "--write-scores", str(out), "--reads", *map(str, args.reads)], check=True)
        network = np.load(out)  # (T, N, C), as the network emits them
    assert "openvino" not in sys.modules
    scores = chunk_major(network)  # as the OpenVINO backend hands them to the decoder
    frames, count, width = scores.shape
    blank, space = package.config.blank_score, Workspace()

    def chunk(n: int) -> np.ndarray:
        return scores[:, n : n + 1]

    weights, stay, shift = np.empty((frames, width), np.float32), np.empty(frames, np.float32), np.empty(frames)
    steps = {
        "exponentials": lambda n: _weights(chunk(n), 0, blank, weights, stay, shift),
        "forward/backward, reused buffers": lambda n: guides(chunk(n), 0, blank, space),
        "forward/backward, fresh buffers": lambda n: guides(chunk(n), 0, blank),
    }
    look_ahead = [guides(chunk(n), 0, blank)[0].copy() for n in range(count)]
    for width_ in sorted({dec.beam_width, 16, 32}):
        steps[f"beam search, width {width_}"] = lambda n, w=width_: beam_path(chunk(n), 0, look_ahead[n], w, dec.beam_cut, blank)
        steps[f"beam search, width {width_}, no prefetch"] = (
            lambda n, w=width_: beam_path(chunk(n), 0, look_ahead[n], w, dec.beam_cut, blank, 0)
        )
    steps["viterbi"] = lambda n: viterbi_path(chunk(n), 0, blank)
    grouped = scores.reshape(frames, count, width // 4, 4)  # the blank as each state's stay column
    learned = chunk_major(np.concatenate([np.full((*grouped.shape[:3], 1), blank, np.float32), grouped], axis=3)
                          .reshape(frames, count, -1))
    steps["split learned stays"] = lambda n: split_stays(learned[:, n : n + 1], 0, space)
    search = (dec.beam_width, dec.beam_cut, blank, dec.qscale, dec.qbias)
    for mode in crf.MODES:
        label = f"whole decode, {mode}" + f" (width {dec.beam_width})" * (mode == "beam")
        for layout, name in ((scores, "chunk by chunk"), (network, "network's (T, N, C)")):
            steps[f"{label}, {name}"] = lambda n, a=layout, b=mode == "beam": crf._decode_chunk(*crf._one_chunk(a, n), b, *search)
        learned_search = (dec.beam_width, dec.beam_cut, None, dec.qscale, dec.qbias)
        steps[f"{label}, learned stays"] = lambda n, b=mode == "beam": crf._decode_chunk(
            *crf._one_chunk(learned, n), b, *learned_search)
    print(f"# {package.config.name}: {count} chunks of {frames} frames x {width} scores; one thread; best of {args.rounds}")
    for name, step in steps.items():
        print(f"{name:<52} {best_ms(step, count, args.rounds):7.3f} ms/chunk")
    if args.against:
        with tempfile.TemporaryDirectory() as tmp:
            compare(args.against, scores, dec, blank, args.rounds, Path(tmp))

if __name__ == "__main__":
    main()
