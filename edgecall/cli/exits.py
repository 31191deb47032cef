"""How a command ends early: Ctrl-C, SIGTERM, a closed standard output.

Outside :func:`finish_on_interrupt` the first signal raises :class:`Interrupted`
in the main thread; the command's cleanup closes its outputs and the process
exits 128 + the signal number. Inside it, the first signal only asks the
command to stop taking input (``edgecall run`` then finishes and writes the
reads it has already read and ends by itself), and a second one exits at once.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterator

_finishing: dict = {"stop": None, "signum": None}


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. A BaseException of our own so no library turns it into something else."""

    def __init__(self, signum: int, message: str = "interrupted; everything written so far is complete") -> None:
        super().__init__(signum, message)
        self.signum = signum
        self.message = message


class OutputClosed(BaseException):
    """Standard output was closed by its reader (``| head``) and the command has cleaned up.

    A BaseException of our own: the CLI framework would turn a BrokenPipeError
    into exit status 1.
    """


def install() -> None:
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


@contextmanager
def finish_on_interrupt(stop: Callable[[], None]) -> Iterator[Callable[[], int | None]]:
    """While inside, the first Ctrl-C/SIGTERM calls ``stop``; yields a function that
    tells which signal came (None: none)."""
    _finishing.update(stop=stop, signum=None)
    try:
        yield lambda: _finishing["signum"]
    finally:
        _finishing["stop"] = None


def _on_signal(signum: int, frame: object) -> None:
    stop = _finishing["stop"]
    if stop is None:
        # one interruption is enough: ignore repeats so cleanup (closing outputs) is not cut short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Interrupted(signum)
    if _finishing["signum"] is None:
        _finishing["signum"] = signum
        os.write(2, b"edgecall: interrupted: reading no more input; finishing the reads already read "
                    b"(interrupt again to stop at once)\n")
        stop()
        return
    os.write(2, b"edgecall: interrupted again: stopping at once; reads not yet written are lost\n")
    os._exit(128 + signum)
