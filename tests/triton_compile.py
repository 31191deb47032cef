"""Compiles the GPU loss's Triton kernels ahead of time for NVIDIA GPUs, no GPU needed: Triton's NVIDIA backend
carries its own ptxas. Run in a process of its own, with Triton's interpreter off (tests/test_crf_triton.py).

Prints one JSON line per kernel, architecture and size: its name, registers and local (spilled) bytes per
thread from the cubin, and whether its PTX has the barrier and the volatile loads the scans rely on.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from edgecall.train import crf_triton

ARCHS = (80, 90)  # A100, H100
STATE_LENS = (3, 4, 5)  # ONT's fast, hac and sup
TARGET_BLOCKS = (256, 2048)  # target lattices of up to 255 and 2,047 moves
GLOBAL = {"em_ptr": "*fp32", "stay_ptr": "*fp32", "frames": "i32", "batch": "i32", "MSB": "constexpr"}
TARGET = {"moves_ptr": "*fp32", "n_states_ptr": "*i64", "alpha_ptr": "*fp32", "blank": "fp32", "frames": "i32",
          "batch": "i32", "width": "i32", "BLOCK": "constexpr"}


def signature(kernel, known: dict[str, str]) -> dict[str, str]:  # noqa: ANN001 - a triton JITFunction
    """Every argument's type: the pointers not in ``known`` are float32 lattices."""
    return {name: known.get(name, "*fp32") for name in kernel.arg_names}


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers, local bytes) per thread, as cuobjdump reads them from the cubin."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as fh:
        fh.write(cubin)
        fh.flush()
        text = subprocess.run([str(tool), "--dump-resource-usage", fh.name], capture_output=True, text=True,
                              check=True).stdout
    found = re.search(r"REG:(\d+).*LOCAL:(\d+)", text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


def main() -> None:
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    jobs = []
    for kernel in (crf_triton._global_forward_kernel, crf_triton._global_backward_kernel):
        jobs += [(kernel, signature(kernel, GLOBAL), {"MSB": 4 ** (n - 1)}, crf_triton._warps(4 ** (n + 1)))
                 for n in STATE_LENS]
    for kernel in (crf_triton._target_forward_kernel, crf_triton._target_backward_kernel):
        jobs += [(kernel, signature(kernel, TARGET), {"BLOCK": block}, crf_triton._warps(block))
                 for block in TARGET_BLOCKS]
    for arch in ARCHS:
        for kernel, types, constants, warps in jobs:
            compiled = triton.compile(ASTSource(fn=kernel, signature=types, constexprs=constants),
                                      target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
            registers, local = resources(compiled.asm["cubin"])
            ptx = compiled.asm["ptx"]
            print(json.dumps({"kernel": kernel.__name__, "arch": arch, **constants, "registers": registers,
                              "local": local, "barrier": "bar.sync" in ptx or "barrier.sync" in ptx,
                              "volatile": "ld.volatile" in ptx}), flush=True)


if __name__ == "__main__":
    main()
