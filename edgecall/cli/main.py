"""The ``edgecall`` command: subcommands register here; expected failures end here.

Every :class:`~edgecall.errors.EdgecallError` becomes one ``edgecall: error:``
line on stderr and exit status 1 (2 for a :class:`~edgecall.errors.UsageError`);
Ctrl-C exits 130 and SIGTERM 143 (see edgecall.cli.exits); a closed stdout
(``| head``) exits quietly.
"""

from __future__ import annotations

import os
import sys
import threading

import typer

from edgecall import __version__
from edgecall.cli.exits import Interrupted, OutputClosed, install
from edgecall.errors import EdgecallError, UsageError

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


def main(argv: list[str] | None = None) -> None:
    _register()
    install()
    try:
        app(args=argv, prog_name="edgecall", standalone_mode=True)
    except UsageError as exc:
        error_line(str(exc))
        _leave(2)
    except EdgecallError as exc:
        error_line(str(exc))
        _leave(1)
    except Interrupted as exc:
        sys.stderr.write(f"edgecall: {exc.message}\n")
        _leave(128 + exc.signum)
    except (OutputClosed, BrokenPipeError):
        # stdout closed early (e.g. `| head`): the command's cleanup stopped its threads; stop
        # quietly, without Python's shutdown warning about the unflushed stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        _leave(0)


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
