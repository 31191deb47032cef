"""What this machine can run a model on, and how a ``--device`` string maps to a backend.

Device strings: ``CPU``, ``GPU``, ``NPU``, ``MYRIAD``, ``AUTO`` (OpenVINO);
``ort``/``ort:cpu``, ``ort:cuda``, ``ort:tensorrt`` (ONNX Runtime); ``torch``
(PyTorch reference, needs the ``export`` extra).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from edgecall.errors import EdgecallError

OPENVINO_TARGETS = ("CPU", "GPU", "NPU", "MYRIAD", "AUTO")
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
DEFAULT_DEVICE = "CPU"


@dataclass(frozen=True)
class Device:
    spec: str  # what to pass to --device
    backend: str  # openvino | onnxruntime | torch
    target: str  # OpenVINO device name, ORT provider, or "cpu" for torch
    description: str  # human-readable name of the hardware


def _openvino_devices() -> list[Device]:
    try:
        import openvino as ov
    except ImportError:  # pragma: no cover - openvino is a core dependency
        return []
    core = ov.Core()
    found = []
    for name in core.available_devices:
        try:
            full = str(core.get_property(name, "FULL_DEVICE_NAME"))
        except RuntimeError:
            full = name
        found.append(Device(name, "openvino", name, f"OpenVINO {ov.__version__.split('-')[0]}: {full}"))
    return found


def _ort_devices() -> list[Device]:
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    found = []
    for short, provider in ORT_PROVIDERS.items():
        if provider in present:
            spec = "ort" if short == "cpu" else f"ort:{short}"
            found.append(Device(spec, "onnxruntime", provider, f"ONNX Runtime {ort.__version__}: {provider}"))
    return found


def _torch_device() -> list[Device]:
    try:
        if importlib.util.find_spec("torch") is None:
            return []
    except (ImportError, ValueError):  # a broken or blocked torch counts as absent
        return []
    return [Device("torch", "torch", "cpu", "PyTorch eager on the CPU (reference; slow)")]


def list_devices() -> list[Device]:
    """Every usable device, fastest-first within each backend."""
    return _openvino_devices() + _ort_devices() + _torch_device()


def resolve_device(spec: str) -> Device:
    """Map a ``--device`` string to a present device or fail naming what is present."""
    key = spec.strip()
    devices = list_devices()
    lowered = key.lower()
    if lowered == "auto":
        return Device("AUTO", "openvino", "AUTO", "OpenVINO automatic device selection")
    if lowered.startswith("ort"):
        wanted = "ort" if lowered in ("ort", "ort:cpu") else lowered
        if lowered not in ("ort", "ort:cpu") and lowered.split(":", 1)[1] not in ORT_PROVIDERS:
            raise EdgecallError(f"unknown ONNX Runtime device '{spec}' (known: ort, ort:cuda, ort:tensorrt)")
    elif lowered == "torch":
        wanted = "torch"
    elif key.upper().split(".")[0] in OPENVINO_TARGETS:
        wanted = key.upper()
    else:
        raise EdgecallError(f"unknown device '{spec}'; {present_line(devices)}")
    for device in devices:
        if device.spec == wanted:
            return device
    hint = " (install the 'export' extra for torch)" if wanted == "torch" else ""
    raise EdgecallError(f"device '{spec}' is not present on this machine{hint}; {present_line(devices)}")


def present_line(devices: list[Device]) -> str:
    return "present: " + (", ".join(d.spec for d in devices) or "none") + " (see 'edgecall devices')"
