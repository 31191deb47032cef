"""The pure-PyTorch CTC-CRF loss equals brute-force path enumeration and has exact gradients."""

from __future__ import annotations

import itertools
import math

import pytest

torch = pytest.importorskip("torch")

from edgecall.train.crf_loss import crf_loss, global_logz, target_logz  # noqa: E402

BLANK = 2.0


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def brute_force(scores: torch.Tensor, target: list[int], state_len: int) -> tuple[float, float]:
    """(logZ, log-score of the target) for one chunk's (T, C) scores, by enumerating every path.

    A path is a start state plus, per frame, a stay or a move adding base d. It spells
    the start k-mer's bases (oldest first) followed by each move's new base.
    """
    frames = scores.shape[0]
    states, msb = 4**state_len, 4 ** (state_len - 1)
    every, spelled = [], []
    for start in range(states):
        kmer = [(start >> (2 * (state_len - 1 - i))) & 3 for i in range(state_len)]
        for actions in itertools.product(range(5), repeat=frames):
            state, score, bases = start, 0.0, list(kmer)
            for t, action in enumerate(actions):
                if action == 4:
                    score += BLANK
                    continue
                j = state // msb  # the predecessor's oldest base, dropped by the move
                state = ((state << 2) % states) + action
                score += float(scores[t, state * 4 + j])
                bases.append(action)
            every.append(score)
            if [b + 1 for b in bases] == target:
                spelled.append(score)

    def lse(xs: list[float]) -> float:
        return math.log(sum(math.exp(x) for x in xs)) if xs else float("-inf")

    return lse(every), lse(spelled)


CASES = [(1, 4, [1, 2, 2]), (1, 5, [3, 3, 1, 4]), (1, 5, [2, 2, 2, 2, 2]), (2, 3, [1, 2, 3]), (2, 4, [4, 4, 4, 1]),
         (1, 3, [1, 2, 3, 4]), (2, 4, [1, 2, 3, 4, 1])]  # the last two: a move every frame, or all but one


@pytest.mark.parametrize(("state_len", "frames", "target"), CASES)
def test_matches_brute_force(state_len: int, frames: int, target: list[int]) -> None:
    g = torch.Generator().manual_seed(len(target) * 10 + frames)
    scores = torch.randn(frames, 2, 4 ** (state_len + 1), generator=g, dtype=torch.float64) * 2
    short = target[:state_len]  # a target that is only the start k-mer: all stays
    targets = torch.tensor([target + [0], short + [0] * (len(target) + 1 - state_len)])
    lengths = torch.tensor([len(target), state_len])
    logz = global_logz(scores, state_len=state_len, blank_score=BLANK)
    spelled = target_logz(scores, targets, lengths, state_len=state_len, blank_score=BLANK)
    expected_loss = []
    for n in range(2):
        z, s = brute_force(scores[:, n], targets[n, : lengths[n]].tolist(), state_len)
        assert float(logz[n]) == pytest.approx(z, abs=1e-10)
        assert float(spelled[n]) == pytest.approx(s, abs=1e-10)
        expected_loss.append(-(s - z) / int(lengths[n]))
    loss = crf_loss(scores, targets, lengths, state_len=state_len, blank_score=BLANK)
    assert float(loss) == pytest.approx(sum(expected_loss) / 2, abs=1e-10)
    raw = crf_loss(scores, targets, lengths, state_len=state_len, blank_score=BLANK, normalise=False)
    assert float(raw) == pytest.approx(float(-(spelled / lengths).mean()), abs=1e-10)


def test_gradient_is_exact() -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(6, 3, 64, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, 2, 3, 4, 1], [2, 2, 0, 0, 0], [4, 1, 3, 3, 0]])
    lengths = torch.tensor([5, 2, 4])
    assert torch.autograd.gradcheck(lambda s: crf_loss(s, targets, lengths, state_len=2), (scores,))
    small = scores[:, :, :16].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda s: global_logz(s, state_len=1), (small,))


def log_space_logz(scores: torch.Tensor, state_len: int) -> torch.Tensor:
    """Plain log-space forward over bonito's (state, stay + 4 moves) layout, as a second opinion."""
    frames, batch, _ = scores.shape
    states, msb = 4**state_len, 4 ** (state_len - 1)
    pred = torch.tensor([[(s >> 2) + j * msb for j in range(4)] for s in range(states)])
    alpha = torch.zeros(batch, states, dtype=scores.dtype)
    for t in range(frames):
        moves = alpha[:, pred] + scores[t].view(batch, states, 4)
        alpha = torch.logsumexp(torch.cat([alpha[:, :, None] + BLANK, moves], dim=2), dim=2)
    return torch.logsumexp(alpha, dim=1)


def test_long_chunks_in_float32_match_log_space() -> None:
    """The rescaled probability-space normaliser keeps float32 accuracy over many frames."""
    g = torch.Generator().manual_seed(2)
    scores = torch.tanh(torch.randn(300, 3, 256, generator=g) * 3) * 5  # the head's range
    got = global_logz(scores, state_len=3)
    expected = log_space_logz(scores.double(), 3)
    assert torch.allclose(got.double(), expected, rtol=1e-5)


def test_normalised_loss_is_non_negative_and_grad_finite() -> None:
    g = torch.Generator().manual_seed(3)
    frames, batch, state_len, length = 120, 4, 4, 60
    scores = (torch.tanh(torch.randn(frames, batch, 1024, generator=g)) * 5).requires_grad_()
    targets = torch.randint(1, 5, (batch, length), generator=g)
    lengths = torch.tensor([60, 45, 30, 4])
    loss = crf_loss(scores, targets, lengths, state_len=state_len)
    assert loss.item() >= 0.0
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert crf_loss(scores, targets, lengths, state_len=state_len, loss_clip=0.5).item() <= 0.5


def test_impossible_targets_are_refused() -> None:
    scores = torch.zeros(3, 1, 64)
    with pytest.raises(ValueError, match="frames"):
        target_logz(scores, torch.tensor([[1, 2, 3, 4, 1, 2]]), torch.tensor([6]), state_len=2)
    with pytest.raises(ValueError, match="target lengths"):
        target_logz(scores, torch.tensor([[1, 0]]), torch.tensor([1]), state_len=2)
    with pytest.raises(ValueError, match="state_len"):
        global_logz(scores, state_len=3)


@pytest.mark.parametrize(("state_len", "frames"), [(3, 300), (4, 300), (3, 137)])
def test_numba_lattice_equals_the_torch_loop(monkeypatch: pytest.MonkeyPatch, state_len: int, frames: int) -> None:
    """The CPU's numba scans (float32: banded, vectorised exp and log) and the torch loops (the reference) give the
    same loss and gradient, normaliser included. At 137 frames the longest target moves every frame."""
    from edgecall.train import crf_loss as module

    gen = torch.Generator().manual_seed(state_len)
    batch, width = 4, 140
    scores = (torch.rand(frames, batch, 4 ** (state_len + 1), generator=gen) * 10 - 5)
    targets = torch.randint(1, 5, (batch, width), generator=gen)
    lengths = torch.tensor([width, 90, 41, state_len])  # padding, and the shortest target there can be
    results = []
    for numba in (True, False):
        monkeypatch.setattr(module, "LATTICE", "numba" if numba else "torch")
        leaf = scores.clone().requires_grad_(True)
        loss = crf_loss(leaf, targets, lengths, state_len=state_len)
        loss.backward()
        results.append((loss.detach(), leaf.grad))
    (loss_a, grad_a), (loss_b, grad_b) = results
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-4, atol=1e-6)
    assert grad_a.abs().sum() > 0
