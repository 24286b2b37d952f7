"""Command-line interface: ``recon <command>``; each module registers its commands."""

from recon.cli import (  # noqa: F401  (importing a module registers its commands)
    batch,
    bench,
    cartesian,
    coils,
    demo,
    info,
    noncart,
    run,
    serve,
    simulate,
)
from recon.cli.app import app, main

__all__ = ["app", "main"]
