"""Bonito's CTC-CRF loss without koi, on the CPU and on a GPU.

Bonito (``bonito/crf/model.py CTC_CRF.ctc_loss``) leans on koi's CUDA kernels;
this is the same loss as two forward-backward passes with hand-written
gradients (posteriors), so autograd does not record ~T small steps per lattice.
The scans over frames run in numba on the CPU and in Triton on a GPU
(``crf_triton``); the torch loops (14 small ops per frame) are the reference they
are tested against, and the GPU's fallback where Triton cannot run.

Score layout (edgecall's, ``DESIGN.md`` "CRF decoding"): per frame
``4**(L+1)`` scores; column ``s*4 + j`` moves into state ``s`` (an L-mer, newest
base in the lowest 2 bits) from predecessor ``(s >> 2) + j*4**(L-1)``. A stay
scores the fixed ``blank_score`` and is no column.

As in bonito, a target path starts in the k-mer of the first L bases (they cost
nothing), then stays or moves to the next k-mer each frame, and must end in
the last k-mer at the last frame; the normaliser ``logZ`` sums every path from
every start state. Per chunk, loss = -(log P(target)) / target_length.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit, types
from numba.extending import overload
from torch import Tensor

from edgecall.runtime.decode.float32_math import exp_core, log1p_core

NUM_BASES = 4
LATTICES = ("numba", "triton", "torch")
LATTICE: str | None = None  # forces one of LATTICES (bench, tests); None: numba on the CPU, Triton on a GPU
_GPU_LATTICE: dict[tuple[str, int], str] = {}  # (device, state_len) -> the lattice its first check chose


def _check(scores: Tensor, state_len: int) -> None:
    if state_len < 1:
        raise ValueError(f"state_len must be at least 1, got {state_len}")
    width = NUM_BASES ** (state_len + 1)
    if scores.dim() != 3 or scores.shape[2] != width:
        raise ValueError(f"CRF scores must be (T, N, {width}) for state_len {state_len}, got {tuple(scores.shape)}")


@njit(cache=True, nogil=True)
def _global_forward(first: int, end: int, em: np.ndarray, stay: np.ndarray, alpha: np.ndarray, norms: np.ndarray) -> None:
    """``_GlobalLogZ``'s scaled forward scan of chunks [first, end): ``alpha[0]`` given, fills ``alpha[1:]`` and ``norms``."""
    frames, _, msb = em.shape[:3]
    for n in range(first, end):
        for t in range(frames):
            a, nxt, e, w = alpha[t, n], alpha[t + 1, n], em[t, n], stay[t, n]
            total = 0.0
            for q in range(msb):
                for d in range(NUM_BASES):
                    value = a[q * NUM_BASES + d] * w
                    for j in range(NUM_BASES):
                        value += e[q, d, j] * a[j * msb + q]
                    nxt[q * NUM_BASES + d] = value
                    total += value
            norms[t, n] = total
            for s in range(msb * NUM_BASES):  # (numba's nxt /= total would rebind nxt, not write alpha)
                nxt[s] /= total


@njit(cache=True, nogil=True)
def _global_backward(first: int, end: int, em: np.ndarray, stay: np.ndarray, beta: np.ndarray) -> None:
    """``_GlobalLogZ``'s scaled backward scan of chunks [first, end): ``beta[-1]`` given, each frame's max 1."""
    frames, _, msb = em.shape[:3]
    for n in range(first, end):
        for t in range(frames - 1, -1, -1):
            b, cur, e, w = beta[t + 1, n], beta[t, n], em[t, n], stay[t, n]
            for q in range(msb):
                for j in range(NUM_BASES):
                    value = b[j * msb + q] * w
                    for d in range(NUM_BASES):
                        value += e[q, d, j] * b[q * NUM_BASES + d]
                    cur[j * msb + q] = value
            top = cur.max()
            for s in range(msb * NUM_BASES):
                cur[s] /= top


class _GlobalLogZ(torch.autograd.Function):
    """log of the summed exp-score of all paths, (N,); gradient = edge posteriors.

    Runs in probability space, rescaled every frame (the scaled forward
    algorithm): a batched 4x4 matrix-vector product per (chunk, k-mer suffix)
    instead of a log-sum-exp, about twice as fast on CPU. Safe because every
    state reaches every other in L frames: with per-frame scores spanning at most
    R (10 for the head's tanh * 5 against blank 2), no state's forward or
    backward mass falls more than e^(R*L) below the largest, well inside
    float32's e^87 for L <= 5 (a target lattice has no such bound: log space).
    The two scans run in numba (``_global_forward``, ``_global_backward``) or Triton;
    as torch ops per frame they were a quarter of a fast-size CPU training step.
    """

    @staticmethod
    def forward(ctx, scores: Tensor, state_len: int, blank: float, lattice: str) -> Tensor:  # type: ignore[override]
        frames, batch, _ = scores.shape
        states, msb = NUM_BASES**state_len, NUM_BASES ** (state_len - 1)
        x = scores.detach()
        shift = x.amax(dim=2).clamp(min=blank)  # (T, N): no exp overflows
        # em[t, n, q, d, j]: exp-score of the move into q*4 + d from j*msb + q
        em = torch.exp(x - shift[:, :, None]).view(frames, batch, msb, NUM_BASES, NUM_BASES)
        stay = torch.exp(blank - shift)  # (T, N)
        alpha = x.new_empty(frames + 1, batch, states)  # each frame sums to 1
        alpha[0] = 1.0 / states
        norms = x.new_empty(frames, batch)  # each frame's rescaling factor
        em, stay = em.contiguous(), stay.contiguous()
        ctx.lattice = lattice
        if lattice == "numba":
            _over_chunks(_global_forward, batch, em.numpy(), stay.numpy(), alpha.numpy(), norms.numpy())
        elif lattice == "triton":
            _triton().global_forward(em, stay, alpha, norms)
        else:
            blocks = em.view(frames, batch * msb, NUM_BASES, NUM_BASES)  # one 4x4 matrix per (n, q)
            for t in range(frames):
                prev = alpha[t].view(batch, NUM_BASES, msb).transpose(1, 2).reshape(batch * msb, NUM_BASES, 1)
                nxt = torch.bmm(blocks[t], prev).view(batch, states).addcmul_(alpha[t], stay[t, :, None])
                torch.sum(nxt, dim=1, out=norms[t])
                torch.div(nxt, norms[t, :, None], out=alpha[t + 1])
        ctx.save_for_backward(em, stay, alpha, norms)
        return norms.log().sum(dim=0) + shift.sum(dim=0) + state_len * math.log(NUM_BASES)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        em, stay, alpha, norms = ctx.saved_tensors
        frames, batch, msb = em.shape[:3]
        states = msb * NUM_BASES
        beta = alpha.new_empty(alpha.shape)  # rescaled per frame, like alpha
        beta[frames] = 1.0
        if ctx.lattice == "numba":
            _over_chunks(_global_backward, batch, em.numpy(), stay.numpy(), beta.numpy())
        elif ctx.lattice == "triton":
            _triton().global_backward(em, stay, beta)
        else:
            blocks = em.view(frames, batch * msb, NUM_BASES, NUM_BASES).transpose(2, 3)
            for t in range(frames - 1, -1, -1):
                nxt = beta[t + 1].view(batch * msb, NUM_BASES, 1)
                prev = torch.bmm(blocks[t], nxt).view(batch, msb, NUM_BASES).transpose(1, 2).reshape(batch, states)
                prev.addcmul_(beta[t + 1], stay[t, :, None])
                torch.div(prev, prev.amax(dim=1, keepdim=True), out=beta[t])
        # posterior of an edge at frame t = its weight / all edges' weight at t, and that
        # total is norms[t] * sum_s alpha[t+1, s] * beta[t+1, s] (alpha[t+1] was divided by norms[t])
        total = norms * (alpha[1:] * beta[1:]).sum(dim=2)
        after = beta[1:] * (grad[None, :] / total)[:, :, None]
        before = alpha[:-1].view(frames, batch, NUM_BASES, msb).transpose(2, 3).contiguous()
        post = em * before[:, :, :, None, :]
        post *= after.view(frames, batch, msb, NUM_BASES, 1)
        return post.view(frames, batch, -1), None, None, None


def _over_chunks(kernel, batch: int, *args) -> None:  # noqa: ANN001 - a numba kernel taking (first, end, ...)
    """``kernel`` over chunks [0, batch), split across torch's intra-op thread count (the kernels release the GIL).

    Python threads rather than numba's parallel loops: those run on the OpenMP pool torch also
    uses, after which torch's own reductions no longer gave bit-identical results, and a resumed
    training run must repeat the straight run exactly (tests/test_train_cli.py).
    """
    workers = max(1, min(torch.get_num_threads(), batch))
    if workers == 1:
        kernel(0, batch, *args)
        return
    bounds = np.linspace(0, batch, workers + 1).astype(np.int64)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edgecall-crf-loss") as pool:
        for done in [pool.submit(kernel, int(a), int(b), *args) for a, b in zip(bounds[:-1], bounds[1:])]:
            done.result()


@njit(cache=True, nogil=True)
def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)), -inf when both are."""
    if a < b:
        a, b = b, a
    if b == -np.inf:
        return a
    return a + np.log1p(np.exp(b - a))


_LOG_ADD_FLOOR = np.float32(-24.0)  # log(1 + e^d) below this is < 4e-11: dropped, and no denormals on the way
_POSTERIOR_FLOOR = np.float32(-60.0)  # posteriors below e^-60 are 0: times a chunk's grad they would be denormal
_POSTERIOR_CEIL = np.float32(80.0)


def _log_add_rows(stay: np.ndarray, came: np.ndarray, move: np.ndarray, blank: float, out: np.ndarray) -> None:
    """out[i] = log(exp(stay[i] + blank) + exp(came[i] + move[i])), all 1-d of one length. Compiled per dtype."""


def _posterior_row(before: np.ndarray, move: np.ndarray, after: np.ndarray, logz: float, grad: float,
                   out: np.ndarray) -> None:
    """out[i] = exp(before[i] + move[i] + after[i] - logz) * grad, all 1-d of one length. Compiled per dtype."""


@overload(_log_add_rows, jit_options={"fastmath": {"contract"}})
def _log_add_rows_for(stay, came, move, blank, out):  # noqa: ANN001, ANN202 - numba's types
    if out.dtype == types.float32:  # training's own dtype: the vectorised cores
        def rows(stay, came, move, blank, out):  # noqa: ANN001, ANN202
            for i in range(out.shape[0]):
                x, y = stay[i] + blank, came[i] + move[i]
                high = x if x > y else y
                d = (y if x > y else x) - high  # NaN when both are -inf: then e = 0 and out = -inf
                e = exp_core(d) if d > _LOG_ADD_FLOOR else np.float32(0.0)
                out[i] = high + log1p_core(e)
    else:  # float64 (the exactness tests): libm
        def rows(stay, came, move, blank, out):  # noqa: ANN001, ANN202
            for i in range(out.shape[0]):
                out[i] = _log_add(stay[i] + blank, came[i] + move[i])
    return rows


@overload(_posterior_row, jit_options={"fastmath": {"contract"}})
def _posterior_row_for(before, move, after, logz, grad, out):  # noqa: ANN001, ANN202 - numba's types
    if out.dtype == types.float32:
        def row(before, move, after, logz, grad, out):  # noqa: ANN001, ANN202
            for i in range(out.shape[0]):
                d = before[i] + move[i] + after[i] - logz
                v = min(max(d, _POSTERIOR_FLOOR), _POSTERIOR_CEIL)
                out[i] = exp_core(v) * grad if d > _POSTERIOR_FLOOR else np.float32(0.0)
    else:
        def row(before, move, after, logz, grad, out):  # noqa: ANN001, ANN202
            for i in range(out.shape[0]):
                out[i] = np.exp(before[i] + move[i] + after[i] - logz) * grad
    return row


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _target_forward(first: int, end: int, moves: np.ndarray, n_states: np.ndarray, blank: float, alpha: np.ndarray,
                    logz: np.ndarray) -> None:
    """Fills ``alpha`` (T+1, N, S+1) (log space; -inf beyond each chunk's lattice) and ``logz`` of chunks [first, end).

    Only the band of states a path through the lattice can hold is computed: at frame t
    a path has made at most t moves, and must still make the rest by the last frame,
    about half the cells of a chunk (``_target_band``)."""
    frames = moves.shape[0]
    for n in range(first, end):
        last = n_states[n] - 1
        alpha[0, n, :] = -np.inf
        alpha[0, n, 0] = 0.0
        for t in range(frames):
            a, nxt, move = alpha[t, n], alpha[t + 1, n], moves[t, n]
            low, high = _target_band(t + 1, frames, last)
            nxt[:low] = -np.inf
            nxt[high + 1 :] = -np.inf
            if low == 0:
                nxt[0] = a[0] + blank
                low = 1
            if low <= high:
                _log_add_rows(a[low : high + 1], a[low - 1 : high], move[low - 1 : high], blank, nxt[low : high + 1])
        logz[n] = alpha[frames, n, last]


@njit(inline="always")
def _target_band(t: int, frames: int, last: int) -> tuple[int, int]:
    """The states [low, high] of a target lattice that lie on some path at frame ``t`` (0 = before any score)."""
    return max(0, last - (frames - t)), min(t, last)


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _target_backward(first: int, end: int, moves: np.ndarray, n_states: np.ndarray, blank: float, alpha: np.ndarray,
                     logz: np.ndarray, grad: np.ndarray, post: np.ndarray) -> None:
    """Fills ``post`` (T, N, S), zeros on entry, of chunks [first, end) with each move's posterior times its chunk's
    ``grad``, within the band of ``_target_forward``; beta is kept one frame at a time."""
    frames, _, width = moves.shape
    for n in range(first, end):
        last = n_states[n] - 1
        beta = np.full(width + 1, -np.inf, moves.dtype)
        cur = np.full(width + 1, -np.inf, moves.dtype)
        beta[last] = 0.0
        for t in range(frames - 1, -1, -1):
            move, a = moves[t, n], alpha[t, n]
            # alpha[t]'s band; beta[t] is finite from the same `low` (the states that still reach `last` in time) to
            # `last`, and a move from `last` has no state to go to
            low, high = _target_band(t, frames, last)
            high = min(high, last - 1)
            if low <= high:
                _posterior_row(a[low : high + 1], move[low : high + 1], beta[low + 1 : high + 2], logz[n], grad[n],
                               post[t, n, low : high + 1])
            if low < last:
                _log_add_rows(beta[low:last], beta[low + 1 : last + 1], move[low:last], blank, cur[low:last])
            cur[last] = beta[last] + blank
            beta, cur = cur, beta


class _TargetLogZ(torch.autograd.Function):
    """log of the summed exp-score of the paths that spell each target, (N,).

    On the CPU the lattice runs in numba, chunks in parallel: as a loop of torch ops
    over frames it was 40-50% of a training step of ONT's fast R10.4.1 size
    (bench/train_step.py). On a GPU it runs in Triton, one program per chunk.
    """

    @staticmethod
    def forward(ctx, moves: Tensor, n_states: Tensor, blank: float, lattice: str) -> Tensor:  # type: ignore[override]
        frames, batch, _ = moves.shape
        moves = moves.detach()
        ctx.blank, ctx.dtype, ctx.lattice = blank, moves.dtype, lattice
        if lattice == "numba":
            moves_np, n_states_np = moves.contiguous().numpy(), n_states.to(torch.int64).contiguous().numpy()
            alpha = np.empty((frames + 1, batch, moves.shape[2] + 1), moves_np.dtype)
            logz = np.empty(batch, moves_np.dtype)
            _over_chunks(_target_forward, batch, moves_np, n_states_np, moves_np.dtype.type(blank), alpha, logz)
            ctx.cpu = (moves_np, n_states_np, alpha, logz)
            return torch.from_numpy(logz.copy())
        ctx.cpu = None
        alpha = moves.new_full((frames + 1, batch, moves.shape[2] + 1), float("-inf"))
        alpha[0, :, 0] = 0.0
        if lattice == "triton":
            moves = moves.contiguous()
            _triton().target_forward(moves, n_states, blank, alpha)
        else:
            for t in range(frames):
                a, nxt = alpha[t], alpha[t + 1]
                torch.add(a, blank, out=nxt)
                torch.logaddexp(nxt[:, 1:], a[:, :-1] + moves[t], out=nxt[:, 1:])
        ctx.save_for_backward(moves, alpha, n_states)
        return alpha[frames, torch.arange(batch, device=moves.device), n_states - 1]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        if ctx.cpu is not None:
            moves_np, n_states_np, alpha_np, logz_np = ctx.cpu
            post_np = np.zeros_like(moves_np)
            grad_np = grad.detach().to(ctx.dtype).contiguous().numpy()
            _over_chunks(_target_backward, moves_np.shape[1], moves_np, n_states_np, moves_np.dtype.type(ctx.blank),
                         alpha_np, logz_np, grad_np, post_np)
            return torch.from_numpy(post_np), None, None, None
        moves, alpha, n_states = ctx.saved_tensors
        frames, batch, _ = moves.shape
        rows = torch.arange(batch, device=moves.device)
        if ctx.lattice == "triton":
            logz = alpha[frames, rows, n_states - 1].contiguous()
            grad = grad.detach().to(ctx.dtype).contiguous()
            return _triton().target_backward(moves, n_states, ctx.blank, alpha, logz, grad), None, None, None
        beta = torch.full_like(alpha, float("-inf"))
        beta[frames, rows, n_states - 1] = 0.0
        for t in range(frames - 1, -1, -1):
            b, cur = beta[t + 1], beta[t]
            torch.add(b, ctx.blank, out=cur)
            torch.logaddexp(cur[:, :-1], b[:, 1:] + moves[t], out=cur[:, :-1])
        logz = alpha[frames, rows, n_states - 1]
        post = torch.exp(alpha[:-1, :, :-1] + moves + beta[1:, :, 1:] - logz[None, :, None])
        return post * grad[None, :, None], None, None, None


def global_logz(scores: Tensor, *, state_len: int, blank_score: float = 2.0, lattice: str | None = None) -> Tensor:
    """(N,) log-sum over all paths (any start state) of the (T, N, C) scores; ``lattice``: see :func:`crf_loss`."""
    _check(scores, state_len)
    return _GlobalLogZ.apply(scores, state_len, float(blank_score), _lattice(scores.device, state_len, lattice))


def target_move_scores(scores: Tensor, targets: Tensor, state_len: int) -> Tensor:
    """(T, N, S - L) scores of the moves k-mer i -> i+1 of each target (bonito's ``prepare_ctc_scores``)."""
    bases = (targets - 1).clamp(min=0)  # 1..4 -> 0..3; padding becomes 0, never reached
    count = targets.shape[1] - state_len + 1
    kmers = sum(bases[:, i : count + i] * NUM_BASES ** (state_len - 1 - i) for i in range(state_len))
    index = kmers[:, 1:] * NUM_BASES + bases[:, : count - 1]  # j = the predecessor's oldest base
    return scores.gather(2, index.unsqueeze(0).expand(scores.shape[0], -1, -1))


def target_logz(
    scores: Tensor, targets: Tensor, target_lengths: Tensor, *, state_len: int, blank_score: float = 2.0,
    lattice: str | None = None,
) -> Tensor:
    """(N,) log-sum over the paths that spell each target; raises if a target cannot fit."""
    _check(scores, state_len)
    if targets.dim() != 2 or targets.shape[0] != scores.shape[1] or target_lengths.shape != (scores.shape[1],):
        raise ValueError(f"targets (N, S) and target_lengths (N,) must match scores' N = {scores.shape[1]}")
    lengths = target_lengths.to(torch.int64)
    if int(lengths.min()) < state_len or int(lengths.max()) > targets.shape[1]:
        raise ValueError(f"target lengths must be in [{state_len}, {targets.shape[1]}] (state_len, padded width)")
    if int(lengths.max()) - state_len > scores.shape[0]:
        raise ValueError(f"a target of {int(lengths.max())} bases needs more moves than {scores.shape[0]} frames")
    moves = target_move_scores(scores, targets.to(torch.int64), state_len)
    return _TargetLogZ.apply(moves, lengths - state_len + 1, float(blank_score),
                             _lattice(scores.device, state_len, lattice))


def crf_loss(
    scores: Tensor,
    targets: Tensor,
    target_lengths: Tensor,
    *,
    state_len: int,
    blank_score: float = 2.0,
    normalise: bool = True,
    loss_clip: float | None = None,
    lattice: str | None = None,
) -> Tensor:
    """Mean over the batch of -(log P(target)) / target_length, a scalar.

    ``scores`` (T, N, 4**(state_len+1)) float (the network output), ``targets``
    (N, S) int64 bases 1..4 (A, C, G, T) padded with 0, ``target_lengths`` (N,).
    ``normalise`` divides by the global normaliser (bonito's default; the loss is
    then >= 0). ``loss_clip`` clamps each chunk's loss to [0, clip], as bonito's
    ``loss_clip`` (the seed paper's code uses 10). ``lattice`` picks the scans'
    code, one of ``LATTICES``; None: ``LATTICE``, else numba on the CPU and Triton
    on a GPU once it has passed a check there (the torch loops if not).
    """
    lattice = _lattice(scores.device, state_len, lattice)
    score = target_logz(scores, targets, target_lengths, state_len=state_len, blank_score=blank_score, lattice=lattice)
    if normalise:
        score = score - global_logz(scores, state_len=state_len, blank_score=blank_score, lattice=lattice)
    loss = -score / target_lengths.to(score.dtype)
    if loss_clip is not None:
        loss = loss.clamp(0.0, loss_clip)
    return loss.mean()


def _lattice(device: torch.device, state_len: int, asked: str | None) -> str:
    """The scans' code for tensors on ``device``: ``asked``, else ``LATTICE``, else the device's own."""
    lattice = asked or LATTICE
    if lattice is None:
        return "numba" if device.type == "cpu" else _gpu_lattice(device, state_len)
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {', '.join(LATTICES)}, got {lattice!r}")
    if lattice == "numba" and device.type != "cpu":
        raise ValueError(f"the numba lattice runs on CPU tensors only, these are on {device}")
    return lattice


def _gpu_lattice(device: torch.device, state_len: int) -> str:
    """Triton, once it has given the torch loops' loss and gradient on a small batch on this device; else the loops.

    Checked at first use, so a GPU, driver or Triton build that cannot run the kernels
    costs speed, said once on stderr, and never a wrong gradient or a dead run.
    """
    key = (str(device), state_len)
    if key not in _GPU_LATTICE:
        problem = triton_problem(device, state_len)
        if problem is not None:
            print(f"edgecall: the CRF loss runs as torch loops on {device}, slower: {problem}", file=sys.stderr)
        _GPU_LATTICE[key] = "torch" if problem else "triton"
    return _GPU_LATTICE[key]


def triton_problem(device: torch.device, state_len: int) -> str | None:
    """Why the Triton scans cannot serve on ``device`` (import or launch failed, or they disagree with the torch
    loops on a small random batch); None when they can."""
    try:
        _triton()
    except Exception as err:  # noqa: BLE001 - ImportError, or a Triton that cannot start on this platform
        return f"Triton cannot be imported ({err}); it comes with PyTorch's CUDA wheels on Linux"
    gen = torch.Generator().manual_seed(state_len)
    frames, batch, width = 96, 3, 40
    scores = (torch.rand(frames, batch, NUM_BASES ** (state_len + 1), generator=gen) * 10 - 5).to(device)
    targets = torch.randint(1, 5, (batch, width), generator=gen).to(device)
    lengths = torch.tensor([width, width // 2, state_len], device=device)

    def run(lattice: str) -> tuple[Tensor, Tensor]:
        leaf = scores.clone().requires_grad_(True)
        with torch.enable_grad():  # the first loss of a run may come under no_grad (validation)
            loss = crf_loss(leaf, targets, lengths, state_len=state_len, lattice=lattice)
            loss.backward()
        return loss.detach(), leaf.grad  # type: ignore[return-value]

    loss_l, grad_l = run("torch")
    try:
        loss_t, grad_t = run("triton")
    except Exception as err:  # noqa: BLE001 - any compile or launch failure means: use the loops
        return f"the Triton kernels failed ({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]})"
    if not (torch.allclose(loss_t, loss_l, rtol=1e-4, atol=1e-5) and torch.allclose(grad_t, grad_l, rtol=1e-3, atol=1e-6)):
        return (f"the Triton kernels disagree with the torch loops (loss {float(loss_t):.6f} against {float(loss_l):.6f}, "
                f"largest gradient difference {float((grad_t - grad_l).abs().max()):.2e})")
    return None


def _triton():  # noqa: ANN202 - the module, imported on first use: Triton is there only where a GPU build of torch is
    from edgecall.train import crf_triton

    return crf_triton
