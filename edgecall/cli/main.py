"""The ``edgecall`` command: subcommands register here; expected failures end here.

Every :class:`~edgecall.errors.EdgecallError` becomes one ``edgecall: error:``
line on stderr and exit status 1; Ctrl-C exits 130; a closed stdout (``| head``)
exits quietly.
"""

from __future__ import annotations

import os
import sys

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
    from edgecall.cli import devices, import_model, inspect, run, simulate

    for module in (run, compile_cmd, inspect, devices, import_model, simulate):
        module.register(app)


def error_line(message: str) -> None:
    sys.stderr.write(f"edgecall: error: {message}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, prog_name="edgecall", standalone_mode=True)
    except EdgecallError as exc:
        error_line(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("edgecall: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): stop quietly, without Python's shutdown warning
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
