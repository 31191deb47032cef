"""ONT's Bonito as the test reference for ONT's models (``ont-bonito``, installed ``--no-deps``).

Bonito's package ``__init__`` imports its whole CLI (parasail, koi, ...); the
reference needs only ``bonito/nn.py`` (the layers, ``from_dict``) and
``bonito/cli/export.py`` (``export_to_dorado``, which writes Dorado's tensor
files). They are loaded from the installed files under stub parent packages,
so nothing else of Bonito runs. Never imported by edgecall itself.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest


_ROOT: list[Path] = []


def _bonito_root() -> Path:
    if not _ROOT:
        spec = importlib.util.find_spec("bonito")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("ont-bonito is not installed (pip install --no-deps ont-bonito==1.1.0)")
        _ROOT.append(Path(next(iter(spec.submodule_search_locations))))
    return _ROOT[0]


def _stub_package(name: str, path: Path) -> None:
    if name not in sys.modules:
        module = types.ModuleType(name)
        module.__path__ = [str(path)]  # type: ignore[attr-defined]
        sys.modules[name] = module


def _load(name: str, path: Path) -> Any:
    if name in sys.modules and getattr(sys.modules[name], "__file__", None):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def bonito_nn() -> Any:
    root = _bonito_root()
    _stub_package("bonito", root)
    return _load("bonito.nn", root / "nn.py")


def bonito_export() -> Any:
    """``bonito.cli.export`` with its unused ``bonito.util`` imports stubbed."""
    root = _bonito_root()
    bonito_nn()
    _stub_package("bonito.cli", root / "cli")
    if "bonito.util" not in sys.modules:
        util = types.ModuleType("bonito.util")
        util._load_model = util.get_last_checkpoint = None  # type: ignore[attr-defined]
        sys.modules["bonito.util"] = util
    pytest.importorskip("toml")
    return _load("bonito.cli.export", root / "cli" / "export.py")
