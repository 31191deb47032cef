"""The gated training model: eval mode is the masked dense model that shrink/compile reproduce."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from factories import write_efficient_basecallers  # noqa: E402

from edgecall.config import ModelConfig, rnn_encoder_config  # noqa: E402
from edgecall.errors import EdgecallError  # noqa: E402
from edgecall.export.compile import compile_checkpoint  # noqa: E402
from edgecall.export.shrink import BETA, GAMMA, ZETA, keep_mask, masked_state  # noqa: E402
from edgecall.model.checkpoint import EDGECALL_FORMAT, LoadedCheckpoint, load_checkpoint  # noqa: E402
from edgecall.model.crf import BonitoCRF, build_model  # noqa: E402
from edgecall.train.masked_model import (  # noqa: E402
    INIT_FULLY_ON_PROBABILITY, MaskedBonitoCRF, crf_head_sources, delayed_lambda, from_checkpoint_state, from_loaded,
    from_pretrained, kept_neurons, l0_penalty, sample_gate, to_checkpoint_state,
)

TINY = ModelConfig(
    name="tiny",
    encoder=rnn_encoder_config(conv_channels=(4, 16, 16), hidden_sizes=(8, 8, 8, 8, 8), state_len=2),
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def sparse_model(seed: int = 0) -> MaskedBonitoCRF:
    """A tiny model with about half of every layer's neurons switched off."""
    torch.manual_seed(seed)
    model = MaskedBonitoCRF(TINY)
    with torch.no_grad():
        for layer in model.masked_layers():
            off = torch.rand(layer.log_alpha.shape) < 0.5
            off[0] = False  # every layer keeps a neuron, so the model can be shrunk
            layer.log_alpha[off] = -2.0
    return model.eval()


def save(model: MaskedBonitoCRF, path: Path) -> Path:
    obj = {"format": EDGECALL_FORMAT, "config": model.config.to_toml(), "model_state": to_checkpoint_state(model)}
    torch.save(obj, path)
    return path


def signal(seed: int = 1, samples: int = 1000) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 1, samples)).astype(np.float32))


def test_state_dict_is_canonical_plus_log_alpha() -> None:
    names = set(MaskedBonitoCRF(TINY).state_dict())
    canonical = set(BonitoCRF(TINY).state_dict())
    assert names == canonical | {f"encoder.{i}.log_alpha" for i in range(4, 9)}


def test_eval_model_equals_shrink_masked_state(tmp_path: Path) -> None:
    model = sparse_model()
    ckpt = load_checkpoint(save(model, tmp_path / "m.pt"))
    assert ckpt.kind == "edgecall" and ckpt.config == TINY
    assert [int(keep_mask(a).sum()) for a in ckpt.log_alpha] == list(kept_neurons(model))
    with torch.no_grad():
        expected = build_model(ckpt.config, masked_state(ckpt))(signal())
        got = model(signal())
    assert (got - expected).abs().max() <= 1e-5
    rebuilt = from_checkpoint_state(TINY, to_checkpoint_state(model)).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(signal()), got)


def test_compiled_onnx_matches_eval_model(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = sparse_model(3)
    result = compile_checkpoint(save(model, tmp_path / "m.pt"), tmp_path / "pkg")
    assert result.kept == kept_neurons(model) and result.kept != TINY.encoder.hidden_sizes
    x = signal(4, 2000)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(tmp_path / "pkg" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"signal": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4


def test_seed_paper_checkpoint_loads_as_gated_model(tmp_path: Path) -> None:
    path = write_efficient_basecallers(tmp_path / "s.pt", (3, 5, 2, 7, 4), hidden=8, features=16, state_len=2)
    ckpt = load_checkpoint(path)
    model = from_loaded(ckpt).eval()
    assert kept_neurons(model) == (3, 5, 2, 7, 4)
    with torch.no_grad():
        expected = build_model(ckpt.config, masked_state(ckpt))(signal())
        assert (model(signal()) - expected).abs().max() <= 1e-5


def test_l0_penalty_is_the_papers_formula() -> None:
    torch.manual_seed(5)
    model = MaskedBonitoCRF(TINY)
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.log_alpha.normal_(0.0, 2.0)
    expected = 0.0
    for layer in model.masked_layers():
        p = [1 / (1 + math.exp(-(a - BETA * math.log(-GAMMA / ZETA)))) for a in layer.log_alpha.tolist()]
        x_norm = layer.rnn.input_size
        expected += sum(x_norm * pi for pi in p)
        expected += sum(pi * pj for i, pi in enumerate(p) for j, pj in enumerate(p) if i != j)
        expected += sum(p)
    penalty = l0_penalty(model)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    penalty.backward()
    assert all(layer.log_alpha.grad is not None and (layer.log_alpha.grad > 0).all() for layer in model.masked_layers())


def test_lambda_switches_exactly_at_warmup() -> None:
    assert delayed_lambda(0, warmup_steps=10, target=2e-6) == 5e-8
    assert delayed_lambda(9, warmup_steps=10, target=2e-6) == 5e-8
    assert delayed_lambda(10, warmup_steps=10, target=2e-6) == 2e-6
    assert delayed_lambda(11, warmup_steps=10, initial=1e-9, target=2e-6) == 2e-6


def test_init_starts_with_about_ninety_percent_on() -> None:
    torch.manual_seed(0)
    model = MaskedBonitoCRF(TINY.replace(encoder=rnn_encoder_config(conv_channels=(4, 16, 16), hidden_sizes=(384,) * 5, state_len=2)))
    alphas = torch.cat([layer.log_alpha.detach() for layer in model.masked_layers()])
    from edgecall.export.shrink import nonzero_probability

    assert nonzero_probability(alphas).mean().item() == pytest.approx(0.995, abs=0.002)
    assert kept_neurons(model) == (384,) * 5  # the deterministic (eval) gate keeps every fresh neuron
    samples = torch.stack([sample_gate(alphas) for _ in range(50)])
    assert (samples == 1.0).float().mean().item() == pytest.approx(INIT_FULLY_ON_PROBABILITY, abs=0.01)
    assert (samples > 0).float().mean().item() == pytest.approx(0.995, abs=0.003)
    assert samples.min() >= 0.0 and samples.max() <= 1.0 and (samples == 1.0).any()


def test_training_gates_are_stochastic_and_learnable() -> None:
    torch.manual_seed(0)
    model = MaskedBonitoCRF(TINY).train()
    x = signal()
    a, b = model(x), model(x)
    assert not torch.equal(a, b)
    # gates clamped at exactly 1 get no gradient from the task loss; the L0 penalty reaches every log alpha
    (a.square().mean() + l0_penalty(model)).backward()
    assert all(layer.log_alpha.grad.abs().sum() > 0 for layer in model.masked_layers())


def test_pretrained_head_merges_and_copies_kmers(tmp_path: Path) -> None:
    path = write_efficient_basecallers(tmp_path / "s.pt", (3, 5, 2, 7, 4), hidden=8, features=16, state_len=2)
    ckpt = load_checkpoint(path)
    old_w, old_b = ckpt.state["encoder.9.linear.weight"], ckpt.state["encoder.9.linear.bias"]
    shorter = from_pretrained(ckpt, TINY.with_state_len(1))
    # state_len 1: output s*4 + j scores the 2-mer (j, s); the 3-mers ending in it are
    # old outputs ((j << 2) | s) * 4 + x for every oldest base x
    for j in range(4):
        for s in range(4):
            sources = [((j << 2) | s) * 4 + x for x in range(4)]
            assert torch.equal(shorter.encoder[9].linear.weight[s * 4 + j], old_w[sources].mean(dim=0))
            assert torch.equal(shorter.encoder[9].linear.bias[s * 4 + j], old_b[sources].mean(dim=0))
    # state_len 3: output s*4 + j (4-mer j, s) copies the old 3-mer of its newest bases: s's
    longer = from_pretrained(ckpt, TINY.with_state_len(3))
    for c in (0, 7, 77, 255):
        s = c >> 2
        assert torch.equal(longer.encoder[9].linear.weight[c], old_w[(s & 15) * 4 + (s >> 4)])
    assert crf_head_sources(2, 2) == [[c] for c in range(64)]
    # everything before the head, masks included, is the checkpoint's
    assert kept_neurons(shorter.eval()) == (3, 5, 2, 7, 4)
    same = from_pretrained(ckpt, TINY)
    with torch.no_grad():
        assert torch.equal(same.eval()(signal()), from_loaded(ckpt).eval()(signal()))
        assert torch.equal(shorter.encoder[8].rnn.weight_hh_l0, same.encoder[8].rnn.weight_hh_l0)
    with pytest.raises(EdgecallError, match="more than the CRF state length and LSTM widths"):
        from_pretrained(ckpt, TINY.replace(encoder=rnn_encoder_config(conv_channels=(4, 16, 16), hidden_sizes=(8,) * 4, state_len=2)))


def test_widened_model_computes_what_it_was_and_learns_with_its_new_neurons() -> None:
    source = sparse_model(seed=3)
    weights = {k: v for k, v in to_checkpoint_state(source).items() if not k.endswith("log_alpha")}
    masks = tuple(layer.log_alpha.detach() for layer in source.masked_layers())
    ckpt = LoadedCheckpoint(Path("s.pt"), "edgecall", "", TINY, weights, masks)
    wider_config = TINY.replace(encoder=TINY.encoder.with_hidden_sizes((12, 8, 16, 12, 9)))
    torch.manual_seed(1)
    wider = from_pretrained(ckpt, wider_config).eval()
    with torch.no_grad():
        x = signal()
        np.testing.assert_allclose(wider(x).numpy(), source(x).numpy(), atol=1e-5)
    # the old masks hold; every new neuron is on
    old, new = kept_neurons(source), kept_neurons(wider)
    assert new == tuple(k + (w - 8) for k, w in zip(old, (12, 8, 16, 12, 9)))
    # the new neurons get gradient in their first step: on their outgoing weights at once
    wider.train()
    wider(signal()).square().mean().backward()
    head = wider.encoder[wider_config.encoder.head_index].linear.weight
    assert head.grad[:, 8:].abs().sum() > 0
    # state length and width change together; a narrower model is refused
    both = from_pretrained(ckpt, wider_config.with_state_len(1))
    assert both.encoder[wider_config.encoder.head_index].linear.weight.shape == (16, 9)
    with pytest.raises(EdgecallError, match="only widens it.*a model narrows by pruning"):
        from_pretrained(ckpt, TINY.replace(encoder=TINY.encoder.with_hidden_sizes((8, 8, 4, 8, 8))))
