"""``edgecall import deepnano-blitz WEIGHTS.txt``: third-party weights as a package."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecall.errors import EdgecallError, raise_missing_extra

FORMATS = ("deepnano-blitz",)


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)


def import_command(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="Weights format: deepnano-blitz."),
    weights: Path = typer.Argument(..., help="Weights file, e.g. rnn64.txt from DeepNano-blitz."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Package directory (default: <weights>.edgecall next to it)."),
    target: list[str] = typer.Option(["CPU"], "--target", "-t", help="OpenVINO target(s) to write IR for."),
) -> None:
    """Convert published third-party weights into an edgecall model package."""
    if fmt not in FORMATS:
        raise EdgecallError(f"unknown import format '{fmt}' (known: {', '.join(FORMATS)})")
    try:
        from edgecall.export.deepnano import import_deepnano
    except ModuleNotFoundError as exc:
        raise_missing_extra(exc, "edgecall import")
    out = output or weights.parent / f"{weights.stem}.edgecall"
    result = import_deepnano(weights, out, targets=target)
    typer.echo(f"package: {result.path}", err=True)
    for ir in result.irs:
        typer.echo(f"  {ir.xml} ({ir.precision}): {ir.message.splitlines()[0]}", err=True)
