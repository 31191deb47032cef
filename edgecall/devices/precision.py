"""Which reduced precisions this CPU runs natively, so OpenVINO is asked for them only there.

OpenVINO's CPU plugin runs bf16 on AVX512_BF16 or AMX and f16 on AVX512_FP16 or
AMX-FP16; elsewhere it emulates them, and on an AMD machine without native bf16
that ran 12-32x slower than f32 (DESIGN.md). So a precision is offered only when
the CPU flags say it is native, and only for a package whose calls in that
precision were checked against its f32 calls (``edgecall compile --check-precision``).
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

NATIVE_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "f16": ("avx512_fp16", "amx_fp16")}
REDUCED = tuple(NATIVE_FLAGS)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere, so nothing reduced is offered)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8")


def cpu_description() -> str:
    """'model name, family F model M (flags that matter to the engines)': every bench figure names its CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    family = re.search(r"^cpu family\s*:\s*(\d+)$", text, re.M)
    model = re.search(r"^model\s*:\s*(\d+)$", text, re.M)
    ident = f", family {family.group(1)} model {model.group(1)}" if family and model else ""
    shown = [f for f in REPORTED_FLAGS if f in cpu_flags()]
    return f"{cpu_name()}{ident} ({', '.join(shown) or 'no AVX2'})"


def native_precisions(flags: frozenset[str] | None = None) -> tuple[str, ...]:
    """The reduced precisions (bf16, f16) this CPU computes in hardware."""
    have = cpu_flags() if flags is None else flags
    return tuple(p for p, needs in NATIVE_FLAGS.items() if any(f in have for f in needs))


def why_not_native(precision: str, emulator: str = "OpenVINO") -> str:
    return (f"this CPU ({cpu_name()}) has no native {precision} ({' or '.join(NATIVE_FLAGS[precision])}); "
            f"{emulator} would emulate it, far slower than f32: use --precision f32")
