"""The GPU's Triton lattice scans give the CPU's loss and gradient (run by Triton's interpreter on CPU tensors),
and a GPU whose Triton cannot run them falls back to the torch loops with one line on stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")
triton = pytest.importorskip("triton", reason="Triton (test extra on Linux x86-64; bundled with CUDA torch)")

from edgecall.train import crf_loss as module  # noqa: E402
from edgecall.train.crf_loss import crf_loss  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture
def interpreted() -> ModuleType:
    """``crf_triton`` with its kernels in Triton's interpreter, which conftest.py switches on where there is no GPU."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton's interpreter is off (a CUDA GPU is here: the compiled kernels are tested instead)")
    if tuple(int(x) for x in triton.__version__.split(".")[:2]) < (3, 7):
        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run loops over a runtime bound (3.7 can)")
    from edgecall.train import crf_triton

    return crf_triton


def loss_and_grad(scores: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, state_len: int,
                  lattice: str) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = scores.clone().requires_grad_(True)
    loss = crf_loss(leaf, targets, lengths, state_len=state_len, lattice=lattice)
    loss.backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("state_len", [2, 3, 4])
def test_triton_scans_equal_the_numba_ones(interpreted: ModuleType, state_len: int) -> None:
    """Both lattices, the normaliser's posteriors and the target's, against the CPU's (itself tested by brute force)."""
    gen = torch.Generator().manual_seed(10 + state_len)
    frames, batch, width = 24, 4, 16
    scores = torch.rand(frames, batch, 4 ** (state_len + 1), generator=gen) * 10 - 5
    targets = torch.randint(1, 5, (batch, width), generator=gen)
    lengths = torch.tensor([width, 11, state_len + 1, state_len])  # padding, and the shortest target there can be
    loss_t, grad_t = loss_and_grad(scores, targets, lengths, state_len, "triton")
    loss_n, grad_n = loss_and_grad(scores, targets, lengths, state_len, "numba")
    torch.testing.assert_close(loss_t, loss_n, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_t, grad_n, rtol=1e-4, atol=1e-6)
    assert grad_n.abs().sum() > 0


def test_a_target_of_one_kmer_and_a_single_chunk(interpreted: ModuleType) -> None:
    """No move in the target lattice at all (width 0) and a batch of one, the kernels' edge shapes."""
    scores = torch.linspace(-3, 3, 10 * 64).reshape(10, 1, 64)
    targets, lengths = torch.tensor([[2, 4]]), torch.tensor([2])
    loss_t, grad_t = loss_and_grad(scores, targets, lengths, 2, "triton")
    loss_n, grad_n = loss_and_grad(scores, targets, lengths, 2, "numba")
    torch.testing.assert_close(loss_t, loss_n, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_t, grad_n, rtol=1e-4, atol=1e-6)


def test_the_gpu_check_passes_working_kernels(interpreted: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(module, "_GPU_LATTICE", {})
    assert module.triton_problem(torch.device("cpu"), 3) is None
    with torch.no_grad():  # as when a run's first loss is a validation's
        assert module._gpu_lattice(torch.device("cpu"), 3) == "triton"
    assert capsys.readouterr().err == ""


def test_kernels_that_fail_or_disagree_leave_the_gpu_on_the_torch_loops(
    interpreted: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(module, "_GPU_LATTICE", {})

    def broken(*args: object) -> None:
        raise RuntimeError("PTX JIT compilation failed\nmore detail")

    working = interpreted.global_backward
    monkeypatch.setattr(interpreted, "global_backward", broken)
    device = torch.device("cpu")
    assert module._gpu_lattice(device, 3) == "torch"
    assert module._gpu_lattice(device, 3) == "torch"  # decided once per device and state length
    err = capsys.readouterr().err
    assert err == ("edgecall: the CRF loss runs as torch loops on cpu, slower: the Triton kernels failed "
                   "(RuntimeError: PTX JIT compilation failed)\n")

    monkeypatch.setattr(interpreted, "global_backward", working)
    right = interpreted.target_forward

    def off_by_half(moves: torch.Tensor, n_states: torch.Tensor, blank: float, alpha: torch.Tensor) -> None:
        right(moves, n_states, blank, alpha)
        alpha.add_(0.5)  # every target path half a nat too likely: the loss moves, the gradient does not

    monkeypatch.setattr(interpreted, "target_forward", off_by_half)
    assert "disagree with the torch loops" in module.triton_problem(device, 2)


def test_the_lattice_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert module._lattice(cpu, 3, None) == "numba"
    assert module._lattice(cpu, 3, "torch") == "torch"
    monkeypatch.setattr(module, "LATTICE", "torch")
    assert module._lattice(cpu, 3, None) == "torch"
    with pytest.raises(ValueError, match="numba lattice runs on CPU tensors only"):
        module._lattice(torch.device("cuda"), 3, "numba")
    with pytest.raises(ValueError, match="lattice must be one of numba, triton, torch"):
        module._lattice(cpu, 3, "koi")


def test_a_gpu_without_triton_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("No module named 'triton'")

    monkeypatch.setattr(module, "_triton", missing)
    assert module.triton_problem(torch.device("cpu"), 3) == (
        "Triton cannot be imported (No module named 'triton'); it comes with PyTorch's CUDA wheels on Linux")


def test_the_kernels_compile_for_a100_and_h100() -> None:
    """Ahead of time, to cubin, with no GPU here: every kernel at ONT's fast, hac and sup state lengths and at
    short and long targets, with the barrier and the volatile loads in its PTX. The interpreter cannot catch what
    only the compiler refuses."""
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not ptxas.is_file():
        pytest.skip(f"this Triton build has no NVIDIA compiler ({ptxas} is missing)")
    env = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_compile.py")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    kernels = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(kernels) == 2 * (2 * 3 + 2 * 2), done.stdout
    assert {k["kernel"] for k in kernels} == {"_global_forward_kernel", "_global_backward_kernel",
                                              "_target_forward_kernel", "_target_backward_kernel"}
    assert all(k["barrier"] and k["volatile"] for k in kernels), done.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_kernels_on_the_gpu_equal_the_cpu() -> None:
    """The same check as the interpreter's, on the GPU's compiled kernels, at ONT's fast and hac state lengths."""
    for state_len in (3, 4):
        gen = torch.Generator().manual_seed(state_len)
        scores = torch.rand(200, 8, 4 ** (state_len + 1), generator=gen) * 10 - 5
        targets = torch.randint(1, 5, (8, 60), generator=gen)
        lengths = torch.tensor([60, 59, 40, 33, 20, 9, state_len + 1, state_len])
        loss_n, grad_n = loss_and_grad(scores, targets, lengths, state_len, "numba")
        cuda = [t.cuda() for t in (scores, targets, lengths)]
        loss_t, grad_t = loss_and_grad(*cuda, state_len, "triton")
        torch.testing.assert_close(loss_t.cpu(), loss_n, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(grad_t.cpu(), grad_n, rtol=1e-3, atol=1e-6)
