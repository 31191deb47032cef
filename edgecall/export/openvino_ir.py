"""ONNX -> OpenVINO IR per compile target.

CPU gets an FP32 IR (OpenVINO's FP16 weight compression costs ~2e-4 of
accuracy and buys nothing on a CPU); GPU, NPU and MYRIAD get FP16. MYRIAD also
needs a static input shape, and OpenVINO dropped its plugin after 2022.3 LTS,
so the IR is written for 2022.3 to read and the blob is compiled only where a
MYRIAD-capable runtime is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecall.errors import EdgecallError

TARGETS = ("CPU", "GPU", "NPU", "MYRIAD")
FP16_TARGETS = frozenset({"GPU", "NPU", "MYRIAD"})
STATIC_SHAPE_TARGETS = frozenset({"MYRIAD"})


@dataclass(frozen=True)
class IrResult:
    target: str  # CPU | GPU | NPU | MYRIAD
    xml: Path  # written IR
    precision: str  # FP32 | FP16
    static_shape: tuple[int, int, int] | None  # (batch, 1, samples) when the IR is static
    compiled: bool  # the target device compiled it here
    blob: Path | None  # MYRIAD blob, when one was made
    message: str  # what happened / what to do next, one or two lines


def check_target(target: str) -> str:
    t = target.upper()
    if t not in TARGETS:
        raise EdgecallError(f"unknown target '{target}' (choose from {', '.join(TARGETS)})")
    return t


def write_ir(onnx_path: Path, out_dir: Path, target: str, *, batch: int, chunksize: int) -> IrResult:
    """Convert ``onnx_path`` to ``out_dir/openvino/<target>/model.xml`` (+ .bin)."""
    import openvino as ov

    target = check_target(target)
    ir_dir = out_dir / "openvino" / target
    ir_dir.mkdir(parents=True, exist_ok=True)
    xml = ir_dir / "model.xml"
    model = ov.convert_model(str(onnx_path))
    static = None
    if target in STATIC_SHAPE_TARGETS:
        static = (batch, 1, chunksize)
        model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(static))})
    fp16 = target in FP16_TARGETS
    ov.save_model(model, str(xml), compress_to_fp16=fp16)
    precision = "FP16" if fp16 else "FP32"

    core = ov.Core()
    if target == "MYRIAD":
        return _myriad(core, xml, precision, static)
    if target == "CPU" or target in core.available_devices:
        try:
            core.compile_model(core.read_model(str(xml)), target)
        except RuntimeError as exc:  # a present device that refuses the IR is worth reporting, not fatal
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return IrResult(target, xml, precision, static, False, None, f"{target} is present but did not compile the IR: {first}")
        return IrResult(target, xml, precision, static, True, None, f"compiled and checked on this machine's {target}")
    present = ", ".join(core.available_devices) or "none"
    return IrResult(
        target, xml, precision, static, False, None,
        f"no {target} device on this machine (present: {present}); the IR is written and compiles where one is",
    )


def _myriad(core, xml: Path, precision: str, static: tuple[int, int, int] | None) -> IrResult:
    blob = xml.with_suffix(".blob")
    if "MYRIAD" in core.available_devices:  # only OpenVINO <= 2022.3 with a stick attached
        compiled = core.compile_model(core.read_model(str(xml)), "MYRIAD")
        blob.write_bytes(compiled.export_model())
        return IrResult("MYRIAD", xml, precision, static, True, blob, f"compiled the MYRIAD blob {blob}")
    command = (
        f"pip install 'openvino==2022.3.2' 'numpy<1.25'  # Python <= 3.10, on the machine with the stick\n"
        f"python -c \"import openvino.runtime as ov; c = ov.Core(); "
        f"m = c.compile_model(c.read_model('{xml.name}'), 'MYRIAD'); "
        f"open('model.blob', 'wb').write(m.export_model())\"  # run in {xml.parent}"
    )
    return IrResult(
        "MYRIAD", xml, precision, static, False, None,
        "OpenVINO 2023.0 and later have no MYRIAD plugin, so no blob was made here. "
        "On the machine with the Neural Compute Stick run:\n" + command,
    )
