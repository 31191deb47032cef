"""The models a user has, and which one calls a given run: Dorado-style model choice.

Installed models are the bundled packages plus a models folder
(``--models-directory`` or ``EDGECALL_MODELS_DIRECTORY``) holding edgecall
packages and ONT model folders (``dorado download`` / ``bonito download``
output). ``--model`` takes a name, a path, or a tier (``fast``/``hac``/``sup``)
resolved for the reads' chemistry; without it the reads' chemistry picks. An
ONT folder is compiled once (that needs the export extra) into a cache and
reused. No torch is imported unless a folder must be compiled.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from edgecall.chemistry import LABELS, RunChemistry, check_run, format_rate, parse_model_name, pore
from edgecall.config import ModelConfig, read_toml
from edgecall.errors import EdgecallError
from edgecall.package import BUNDLED_DIR, CONFIG_NAME, DEFAULT_MODEL, ONNX_NAME, bundled_models

MODELS_DIRECTORY_ENV = "EDGECALL_MODELS_DIRECTORY"
CACHE_ENV = "EDGECALL_CACHE"
TIERS = ("fast", "hac", "sup")
TIER_PREFERENCE = ("hac", "fast", "sup")  # without --model: accurate enough and fast enough on a CPU, as Dorado's default


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: Path
    config: ModelConfig
    kind: str  # package | ont-folder
    bundled: bool

    @property
    def tier(self) -> str | None:
        if self.config.tier:
            return self.config.tier
        parsed = parse_model_name(self.name)
        return parsed.tier if parsed else None


def models_directory(given: Path | None) -> Path | None:
    if given is not None:
        if not Path(given).is_dir():
            raise EdgecallError(f"{given}: no such models folder")
        return Path(given)
    env = os.environ.get(MODELS_DIRECTORY_ENV)
    return Path(env) if env and Path(env).is_dir() else None


def _is_ont_folder(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file() and (any(path.glob("*.tensor")) or any(path.glob("weights_*.tar")))


def _describe(path: Path, bundled: bool) -> InstalledModel | None:
    """An installed model, or None for folders that are not basecall models (modbase, transformer, broken)."""
    try:
        if (path / ONNX_NAME).is_file():
            return InstalledModel(path.name, path, ModelConfig.load(path / CONFIG_NAME), "package", bundled)
        if _is_ont_folder(path):
            return InstalledModel(path.name, path, ont_folder_config(path), "ont-folder", bundled)
    except EdgecallError:
        return None
    return None


def ont_folder_config(path: Path) -> ModelConfig:
    """An ONT folder's config, named after the folder (see :func:`with_folder_identity`)."""
    return with_folder_identity(path, ModelConfig.from_toml(read_toml(path / CONFIG_NAME), str(path / CONFIG_NAME)))


def with_folder_identity(path: Path, config: ModelConfig) -> ModelConfig:
    """Name, chemistry and tier from the ONT folder name; else a config that names no chemistry but
    runs at 5 kHz is R10.4.1 (only R10.4.1 runs at 5 kHz)."""
    parsed = parse_model_name(path.name)
    if parsed is not None:
        return config.replace(name=path.name, chemistry=parsed.chemistry, tier=parsed.tier)
    if config.chemistry == ModelConfig().chemistry and config.sample_rate == 5000:
        return config.replace(name=path.name, chemistry="dna_r10.4.1_e8.2_400bps")
    return config.replace(name=path.name)


def installed_models(directory: Path | None = None) -> list[InstalledModel]:
    found = [m for name in bundled_models() if (m := _describe(BUNDLED_DIR / name, True))]
    if directory is not None:
        for path in sorted(p for p in Path(directory).iterdir() if p.is_dir()):
            model = _describe(path, False)
            if model is not None:
                found.append(model)
    return found


def fitting_models(run: RunChemistry, directory: Path | None) -> list[InstalledModel]:
    """The installed models that may call ``run``'s reads (same pore, its rate or one it resamples from)."""
    return [m for m in installed_models(directory) if _fits(m, run)]


def _fits(model: InstalledModel, run: RunChemistry) -> bool:
    config = model.config
    return check_run(run, config.name, config.chemistry, config.sample_rate, config.resample_from).refusal is None and (
        run.pore is None or pore(config.chemistry) == run.pore)


def _best(candidates: list[InstalledModel], tier: str | None) -> InstalledModel | None:
    if tier is not None:
        candidates = [m for m in candidates if m.tier == tier]
    if not candidates:
        return None
    order = {t: i for i, t in enumerate(TIER_PREFERENCE)}
    # a preferred tier first; then a bundled sparse package over an ONT folder that needs compiling; then the name
    return sorted(candidates, key=lambda m: (order.get(m.tier or "", len(order)), m.kind != "package", m.name))[0]


def choose(model: str | None, run: RunChemistry | None, directory: Path | None) -> InstalledModel:
    """The model ``--model`` names (or, without it, the one for ``run``'s chemistry)."""
    installed = installed_models(directory)
    if model is not None and model not in TIERS:
        return _named(model, installed)
    if run is None or run.pore is None:
        if model is None:
            return _named(DEFAULT_MODEL, installed)
        raise EdgecallError(f"--model {model}: the reads' run info names no chemistry to pick a {model} model for; "
                            "give a model name")
    fitting = [m for m in installed if _fits(m, run)]
    default = next((m for m in fitting if m.name == DEFAULT_MODEL), None)
    if model is None and default is not None:
        return default  # the project's default for its chemistry, as before chemistry picked models
    chosen = _best(fitting, model)
    if chosen is None:
        raise EdgecallError(missing_model_hint(run, model, installed))
    return chosen


def choose_for_reads(model: str | None, directory: Path | None, files: list[Path]) -> tuple[InstalledModel, RunChemistry | None]:
    """``--model`` as given, or (no model, or a tier) resolved for the chemistry of the first readable read of ``files``."""
    from edgecall.chemistry import run_chemistry
    from edgecall.runtime.readers import first_read

    run = None
    if model is None or model in TIERS:
        read = first_read(files)
        if read is not None:
            run = run_chemistry(read.run.flow_cell_product_code, read.run.sequencing_kit, read.sample_rate)
    return choose(model, run, directory), run


def _named(model: str, installed: list[InstalledModel]) -> InstalledModel:
    path = Path(model)
    if path.is_dir():
        described = _describe(path, False)
        if described is None:
            if (path / CONFIG_NAME).is_file():
                ont_folder_config(path)  # raises the config's own reason (transformer, modbase, ...)
            raise EdgecallError(f"{path}: not an edgecall package (config.toml + model.onnx) or an ONT model folder "
                                "(config.toml + *.tensor or weights_N.tar)")
        return described
    for candidate in installed:
        if candidate.name == model:
            return candidate
    names = ", ".join(m.name for m in installed) or "none"
    raise EdgecallError(f"model '{model}': no such package, model folder or installed model (installed: {names})")


DOWNLOAD_HINTS = {  # ONT's basecall model for each chemistry a user may be missing
    ("r10.4.1", 5000): "dna_r10.4.1_e8.2_400bps_hac@v5.0.0",
    ("r10.4.1", 4000): "dna_r10.4.1_e8.2_400bps_hac@v4.1.0",
    ("r9.4.1", 4000): "dna_r9.4.1_e8_hac@v3.3",
    ("rna004", 4000): "rna004_130bps_hac@v5.0.0",
    ("rna002", 3000): "rna002_70bps_hac@v3",
}


def missing_model_hint(run: RunChemistry, tier: str | None, installed: list[InstalledModel]) -> str:
    names = ", ".join(m.name for m in installed) or "none"
    what = f"{tier} model" if tier else "model"
    ont = DOWNLOAD_HINTS.get((run.pore or "", run.sample_rate))
    if ont and tier:
        ont = ont.replace("_hac@", f"_{tier}@")
    fetch = f"'dorado download --model {ont}'" if ont else "'dorado download' for this chemistry's model"
    return (f"no installed {what} calls {run.describe()} reads (installed: {names}); on a connected machine run "
            f"{fetch} and pass its folder with --model or --models-directory")


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgecall" / "compiled"


def _fingerprint(folder: Path) -> str:
    """Of the folder's files (names, sizes, times): a changed folder compiles again."""
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:16]


def package_path(model: InstalledModel) -> Path:
    """The package to run: the model itself, or its compiled copy in the cache (compiled now if missing)."""
    if model.kind == "package":
        return model.path
    target = cache_root() / f"{model.name}-{_fingerprint(model.path)}"
    if (target / ONNX_NAME).is_file():
        return target
    try:
        from edgecall.export.compile import compile_checkpoint
    except ModuleNotFoundError as exc:
        raise EdgecallError(
            f"{model.path}: an ONT model folder is compiled once before its first run, which needs the export "
            f"extra ({exc.name} is missing): pip install 'edgecall[export]', or compile it elsewhere with "
            "'edgecall compile FOLDER' and pass the package"
        ) from None
    sys.stderr.write(f"edgecall: compiling {model.path} once into {target} (reused from then on)\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    compile_checkpoint(model.path, partial, targets=["CPU"], name=model.name)
    partial.rename(target)
    return target


def describe_choice(model: InstalledModel, run: RunChemistry | None) -> str:
    config = model.config
    reads = f" for reads that are {run.describe()}" if run is not None and run.pore is not None else ""
    return f"model {model.name} ({LABELS.get(pore(config.chemistry) or '', config.chemistry)}, {format_rate(config.sample_rate)}){reads}"
