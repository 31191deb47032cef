"""``edgecall models``: what is installed, and for which reads."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgecall.catalog import installed_models, models_directory
from edgecall.chemistry import LABELS, format_rate, pore
from edgecall.costs import model_costs
from edgecall.package import load_package


def register(app: typer.Typer) -> None:
    app.command("models")(models_command)


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB"


def _identity(path: Path, kind: str) -> str:
    if kind != "package":
        return "-"
    found = load_package(path).provenance.get("dev_identity")
    if not isinstance(found, dict) or "median" not in found:
        return "-"
    return f"{found['median']:.4f} ({found.get('set', '?')})"


def models_command(
    models_dir: Optional[Path] = typer.Option(None, "--models-directory", help="Folder of model packages and ONT model folders (default: $EDGECALL_MODELS_DIRECTORY)."),
) -> None:
    """List the installed models: bundled packages and those in the models folder."""
    rows = [("name", "chemistry", "rate", "tier", "kind", "size", "FLOPs/sample", "identity")]
    for model in installed_models(models_directory(models_dir)):
        config = model.config
        chemistry = LABELS.get(pore(config.chemistry) or "", config.chemistry)
        kind = ("bundled" if model.bundled else "package") if model.kind == "package" else "ONT folder"
        rows.append((model.name, chemistry, format_rate(config.sample_rate), model.tier or "-", kind,
                     _size(model.path), f"{model_costs(config).flops / 1e3:,.0f} k", _identity(model.path, model.kind)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
