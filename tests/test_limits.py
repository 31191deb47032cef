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


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in Linux's /proc")
def test_the_command_line_starts_no_blas_threads() -> None:
    """numpy's OpenBLAS would start a spinning thread per further core; the CLI asks it for one thread, as a
    user's own OPENBLAS_NUM_THREADS may not."""
    import os
    import subprocess
    import sys

    count = "import os, sys; {}; import numpy; print(len(os.listdir('/proc/self/task')))"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "GOTO_NUM_THREADS")}

    def threads(first: str) -> int:
        return int(subprocess.run([sys.executable, "-c", count.format(first)], env=env, check=True,
                                  capture_output=True, text=True).stdout)

    assert threads("import edgecall.cli") == 1
    if (os.cpu_count() or 1) > 1:  # without it, the pool this guards against is there
        assert threads("pass") > 1
    env["OPENBLAS_NUM_THREADS"] = "2"
    if (os.cpu_count() or 1) > 1:
        assert threads("import edgecall.cli") > 1  # the user's setting stands


def test_crf_decoding_takes_every_thread_where_the_network_runs_in_reduced_precision(tiny_crf_package: Path) -> None:
    caller = Basecaller(load_package(tiny_crf_package), RunOptions(threads=4))
    try:
        assert caller.backend.precision == "f32"
        assert caller._chunk_decoders() == 2  # half: beside an f32 network a second decoder only contends
        caller.backend.precision = "bf16"  # as open_backend sets it where the CPU runs bf16 natively
        assert caller._chunk_decoders() == 4
    finally:
        caller.close()
    single = Basecaller(load_package(tiny_crf_package), RunOptions(threads=1))
    single.backend.precision = "bf16"
    assert single._chunk_decoders() == 1
    single.close()


def test_the_command_line_keeps_compiled_kernels_in_the_users_cache(tmp_path: Path) -> None:
    """Not beside the installed sources, where files pip never installed outlive an uninstall (and hid a later
    editable install); a user's own NUMBA_CACHE_DIR stands."""
    import os
    import subprocess
    import sys

    show = "import edgecall.cli, numba; print(numba.config.CACHE_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")

    def cache_dir() -> str:
        return subprocess.run([sys.executable, "-c", show], env=env, check=True, capture_output=True, text=True).stdout.strip()

    assert cache_dir() == str(tmp_path / "xdg" / "edgecall" / "numba")
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    assert cache_dir() == str(tmp_path / "mine")
