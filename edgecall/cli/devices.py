"""``edgecall devices``: what this machine can basecall on."""

from __future__ import annotations

import typer

from edgecall.devices import DEFAULT_DEVICE, list_devices


def register(app: typer.Typer) -> None:
    app.command("devices")(devices_command)


def devices_command() -> None:
    """List the devices usable with --device, and the default."""
    devices = list_devices()
    width = max((len(d.spec) for d in devices), default=6)
    for device in devices:
        mark = "  (default)" if device.spec == DEFAULT_DEVICE else ""
        typer.echo(f"{device.spec:<{width}}  {device.description}{mark}")
    if not devices:
        typer.echo("no devices found: is OpenVINO or ONNX Runtime installed?")
