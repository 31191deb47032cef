"""The training loop learns, logs, writes loadable checkpoints, and resumes bit for bit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgecall.config import ModelConfig, rnn_encoder_config  # noqa: E402
from edgecall.model.checkpoint import load_checkpoint  # noqa: E402
from edgecall.train.loop import (  # noqa: E402
    LOG_COLUMNS, Batch, TrainOptions, _grouped_optimizer_state, _optimizer, checkpoints, learning_rate, train,
)
from edgecall.edit_distance import edit_distance  # noqa: E402
from edgecall.train.masked_model import MaskedBonitoCRF  # noqa: E402

TINY = ModelConfig(
    name="tiny",
    encoder=rnn_encoder_config(conv_channels=(4, 16, 16), hidden_sizes=(8, 8, 8, 8, 8), state_len=2),
)
CHUNK, BATCH, BASES = 500, 4, 40  # 100 frames per chunk


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def synthetic(seed: int) -> Batch:
    """Random bases and a signal that steps with them (a toy pore: one level per base, 8-16 samples each)."""
    rng = np.random.default_rng(seed)
    levels = np.array([-1.2, -0.4, 0.4, 1.2], np.float32)
    signal = np.zeros((BATCH, 1, CHUNK), np.float32)
    targets = rng.integers(1, 5, (BATCH, BASES))
    lengths = np.zeros(BATCH, np.int64)
    for n in range(BATCH):
        pos = 0
        for i, base in enumerate(targets[n]):
            dwell = int(rng.integers(8, 17))
            if pos + dwell > CHUNK:
                break
            signal[n, 0, pos : pos + dwell] = levels[base - 1] + 0.1 * rng.standard_normal(dwell)
            pos += dwell
            lengths[n] = i + 1
        targets[n, lengths[n] :] = 0
    return torch.from_numpy(signal), torch.from_numpy(targets), torch.from_numpy(lengths)


def options(out: Path, **kw) -> TrainOptions:
    base = TrainOptions(
        out_dir=out, steps=6, batch_size=BATCH, chunksize=CHUNK, lr=5e-3, warmup_steps=2, min_lr=1e-4,
        lambda_initial=1e-6, lambda_target=1e-4, lambda_step=4, log_every=2, checkpoint_every=3,
        validate_every=3, seed=7, threads=1,
    )
    return replace(base, **kw)


def test_loss_decreases_on_a_fixed_batch(tmp_path: Path) -> None:
    batch = synthetic(0)
    result = train(TINY, options(tmp_path, steps=25, lambda_step=100, checkpoint_every=100), lambda step: batch)
    assert result.step == 25 and len(result.losses) == 25
    assert np.mean(result.losses[-3:]) < 0.9 * np.mean(result.losses[:3])


def test_resume_after_interruption_is_bit_exact(tmp_path: Path) -> None:
    val = synthetic(99)
    straight = train(TINY, options(tmp_path / "a"), synthetic, val)

    class Interrupted(Exception):
        pass

    def crashing(step: int) -> Batch:
        if step == 4:  # after the checkpoint at step 3 and one more step that is lost
            raise Interrupted
        return synthetic(step)

    with pytest.raises(Interrupted):
        train(TINY, options(tmp_path / "b"), crashing, val)
    assert [s for s, _ in checkpoints(tmp_path / "b")] == [3]
    resumed = train(TINY, options(tmp_path / "b"), synthetic, val)
    assert resumed.losses == straight.losses[3:]
    a = load_checkpoint(straight.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    assert a.state.keys() == b.state.keys()
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert all(torch.equal(x, y) for x, y in zip(a.log_alpha, b.log_alpha))
    log_a = (tmp_path / "a" / "train.tsv").read_text().splitlines()
    log_b = (tmp_path / "b" / "train.tsv").read_text().splitlines()
    assert [r.split("\t")[:6] for r in log_a] == [r.split("\t")[:6] for r in log_b]  # same rows, no duplicates


def test_batches_made_ahead_in_a_thread_give_the_same_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a GPU run does (the next batch made while the step runs), here on the CPU: the same losses and weights,
    and a data failure still ends the run at its own step, after the checkpoint before it."""
    from edgecall.train import loop

    val = synthetic(99)
    plain = train(TINY, options(tmp_path / "plain"), synthetic, val)
    monkeypatch.setattr(loop, "_make_ahead", lambda device: True)
    made: list[int] = []

    def watched(step: int) -> Batch:
        made.append(step)
        return synthetic(step)

    ahead = train(TINY, options(tmp_path / "ahead"), watched, val)
    assert made == list(range(6)) and ahead.losses == plain.losses
    a, b = load_checkpoint(plain.checkpoint), load_checkpoint(ahead.checkpoint)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)

    def failing(step: int) -> Batch:
        if step == 4:
            raise ValueError("chunk 4 is unreadable")
        return synthetic(step)

    with pytest.raises(ValueError, match="chunk 4 is unreadable"):
        train(TINY, options(tmp_path / "failing"), failing, val)
    assert [s for s, _ in checkpoints(tmp_path / "failing")] == [3]


def test_checkpoint_is_an_edgecall_checkpoint(tmp_path: Path) -> None:
    result = train(TINY, options(tmp_path, steps=3), synthetic, synthetic(99))
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.kind == "edgecall" and ckpt.config == TINY
    assert [tuple(a.shape) for a in ckpt.log_alpha] == [(8,)] * 5
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["step"] == 3 and raw["options"]["seed"] == 7 and {"torch", "numpy", "python"} <= set(raw["rng"])
    header, *rows = (tmp_path / "train.tsv").read_text().splitlines()
    assert tuple(header.split("\t")) == LOG_COLUMNS
    last = dict(zip(LOG_COLUMNS, rows[-1].split("\t")))
    assert last["step"] == "3" and last["kept"] == "8,8,8,8,8"
    assert 0.0 <= float(last["val_accuracy"]) <= 1.0 and float(last["val_loss"]) > 0
    assert not list(tmp_path.glob(".*.tmp"))
    pytest.importorskip("onnx")
    from edgecall.export.compile import compile_checkpoint

    assert compile_checkpoint(result.checkpoint, tmp_path / "pkg").kept == (8, 8, 8, 8, 8)


def test_schedules() -> None:
    opts = options(Path("."), steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-5)
    assert learning_rate(0, opts) == pytest.approx(1e-4)
    assert learning_rate(9, opts) == pytest.approx(1e-3)
    assert learning_rate(10, opts) == pytest.approx(1e-3)
    assert learning_rate(55, opts) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(100, opts) == pytest.approx(1e-5)


def test_edit_distance() -> None:
    def ed(a: str, b: str) -> int:
        return edit_distance(np.frombuffer(a.encode(), np.uint8), np.frombuffer(b.encode(), np.uint8))

    assert ed("", "") == 0 and ed("ACGT", "") == 4 and ed("", "AC") == 2
    assert ed("ACGT", "ACGT") == 0 and ed("ACGT", "AGT") == 1 and ed("kitten", "sitting") == 3
    assert ed("AAAATTTT", "TTTTAAAA") == 8 and ed("GATTACA", "GCATGCU") == 4


def test_gate_lr_scale_moves_only_the_gates_faster(tmp_path: Path) -> None:
    batch = synthetic(0)
    slow = train(TINY, options(tmp_path / "a", steps=5, lambda_step=0, lambda_target=1e-3), lambda step: batch)
    fast = train(TINY, options(tmp_path / "b", steps=5, lambda_step=0, lambda_target=1e-3, gate_lr_scale=10.0),
                 lambda step: batch)
    a, b = load_checkpoint(slow.checkpoint), load_checkpoint(fast.checkpoint)
    torch.manual_seed(7)  # the runs' seed: the model both started from
    start = [layer.log_alpha.detach() for layer in MaskedBonitoCRF(TINY).masked_layers()]
    moved = [float((y - x).abs().max()) for x, y in zip(start, a.log_alpha)]
    moved_fast = [float((y - x).abs().max()) for x, y in zip(start, b.log_alpha)]
    assert all(m > 0 and f > 5 * m for f, m in zip(moved_fast, moved))
    weights_a, weights_b = a.state["encoder.9.linear.weight"], b.state["encoder.9.linear.weight"]
    assert torch.allclose(weights_a, weights_b, atol=1e-2)  # the weights' own lr is unchanged


def test_single_group_optimizer_state_resumes_into_two_groups() -> None:
    torch.manual_seed(0)
    model = MaskedBonitoCRF(TINY)
    single = torch.optim.Adam(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    single.step()
    grouped = _optimizer(model, options(Path(".")))
    grouped.load_state_dict(_grouped_optimizer_state(single.state_dict(), model))
    assert [len(g["params"]) for g in grouped.param_groups] == [len(list(model.parameters())) - 5, 5]
    for p in model.parameters():
        assert torch.equal(grouped.state[p]["exp_avg"], single.state[p]["exp_avg"])
        assert torch.equal(grouped.state[p]["exp_avg_sq"], single.state[p]["exp_avg_sq"])


def test_cuda_without_a_gpu_is_one_clear_line(tmp_path: Path) -> None:
    from edgecall.errors import EdgecallError

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(EdgecallError, match=r"--device cuda: PyTorch .* sees no CUDA GPU; train with --device cpu"):
        train(TINY, options(tmp_path / "run", device="cuda"), synthetic)
    with pytest.raises(EdgecallError, match="expected cpu, cuda or cuda:N"):
        options(tmp_path, device="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cpu_checkpoint_resumes_on_the_gpu_and_back(tmp_path: Path) -> None:
    train(TINY, options(tmp_path / "run", steps=3), synthetic)
    train(TINY, options(tmp_path / "run", steps=6, device="cuda"), synthetic)
    result = train(TINY, options(tmp_path / "run", steps=9), synthetic)
    state = torch.load(result.checkpoint, weights_only=True)
    assert result.step == 9 and all(v.device.type == "cpu" for v in state["model_state"].values())


def test_precision_defaults_to_the_devices_own_and_refuses_emulated_bf16(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from edgecall.devices import precision as cpu_precision
    from edgecall.errors import EdgecallError
    from edgecall.train.loop import network_precision

    assert network_precision(options(tmp_path)) == "f32"
    assert network_precision(options(tmp_path, device="cuda")) == "bf16"
    assert network_precision(options(tmp_path, device="cuda", precision="f32")) == "f32"
    with pytest.raises(EdgecallError, match="--precision fp8: expected auto, f32, bf16"):
        options(tmp_path, precision="fp8")
    monkeypatch.setattr(cpu_precision, "native_precisions", lambda flags=None: ())
    with pytest.raises(EdgecallError, match=r"--precision bf16 --device cpu: this CPU .* no native bf16 .*torch would "
                                            r"emulate it.*use --precision f32"):
        train(TINY, options(tmp_path / "run", precision="bf16"), synthetic)
    assert not (tmp_path / "run" / "checkpoint_00000003.pt").exists()


def test_bf16_on_the_cpu_runs_the_network_in_bf16_and_resumes_in_f32(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the CPU has native bf16 the network trains under bf16 autocast; weights, optimiser and checkpoints stay
    f32, so the run goes on in either precision (forced native here: torch emulates bf16 elsewhere, only slower)."""
    from edgecall.devices import precision as cpu_precision

    monkeypatch.setattr(cpu_precision, "native_precisions", lambda flags=None: ("bf16",))
    seen: list[torch.dtype] = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(out.dtype) if isinstance(module, MaskedBonitoCRF) else None)
    try:
        bf16 = train(TINY, options(tmp_path / "bf16", steps=3, precision="bf16"), synthetic)
        assert seen == [torch.bfloat16] * 3
        seen.clear()
        f32 = train(TINY, options(tmp_path / "f32", steps=3), synthetic)
        assert seen == [torch.float32] * 3
    finally:
        hook.remove()
    assert all(np.isfinite(bf16.losses)) and bf16.losses != f32.losses
    assert np.allclose(bf16.losses, f32.losses, rtol=0.05)  # the same run, to bf16's rounding
    state = torch.load(bf16.checkpoint, weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["model_state"].values() if v.is_floating_point())
    resumed = train(TINY, options(tmp_path / "bf16", steps=6), synthetic)
    assert resumed.step == 6 and all(np.isfinite(resumed.losses))
