"""Read Dorado's ``*.tensor`` files without running anything from them.

Each file is a TorchScript archive (a zip) of a module whose one parameter,
named "0", is the tensor (Bonito's ``save_tensor``). ``torch.jit.load`` would
execute the archive's code and ``torch.load(weights_only=True)`` refuses the
format, so this reads ``<name>/data.pkl`` with an unpickler that knows only the
tensor-rebuild call, the storage types and plain containers, and takes the raw
bytes from ``<name>/data/<key>``. Anything else in the pickle is refused.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgecall.errors import EdgecallError

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "BFloat16Storage": None,  # read as uint16 and widened below
}


class _ScriptModule:
    """Stands in for the archive's ``__torch__`` module class: keeps its attributes, runs nothing."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> np.ndarray:
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view)  # a copy: the archive's buffer is not kept


class _TensorUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: Path) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module.startswith("__torch__."):
            return _ScriptModule
        raise EdgecallError(f"{self.source}: refused: the tensor file refers to '{module}.{name}', not only tensor data")

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in STORAGE_DTYPES):
            raise EdgecallError(f"{self.source}: unexpected storage reference {str(pid)[:60]}")
        _, kind, key, _location, numel = pid
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        if kind == "BFloat16Storage":
            widened = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            values = widened.view(np.float32)
        else:
            values = np.frombuffer(raw, dtype=np.dtype(STORAGE_DTYPES[kind]).newbyteorder("<"))
        if values.size < int(numel):
            raise EdgecallError(f"{self.source}: truncated tensor data")
        return values


def read_tensor_file(path: Path) -> torch.Tensor:
    """The one tensor in a Dorado ``.tensor`` file, as float32."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise EdgecallError(f"{path}: not a Dorado tensor file (no single data.pkl)")
            prefix = pickles[0].split("/")[0]
            order = f"{prefix}/byteorder"
            if order in archive.namelist() and archive.read(order).strip() not in (b"little", b""):
                raise EdgecallError(f"{path}: big-endian tensor files are not supported")
            obj = _TensorUnpickler(archive.read(pickles[0]), archive, prefix, path).load()
    except zipfile.BadZipFile:
        raise EdgecallError(f"{path}: not a Dorado tensor file (not a zip archive)") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise EdgecallError(f"{path}: unreadable tensor file ({type(exc).__name__}: {str(exc)[:80]})") from None
    state = getattr(obj, "state", None)
    tensors = [v for v in state.values() if isinstance(v, np.ndarray)] if isinstance(state, dict) else []
    if len(tensors) != 1:
        raise EdgecallError(f"{path}: expected one tensor in the file, found {len(tensors)}")
    return torch.from_numpy(np.ascontiguousarray(tensors[0], dtype=np.float32))


def read_tensor_folder(folder: Path) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` for every ``name.tensor`` in a Dorado model folder."""
    return {p.name[: -len(".tensor")]: read_tensor_file(p) for p in sorted(Path(folder).glob("*.tensor"))}
