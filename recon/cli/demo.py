"""``recon demo``: simulate a 32-channel 7 T head acquisition and reconstruct it end to end."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from recon.cli.app import STATE, app, console, say


@app.command()
def demo(
    output: Path = typer.Option(Path("recon-demo"), "-o", "--output", help="Output folder."),
    matrix: int = typer.Option(192, "--matrix", min=32, help="In-plane matrix."),
    slices: int = typer.Option(3, "--slices", min=1, help="2D slices."),
    coils: int = typer.Option(32, "--coils", min=1, help="Receive channels."),
    accel: int = typer.Option(3, "--accel", min=1, help="GRAPPA acceleration along ky."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Simulate a 7 T multi-slice GRAPPA acquisition, reconstruct it, write NIfTI + PNG."""
    from recon.pipeline import run_file
    from recon.sim import SimSpec, simulate

    output.mkdir(parents=True, exist_ok=True)
    raw_path = output / "demo_7t_raw.h5"
    spec = SimSpec(matrix=matrix, slices=slices, ncoils=coils, accel=accel, calib=24, seed=7)

    start = time.perf_counter()
    simulate(raw_path, spec)
    timings = [
        (f"simulate: {coils} coils, {slices} x {matrix}^2, R={accel}", time.perf_counter() - start)
    ]
    start = time.perf_counter()
    result = run_file(raw_path, output / "images", device=device, formats=["nifti", "png"])
    timings.append((f"reconstruct: config {result.config}", time.perf_counter() - start))
    timings.extend((f"  {name}", t["seconds"]) for name, t in result.timings.items())

    table = Table(title="recon demo")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for name, seconds in timings:
        table.add_row(name, f"{seconds:.2f}")
    if not STATE.quiet:
        console.print(table)
    say(f"chain:    {' -> '.join(result.chain)} on {result.device}")
    say(f"raw data: {raw_path}")
    for path in result.outputs:
        say(f"written:  {path}")
