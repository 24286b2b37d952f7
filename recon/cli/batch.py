"""``recon batch``: many files through the pipeline on Dask distributed."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recon.batch import BatchOptions, TaskResult, run_batch
from recon.cli.app import STATE, app, console


@app.command()
def batch(
    inputs: list[Path] = typer.Argument(..., help="ISMRMRD files to reconstruct."),
    output: Path = typer.Option(..., "-o", "--output", help="Output root: one folder per file."),
    scheduler: str = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler (default: embedded)."
    ),
    workers: int = typer.Option(2, "--workers", "-w", min=1, help="Embedded cluster workers."),
    config: str = typer.Option(None, "--config", "-c", help="Scanner config name or path."),
    overrides: list[str] = typer.Option(None, "--set", help="section.key=value override."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    formats: str = typer.Option(
        None, "--format", help="Comma-separated output formats (default: the config's)."
    ),
    retries: int = typer.Option(2, "--retries", min=0, help="Extra attempts per failed task."),
) -> None:
    """Reconstruct many files on Dask (embedded LocalCluster or --scheduler ADDRESS)."""
    options = BatchOptions(
        config=config,
        overrides=tuple(overrides or ()),
        device=device,
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()) if formats else None,
    )
    with Progress(
        TextColumn("[bold]batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=STATE.quiet,
    ) as bar:
        task = bar.add_task("", total=len(inputs))

        def advance(result: TaskResult, done: int, total: int) -> None:
            bar.update(
                task, completed=done, description=f"{Path(result.input).name}: {result.status}"
            )

        results = run_batch(
            inputs,
            output,
            options,
            scheduler=scheduler,
            workers=workers,
            retries=retries,
            progress=advance,
        )
    table = Table(title="recon batch")
    for column in ("input", "status", "seconds", "output / error"):
        table.add_column(column)
    for r in results:
        table.add_row(Path(r.input).name, r.status, f"{r.seconds:.1f}", r.error or r.output)
    if not STATE.quiet:
        console.print(table)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(1)
