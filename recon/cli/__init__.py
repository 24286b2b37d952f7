"""Command-line interface: ``recon <command>``; each module registers its commands."""

from recon.cli import bench  # noqa: F401
from recon.cli.app import app, main

__all__ = ["app", "main"]
