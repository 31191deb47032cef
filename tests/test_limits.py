"""--threads reaches every backend; --max-memory sizes the buffers or says it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecall.errors import EdgecallError
from edgecall.package import load_package
from edgecall.runtime.backends import open_backend
from edgecall.runtime.pipeline import Basecaller, RunOptions, batch_bytes


def test_threads_cap_openvino_and_onnxruntime() -> None:
    package = load_package("deepnano-blitz-w48")
    ov = open_backend(package, "CPU", batch_size=4, chunksize=1560, threads=1)
    assert int(ov._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    ort = open_backend(package, "ort", batch_size=4, chunksize=1560, threads=1)
    assert ort._session.get_session_options().intra_op_num_threads == 1


def test_max_memory_shrinks_batch_and_queues(tiny_crf_package: Path) -> None:
    package = load_package(tiny_crf_package)
    one = batch_bytes(package.config, 2000, 1)
    roomy = Basecaller(package, RunOptions(max_memory=10**10))
    assert roomy.batch_size == 16 and roomy.queue_depth == 4
    tight = Basecaller(package, RunOptions(max_memory=2 * 7 * 4 * one))  # fits batch 4 at depth <= 2 only
    assert tight.batch_size * (3 * tight.queue_depth + 2) * one <= 7 * 4 * one
    assert tight.batch_size < 16
    with pytest.raises(EdgecallError, match="--max-memory .* too small"):
        Basecaller(package, RunOptions(max_memory=one))
