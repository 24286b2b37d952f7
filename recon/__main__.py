"""``python -m recon`` runs the command-line interface."""

from recon.cli import main

main()
