"""The one exception type for expected failures.

The CLI turns an :class:`EdgecallError` into a single stderr line and a
non-zero exit status; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgecallError(Exception):
    """A failure the user can act on (bad file, missing device, bad option)."""


class UsageError(EdgecallError):
    """An option value the command cannot use: exit status 2, as for the CLI parser's own usage errors."""


class MissingExtraError(EdgecallError):
    """An optional dependency is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{module}' package: install it with "
            f"pip install 'edgecall[{extra}]'"
        )


def exact_div(numerator: int, denominator: int, what: str) -> int:
    """Divide exactly or fail loudly instead of truncating."""
    if denominator <= 0 or numerator % denominator:
        raise EdgecallError(f"{what}: {numerator} is not a multiple of {denominator}")
    return numerator // denominator


EXPORT_MODULES = frozenset({"torch", "onnx", "onnxscript", "nncf"})


def raise_missing_extra(exc: ModuleNotFoundError, purpose: str) -> None:
    """Turn a missing export-only dependency into a clear error; re-raise anything else."""
    if exc.name in EXPORT_MODULES:
        raise MissingExtraError(exc.name, "export", purpose) from None
    raise exc
