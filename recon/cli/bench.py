"""``recon bench``: the benchmark suites against SigPy, FINUFFT, pygrappa and BART."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer

from recon.cli.app import app, say
from recon.errors import ConfigError
from recon.resources import benchmarks_dir


def _runner():
    """Import ``benchmarks.runner`` from the source tree or from the installed package data."""
    parent = str(benchmarks_dir().parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    return importlib.import_module("benchmarks.runner")


@app.command()
def bench(
    quick: bool = typer.Option(True, "--quick/--full", help="Quick sizes (< 3 min) or full."),
    suite: list[str] = typer.Option(None, "--suite", "-s", help="Only these suites."),
    output: Path = typer.Option(Path("bench-report"), "-o", "--output", help="Report folder."),
    list_suites: bool = typer.Option(False, "--list", help="List the suites and exit."),
) -> None:
    """Benchmark recon against the peers installed here; write JSON, Markdown and PNG."""
    runner = _runner()
    if list_suites:
        for name in runner.available_suites():
            say(name)
        return
    unknown = sorted(set(suite or ()) - set(runner.available_suites()))
    if unknown:
        raise ConfigError(f"unknown benchmark suite(s) {unknown}: have {runner.available_suites()}")
    outcomes = runner.run_suites(suite or None, quick=quick, log=say)
    paths = runner.write_report(outcomes, output, quick=quick)
    say(runner.markdown_table(outcomes))
    say("report: " + ", ".join(str(p) for p in paths.values()))
    failed = [o.name for o in outcomes if o.error]
    if failed:
        raise typer.Exit(1)
