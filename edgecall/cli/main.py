"""The ``edgecall`` command: subcommands register here; expected failures end here.

Every :class:`~edgecall.errors.EdgecallError` becomes one ``edgecall: error:``
line on stderr and exit status 1; Ctrl-C exits 130; a closed stdout (``| head``)
exits quietly.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import typer

from edgecall import __version__
from edgecall.errors import EdgecallError

app = typer.Typer(
    name="edgecall",
    help="Nanopore basecalling for the edge: shrink, compile and run CRF basecallers on small machines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecall {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Nanopore basecalling for the edge."""


def _register() -> None:
    from edgecall.cli import compile as compile_cmd
    from edgecall.cli import devices, import_model, inspect, models, run, simulate, train

    for module in (run, compile_cmd, inspect, models, devices, import_model, simulate, train):
        module.register(app)


def error_line(message: str) -> None:
    sys.stderr.write(f"edgecall: error: {message}\n")
    sys.stderr.flush()


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM. A BaseException of our own so no library turns it into something else."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    # one interruption is enough: ignore repeats so cleanup (closing outputs) is not cut short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> None:
    _register()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        app(args=argv, prog_name="edgecall", standalone_mode=True)
    except EdgecallError as exc:
        error_line(str(exc))
        _leave(1)
    except Interrupted as exc:
        sys.stderr.write("edgecall: interrupted; everything written so far is complete\n")
        _leave(128 + exc.signum)
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): stop quietly, without Python's shutdown warning
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _leave(status: int) -> None:
    """Exit now; outputs were already closed on a whole record by the command's cleanup.

    Pipeline worker threads may be inside native inference code; letting the
    interpreter shut down around them aborts the process ("terminate called
    without an active exception"), so flush and skip the shutdown instead.
    """
    sys.stderr.flush()
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass
    if threading.active_count() > 1:
        os._exit(status)
    sys.exit(status)
