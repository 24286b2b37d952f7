"""The ``recon`` typer application, its global options and error handling.

Command modules register themselves on :data:`app` (see ``recon/cli/__init__.py``).
A :class:`~recon.errors.ReconError` raised by any command is printed as one line
on stderr with exit code 2; ``--debug`` (or ``RECON_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import typer
from rich.console import Console

from recon import __version__
from recon.errors import ReconError

app = typer.Typer(
    name="recon",
    help="GPU-accelerated MRI reconstruction for 7 T: ISMRMRD in, images out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliState:
    """Options shared by every command."""

    debug: bool = False
    quiet: bool = False


STATE = CliState(debug=os.environ.get("RECON_DEBUG", "") not in ("", "0"))


def _print_version(value: bool) -> None:
    if value:
        console.print(f"recon {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
) -> None:
    """GPU-accelerated MRI reconstruction for 7 T: ISMRMRD in, images out."""
    STATE.debug = STATE.debug or debug
    STATE.quiet = quiet


def say(message: str) -> None:
    """Print a rich-formatted message unless ``--quiet`` was given."""
    if not STATE.quiet:
        console.print(message)


def main() -> None:
    """Console-script entry point: run the app, turn user errors into one line and exit 2."""
    try:
        app()
    except ReconError as error:
        if STATE.debug:
            raise
        err_console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as error:
        if STATE.debug:
            raise
        err_console.print(
            f"internal error: {type(error).__name__}: {error} (run with --debug for a traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
