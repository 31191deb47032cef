"""The Bonito CRF model with learnable neuron gates (Frensel, Al-Ars & Hofstee, BCB'24).

Every LSTM neuron k of layer i has a hard-concrete gate s_k with parameter
``encoder.{i}.log_alpha[k]``; an L0 penalty on P(s_k != 0) pushes neurons off,
and ``edgecall.export.shrink`` then removes the ones whose deterministic gate
is off. Parameter names equal ``BonitoCRF``'s plus the ``log_alpha`` vectors,
so a training checkpoint is a canonical state dict that ``load_checkpoint``
reads and ``compile`` shrinks.

One formulation serves training and evaluation and runs PyTorch's fused LSTM
(not a Python loop over time steps): the gate scales neuron k's four gate rows
of W_ih, W_hh and both biases, its column of W_hh, and its output h_k. With the
binary eval gate this is exactly ``shrink.masked_state``: a masked neuron's
pre-activations are 0, so its cell and output are exactly 0. Deviations from
the reference (``src/layers/masked_lstm.py``), both forced by the fused kernel:
it also scales the i, f, g activations by s (the two agree whenever s is 0 or
1, where training drives the gates), and it draws fresh gate noise every time
step, where this draws one sample per forward pass, shared by time and batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from edgecall.config import ModelConfig
from edgecall.errors import EdgecallError
from edgecall.export.shrink import BETA, GAMMA, LSTM_GATES, ZETA, keep_mask, nonzero_probability
from edgecall.model.checkpoint import LoadedCheckpoint
from edgecall.layers import Recurrent, recurrent_indices
from edgecall.model.crf import BonitoCRF, gate_key, recurrent_key, upgrade_format1_state, weight_key

INIT_FULLY_ON_PROBABILITY = 0.9  # P(gate == 1) of a fresh neuron: ~90% of neurons fully on in each training step
# The sampled gate is exactly 1 when logit(u) >= beta ln((1 - gamma) / (zeta - 1)) - log_alpha, and
# logit(u) is standard logistic, so P(gate == 1) = p needs log_alpha = beta ln 11 + ln(p / (1 - p))
# = 3.80; then P(gate != 0) = 0.995, and every fresh neuron is on at eval. A mean that only makes
# P(gate != 0) = 0.9 (log_alpha 0.6, close to the reference's N(1, 0.1)) leaves most gates at
# random fractions in every pass; with CPU-sized batches that noise kept the CRF loss at ln 4
# (nothing learned) for 1,800 steps, while this initialisation learns like an ungated model.
LOG_ALPHA_INIT_MEAN = BETA * math.log((1 - GAMMA) / (ZETA - 1)) + math.log(
    INIT_FULLY_ON_PROBABILITY / (1 - INIT_FULLY_ON_PROBABILITY)
)
LOG_ALPHA_INIT_STD = 0.1  # as the reference's N(1, 0.1)


def sample_gate(log_alpha: Tensor) -> Tensor:
    """(H,) stochastic hard-concrete gate in [0, 1], differentiable in log_alpha.

    s = clamp(sigmoid((ln u - ln(1 - u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1),
    u ~ U(0, 1) from torch's global generator (saved in checkpoints, so resumes repeat it).
    """
    u = torch.rand_like(log_alpha)
    stretched = torch.sigmoid((u.log() - (-u).log1p() + log_alpha) / BETA) * (ZETA - GAMMA) + GAMMA
    return stretched.clamp(0.0, 1.0)


class MaskedLSTM(nn.Module):
    """One gated unidirectional LSTM layer; a reversed layer flips time around it."""

    def __init__(self, spec: Recurrent) -> None:
        super().__init__()
        self.rnn = nn.LSTM(spec.insize, spec.size)
        self.log_alpha = nn.Parameter(torch.empty(spec.size).normal_(LOG_ALPHA_INIT_MEAN, LOG_ALPHA_INIT_STD))
        self.reverse = spec.reverse

    def gate(self) -> Tensor:
        """(H,) the gate for this forward pass: sampled in training, binary in eval."""
        if self.training:
            return sample_gate(self.log_alpha)
        return keep_mask(self.log_alpha.detach()).to(self.log_alpha.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """(T, N, I) -> (T, N, H); one gate sample per call, shared by time and batch."""
        s = self.gate()
        rows = s.repeat(LSTM_GATES)[:, None]  # gate row g*H + k belongs to neuron k
        rnn = self.rnn
        weights = {
            "weight_ih_l0": rnn.weight_ih_l0 * rows,
            "weight_hh_l0": rnn.weight_hh_l0 * rows * s[None, :],
            "bias_ih_l0": rnn.bias_ih_l0 * rows[:, 0],
            "bias_hh_l0": rnn.bias_hh_l0 * rows[:, 0],
        }
        if self.reverse:
            x = x.flip(0)
        y, _ = functional_call(rnn, weights, (x,))
        y = y * s
        return y.flip(0) if self.reverse else y


class MaskedBonitoCRF(BonitoCRF):
    """(N, 1, T) normalised signal -> (T/stride, N, 4^(state_len+1)) CRF scores, gated LSTMs.

    BonitoCRF with :class:`MaskedLSTM` layers: same parameter names plus ``encoder.{i}.log_alpha``.
    """

    layer_type = MaskedLSTM

    def __init__(self, config: ModelConfig) -> None:
        if config.encoder.rnn_type != "lstm":
            raise EdgecallError(f"{config.name}: gated training supports LSTM layers, not {config.encoder.rnn_type}")
        if config.blank_score is None:
            raise EdgecallError(f"{config.name}: training CRF heads with learned stay scores is not supported (fixed blank only)")
        super().__init__(config)

    def masked_layers(self) -> list[MaskedLSTM]:
        return [layer for layer in self.encoder if isinstance(layer, MaskedLSTM)]


def kept_neurons(model: MaskedBonitoCRF) -> tuple[int, ...]:
    """Neurons per layer whose deterministic gate is on (what shrinking would keep)."""
    return tuple(int(keep_mask(layer.log_alpha.detach()).sum()) for layer in model.masked_layers())


def l0_penalty(model: MaskedBonitoCRF) -> Tensor:
    """The paper's eq. 4 without lambda: expected weights that stay nonzero, a scalar.

    Per layer with p_k = P(s_k != 0) and input size I: I * sum p (the rows of W_ih)
    + sum_{k != l} p_k p_l (off-diagonal W_hh) + sum p (diagonal W_hh). I is the
    layer's real input size; the reference hard-codes 384 (its every layer's).
    """
    terms = []
    for layer in model.masked_layers():
        p = nonzero_probability(layer.log_alpha)
        mass = p.sum()
        terms.append(layer.rnn.input_size * mass + (mass * mass - (p * p).sum()) + mass)
    return torch.stack(terms).sum()


def delayed_lambda(step: int, *, warmup_steps: int, initial: float = 5e-8, target: float) -> float:
    """Delayed masking: a small lambda while the network learns, the target from ``warmup_steps`` on."""
    return initial if step < warmup_steps else target


def to_checkpoint_state(model: MaskedBonitoCRF) -> dict[str, Tensor]:
    """The layer-list names (``encoder.{i}.conv|rnn|linear.*``) + ``encoder.{i}.log_alpha``, detached copies."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def from_checkpoint_state(config: ModelConfig, state: dict[str, Tensor]) -> MaskedBonitoCRF:
    """Rebuild a model from ``to_checkpoint_state`` output; strict about names and shapes."""
    model = MaskedBonitoCRF(config)
    try:
        model.load_state_dict(upgrade_format1_state(config, state), strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise EdgecallError(f"{config.name}: weights do not fit the gated model ({detail})") from None
    return model


def from_loaded(ckpt: LoadedCheckpoint) -> MaskedBonitoCRF:
    """Start from any checkpoint edgecall reads; a dense one gets fresh gates (all on)."""
    return from_checkpoint_state(ckpt.config, _gated_state(ckpt))


def _gated_state(ckpt: LoadedCheckpoint) -> dict[str, Tensor]:
    """``ckpt``'s weights plus a ``log_alpha`` per layer: its own masks, else fresh gates."""
    state = dict(ckpt.state)
    fresh = MaskedBonitoCRF(ckpt.config).masked_layers()
    for k, (i, layer) in enumerate(zip(recurrent_indices(ckpt.config.encoder.sublayers), fresh)):
        state[gate_key(i)] = ckpt.log_alpha[k] if ckpt.log_alpha is not None else layer.log_alpha.detach()
    return state


def crf_head_sources(old_state_len: int, new_state_len: int) -> list[list[int]]:
    """For each output of a ``new_state_len`` CRF head, the old head's outputs it stands for.

    Output ``s*4 + j`` scores the (L+1)-mer ``j`` (oldest base) then ``s`` (newest in
    the low bits). A new output stands for every old one whose newest
    ``min(L_old, L_new) + 1`` bases agree with its own: a shorter state merges the
    k-mers that differ only in the bases it forgets, a longer one copies.
    """
    def kmer(index: int, state_len: int) -> int:  # output index -> (L+1)-mer, oldest base highest
        return (index & 3) * 4**state_len + (index >> 2)

    shared = 4 ** (min(old_state_len, new_state_len) + 1)
    by_suffix: dict[int, list[int]] = {}
    for old in range(4 ** (old_state_len + 1)):
        by_suffix.setdefault(kmer(old, old_state_len) % shared, []).append(old)
    return [by_suffix[kmer(new, new_state_len) % shared] for new in range(4 ** (new_state_len + 1))]


def from_pretrained(ckpt: LoadedCheckpoint, config: ModelConfig) -> MaskedBonitoCRF:
    """A gated model with ``config`` started from ``ckpt``'s weights (Bonito's ``--pretrained``).

    Everything but the CRF state length and the LSTM widths must match. With another
    state length the head is re-derived: each new output's weights and bias are the
    mean of the old outputs it stands for (:func:`crf_head_sources`), so the new head
    starts from the old one's average score instead of from noise (sparse-sl3, state_len
    4 -> 3, was at 0.846 lambda identity after 200 steps; its source at 0.875). Wider
    LSTMs keep every old neuron and add new ones (:func:`widened_state`): the model
    computes what ``ckpt`` did at step 0 and has room to learn more.
    """
    old_len, new_len = ckpt.config.state_len, config.state_len
    old_sizes, new_sizes = ckpt.config.encoder.hidden_sizes, config.encoder.hidden_sizes
    base = ckpt.config.with_state_len(new_len)
    if len(old_sizes) == len(new_sizes):
        base = base.replace(encoder=base.encoder.with_hidden_sizes(new_sizes))
    if base.replace(name=config.name, decoder=config.decoder) != config:
        raise EdgecallError(
            f"{ckpt.source}: its model differs from this run's in more than the CRF state length and LSTM widths; "
            "start from it without size options (--layers, --features, --config)"
        )
    check_widening(ckpt.source, old_sizes, new_sizes)
    state = _gated_state(ckpt)
    if new_sizes != old_sizes:
        state = widened_state(ckpt.config, state, config.with_state_len(old_len))
    if new_len != old_len:
        rows = crf_head_sources(old_len, new_len)
        head = config.encoder.head_index
        if config.blank_score is None:
            raise EdgecallError(f"{ckpt.source}: changing the state length of a learned-stay CRF head is not supported")
        for name in (weight_key(config, head, "weight"), weight_key(config, head, "bias")):
            old = state[name]
            state[name] = torch.stack([old[r].mean(dim=0) for r in rows])
    return from_checkpoint_state(config, state)


def check_widening(source: object, old_sizes: Sequence[int], new_sizes: Sequence[int]) -> None:
    """Refuse LSTM widths below a checkpoint's: starting from it only widens (:func:`widened_state`); a model
    narrows by pruning, which keeps the neurons that matter instead of cutting arbitrary ones."""
    if not old_sizes or any(new < old for old, new in zip(old_sizes, new_sizes)):
        raise EdgecallError(
            f"{source}: its LSTMs ({', '.join(map(str, old_sizes)) or 'none'}) are wider than asked "
            f"({', '.join(map(str, new_sizes))}); starting from a model only widens it (new neurons start with "
            "zero weight on the output), a model narrows by pruning"
        )


def widened_state(old: ModelConfig, state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """``state`` of ``old`` grown to ``config``'s wider LSTMs, computing the same function (Net2Net-style).

    Each old neuron keeps its weights and gets zero weights from the new neurons; each
    new neuron starts as a fresh layer's would (random weights in, a fresh gate) but
    its output feeds the next layer through zero weights. So at step 0 the new
    neurons change nothing, and the first gradient reaches them through those zero
    weights (which see their non-zero output) before flowing back into them.
    """
    grown = {k: v.detach().clone() for k, v in MaskedBonitoCRF(config).state_dict().items()}
    old_layers, new_layers = old.encoder.sublayers, config.encoder.sublayers
    for index, (was, now) in enumerate(zip(old_layers, new_layers)):
        if isinstance(now, Recurrent):
            h, h_new = was.size, now.size
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                key = recurrent_key(index, name)
                for g in range(LSTM_GATES):
                    rows = slice(g * h_new, g * h_new + h)
                    source = state[key][g * h:(g + 1) * h]
                    if source.dim() == 1:
                        grown[key][rows] = source
                    else:
                        grown[key][rows] = 0.0
                        grown[key][rows, : source.shape[1]] = source
            grown[gate_key(index)][:h] = state[gate_key(index)]
        else:
            for key in [k for k in state if k.startswith(f"encoder.{index}.")]:
                if grown[key].shape == state[key].shape:
                    grown[key] = state[key].clone()
                else:  # a consumer of a widened LSTM: old inputs copied, new inputs weighted zero
                    grown[key].zero_()
                    grown[key][:, : state[key].shape[1]] = state[key]
    return grown
