"""The CTC-CRF loss's four lattice scans as Triton kernels, for training on a GPU.

As torch ops, each frame of a scan is a handful of tiny kernels: 14 launches
per frame over the four scans (``bench/train_step.py --count-ops``), ~28,000 per
step for a 2,000-frame R10.4.1 chunk, each launched from Python. Here each scan
is one launch: one program per chunk walks the frames, its states spread over
the program's threads. A frame's new row is written to the lattice in global
memory and read back, permuted, after a barrier (``volatile`` loads, so no
thread reads a stale cached row).

Same arithmetic as the numba scans of ``crf_loss`` (the CPU's), so the same
loss to rounding, over every state: a frame's states run side by side, so the
CPU's band of reachable states would not shorten it. Triton comes with
PyTorch's CUDA wheels on Linux; with ``TRITON_INTERPRET=1`` set before this
module is imported, the kernels run on CPU tensors, which is how the tests
check them on a machine without a GPU.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

NUM_BASES = 4


def _warps(elements: int) -> int:
    """Threads to spread a frame's tile over: a warp per 128 values, 4 to 8 warps."""
    return 4 if elements <= 1024 else 8


@triton.jit
def _global_forward_kernel(em_ptr, stay_ptr, alpha_ptr, norms_ptr, frames, batch, MSB: tl.constexpr):
    """Scaled forward scan of chunk ``program_id``: alpha[t+1] from alpha[t] (each row sums to 1), norms[t] the sum."""
    n = tl.program_id(0).to(tl.int64)
    q = tl.arange(0, MSB)[:, None]
    d = tl.arange(0, 4)[None, :]
    own = q * 4 + d  # (MSB, 4): state q*4 + d
    edges = own[:, :, None] * 4 + tl.arange(0, 4)[None, None, :]  # (MSB, 4, 4): em[q, d, j]
    sources = tl.arange(0, 4)[None, None, :] * MSB + q[:, :, None]  # (MSB, 1, 4): predecessor j*MSB + q
    em = tl.load(em_ptr + n * MSB * 16 + edges)
    for t in range(frames):
        cell = t * batch + n
        nxt_em = tl.load(em_ptr + (tl.minimum(t + 1, frames - 1) * batch + n) * MSB * 16 + edges)  # next frame's
        row = alpha_ptr + cell * MSB * 4
        value = tl.sum(em * tl.load(row + sources, volatile=True), axis=2)
        value += tl.load(row + own, volatile=True) * tl.load(stay_ptr + cell)
        total = tl.sum(tl.sum(value, axis=1), axis=0)
        tl.store(norms_ptr + cell, total)
        tl.store(row + batch * MSB * 4 + own, value / total)
        tl.debug_barrier()
        em = nxt_em


@triton.jit
def _global_backward_kernel(em_ptr, stay_ptr, beta_ptr, frames, batch, MSB: tl.constexpr):
    """Scaled backward scan of chunk ``program_id``: beta[t] from beta[t+1], each row's largest value 1."""
    n = tl.program_id(0).to(tl.int64)
    q = tl.arange(0, MSB)[:, None]
    j = tl.arange(0, 4)[None, :]
    own = j * MSB + q  # (MSB, 4): state j*MSB + q, the predecessor whose oldest base j a move drops
    targets = q[:, :, None] * 4 + tl.arange(0, 4)[None, :, None]  # (MSB, 4, 1): state q*4 + d
    edges = targets * 4 + j[:, None, :]  # (MSB, 4, 4): em[q, d, j]
    last = (frames - 1) * batch + n
    em = tl.load(em_ptr + last * MSB * 16 + edges)
    for step in range(frames):
        t = frames - 1 - step
        cell = t * batch + n
        nxt_em = tl.load(em_ptr + (tl.maximum(t - 1, 0) * batch + n) * MSB * 16 + edges)  # next frame's
        row = beta_ptr + (cell + batch) * MSB * 4  # beta[t + 1]
        value = tl.sum(em * tl.load(row + targets, volatile=True), axis=1)
        value += tl.load(row + own, volatile=True) * tl.load(stay_ptr + cell)
        top = tl.max(tl.max(value, axis=1), axis=0)
        tl.store(beta_ptr + cell * MSB * 4 + own, value / top)
        tl.debug_barrier()
        em = nxt_em


@triton.jit
def _log_add(a, b):
    """log(exp(a) + exp(b)) elementwise, -inf where both are (and no NaN on the way)."""
    high = tl.maximum(a, b)
    finite = tl.where(high == float("-inf"), 0.0, high)
    return high + tl.log(1.0 + tl.exp(tl.minimum(a, b) - finite))


@triton.jit
def _target_forward_kernel(moves_ptr, n_states_ptr, alpha_ptr, blank, frames, batch, width, BLOCK: tl.constexpr):
    """Log-space forward scan of chunk ``program_id``'s target lattice: alpha (T+1, N, width+1), row 0 given."""
    n = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, BLOCK)
    last = tl.load(n_states_ptr + n) - 1
    inside = s <= width
    moved = (s >= 1) & inside
    for t in range(frames):
        cell = t * batch + n
        row = alpha_ptr + cell * (width + 1)
        stay = tl.load(row + s, mask=inside, other=float("-inf"), volatile=True) + blank
        move = tl.load(row + s - 1, mask=moved, other=float("-inf"), volatile=True)
        move += tl.load(moves_ptr + cell * width + s - 1, mask=moved, other=float("-inf"))
        value = tl.where(s <= last, _log_add(stay, move), float("-inf"))
        tl.store(row + batch * (width + 1) + s, value, mask=inside)
        tl.debug_barrier()


@triton.jit
def _target_backward_kernel(moves_ptr, n_states_ptr, alpha_ptr, logz_ptr, grad_ptr, beta_ptr, post_ptr, blank, frames,
                            batch, width, BLOCK: tl.constexpr):
    """Backward scan of chunk ``program_id``: post[t, n, s] = P(move s at frame t) * grad[n].

    beta ping-pongs between two rows of ``beta_ptr`` (2, N, width+1); row 0 holds beta[T] on entry.
    """
    n = tl.program_id(0).to(tl.int64)
    s = tl.arange(0, BLOCK)
    last = tl.load(n_states_ptr + n) - 1
    logz = tl.load(logz_ptr + n)
    grad = tl.load(grad_ptr + n)
    inside = s <= width
    for step in range(frames):
        t = frames - 1 - step
        cell = t * batch + n
        source = beta_ptr + ((step % 2) * batch + n) * (width + 1)  # beta[t + 1]
        after = tl.load(source + s, mask=inside, other=float("-inf"), volatile=True)
        ahead = tl.load(source + s + 1, mask=s < width, other=float("-inf"), volatile=True)
        move = tl.load(moves_ptr + cell * width + s, mask=s < width, other=float("-inf"))
        before = tl.load(alpha_ptr + cell * (width + 1) + s, mask=s < width, other=float("-inf"))
        post = tl.where(s < last, tl.exp(before + move + ahead - logz) * grad, 0.0)
        tl.store(post_ptr + cell * width + s, post, mask=s < width)
        value = tl.where(s < last, _log_add(after + blank, ahead + move), float("-inf"))
        value = tl.where(s == last, after + blank, value)
        tl.store(beta_ptr + (((step + 1) % 2) * batch + n) * (width + 1) + s, value, mask=inside)
        tl.debug_barrier()


def _on(tensor: Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it the tensors' own (``--device cuda:1``)."""
    return torch.cuda.device(tensor.device) if tensor.device.type == "cuda" else contextlib.nullcontext()


def global_forward(em: Tensor, stay: Tensor, alpha: Tensor, norms: Tensor) -> None:
    """``crf_loss._global_forward`` for all chunks: em (T, N, msb, 4, 4), stay (T, N), alpha (T+1, N, 4*msb), norms (T, N)."""
    frames, batch, msb = em.shape[:3]
    with _on(em):
        _global_forward_kernel[(batch,)](em, stay, alpha, norms, frames, batch, MSB=msb, num_warps=_warps(msb * 16))


def global_backward(em: Tensor, stay: Tensor, beta: Tensor) -> None:
    """``crf_loss._global_backward`` for all chunks: beta (T+1, N, 4*msb) with beta[T] given."""
    frames, batch, msb = em.shape[:3]
    with _on(em):
        _global_backward_kernel[(batch,)](em, stay, beta, frames, batch, MSB=msb, num_warps=_warps(msb * 16))


def _block(width: int) -> int:
    return triton.next_power_of_2(width + 1)


def target_forward(moves: Tensor, n_states: Tensor, blank: float, alpha: Tensor) -> None:
    """Fills alpha (T+1, N, S+1), whose row 0 is given, from moves (T, N, S); -inf beyond each chunk's lattice."""
    frames, batch, width = moves.shape
    block = _block(width)
    with _on(moves):
        _target_forward_kernel[(batch,)](moves, n_states, alpha, blank, frames, batch, width, BLOCK=block,
                                         num_warps=_warps(block))


def target_backward(moves: Tensor, n_states: Tensor, blank: float, alpha: Tensor, logz: Tensor, grad: Tensor) -> Tensor:
    """(T, N, S) posteriors of each target move times its chunk's ``grad``; beta lives in two rows only."""
    frames, batch, width = moves.shape
    beta = moves.new_full((2, batch, width + 1), float("-inf"))
    beta[0, torch.arange(batch, device=moves.device), n_states - 1] = 0.0
    post = torch.empty_like(moves)
    block = _block(width)
    with _on(moves):
        _target_backward_kernel[(batch,)](moves, n_states, alpha, logz, grad, beta, post, blank, frames, batch, width,
                                          BLOCK=block, num_warps=_warps(block))
    return post
