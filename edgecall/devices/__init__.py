"""Device discovery (OpenVINO, ONNX Runtime, PyTorch)."""

from edgecall.devices.discovery import DEFAULT_DEVICE, Device, list_devices, resolve_device

__all__ = ["DEFAULT_DEVICE", "Device", "list_devices", "resolve_device"]
