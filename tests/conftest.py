"""Shared fixtures. Real data lives in ../shared/data beside the checkout; tests that need it skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """Without a CUDA GPU, Triton's kernels run in its interpreter on CPU tensors (tests/test_crf_triton.py). The
    switch is read when triton is first imported, so it is set here, before any test imports it."""
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared test-data folder (see its MANIFEST.md), or skip the test."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_crf_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sparse CRF checkpoint compiled to a package (random weights: mechanics only)."""
    pytest.importorskip("torch")
    from factories import write_efficient_basecallers

    from edgecall.config import BasecallerConfig, ModelConfig
    from edgecall.export.compile import compile_checkpoint

    root = tmp_path_factory.mktemp("tiny_crf")
    ckpt = write_efficient_basecallers(root / "tiny.pt", (9, 5, 7, 9, 12), hidden=16, features=16)
    base = ModelConfig(basecaller=BasecallerConfig(chunksize=2000, overlap=250, batchsize=16))
    # unpadded LSTMs (--lstm-multiple 1): the int8 tests quantise it, and int8 breaks zeroed padding neurons
    compile_checkpoint(ckpt, root / "tiny.edgecall", targets=["CPU"], name="tiny", base_config=base, lstm_multiple=1)
    return root / "tiny.edgecall"


@pytest.fixture()
def torch_one_thread():
    """Tiny models run fastest on one thread; several spin-wait badly on a shared CPU."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
