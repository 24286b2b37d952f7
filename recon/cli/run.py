"""``recon run`` (the full pipeline on one file) and ``recon configs`` (list / show configs)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recon.cli.app import STATE, app, console, err_console, say


@app.command()
def run(
    input: Path = typer.Argument(..., help="ISMRMRD raw data file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    config: str = typer.Option(
        None, "--config", "-c", help="Scanner config name or TOML path (default: from header)."
    ),
    overrides: list[str] = typer.Option(
        None, "--set", help="section.key=value override, e.g. grappa.lambda=0.001 (repeatable)."
    ),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    formats: str = typer.Option(
        None, "--format", help="Comma-separated: nifti, ismrmrd, dicom, png (default: config)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Reconstruct a file with the pipeline chosen by its scanner config."""
    from recon.pipeline import run_file

    quiet = quiet or STATE.quiet or as_json
    fmt_list = None if formats is None else [f for f in formats.split(",") if f.strip()]
    with Progress(
        TextColumn("[bold]recon"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("planning", total=None)

        def advance(description: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=description)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_file(
                input,
                output,
                config=config,
                overrides=list(overrides or ()),
                device=device,
                formats=fmt_list,
                progress=advance,
            )
    messages = list(dict.fromkeys(str(w.message) for w in caught))
    if as_json:
        print(json.dumps({**result.as_dict(), "warnings": messages}, indent=2))
        return
    if quiet:
        return
    for message in messages:
        err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
    how = "chosen from the header" if result.selection["automatic"] else "as requested"
    say(
        f"[bold]{Path(result.input).name}[/]: config [cyan]{result.config}[/] ({how}), "
        f"{result.acquisition}, {' > '.join(result.chain)} on {result.device}"
    )
    table = Table(title=f"{result.units} unit(s), {result.seconds:.2f} s")
    for column in ("stage", "seconds", "calls", "peak MB"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for name, timing in result.timings.items():
        table.add_row(
            name,
            f"{timing['seconds']:.3f}",
            str(timing["calls"]),
            f"{timing['peak_bytes'] / 1e6:.1f}",
        )
    console.print(table)
    calib = ", ".join(f"{k} x{v}" for k, v in result.calibrations.items()) or "none"
    say(f"calibrations: {calib}")
    say(f"wrote {len(result.outputs)} file(s) to {result.output_dir}")


@app.command()
def configs(
    name: str = typer.Argument(None, help="Config to show (name or TOML path)."),
    stages: bool = typer.Option(False, "--stages", help="List the stage names for chains."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the scanner configs, or show every value of one (with --set-able keys)."""
    from recon.pipeline.config import (
        SCHEMA,
        STAGES,
        _read_toml,
        available_configs,
        load_config,
        validate,
    )

    if stages:
        rows = {
            k: {"applies_to": list(v[0]), "needs": v[1], "gives": v[2]} for k, v in STAGES.items()
        }
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table(title="pipeline stages")
        for column in ("stage", "applies to", "needs", "gives"):
            table.add_column(column)
        for key, row in rows.items():
            table.add_row(key, ", ".join(row["applies_to"]), row["needs"], row["gives"])
        console.print(table)
        return
    if name is None:
        listing = {}
        for stem, path in available_configs().items():
            values = validate(_read_toml(path), path.name, installed=False)
            listing[stem] = {
                "path": str(path),
                "description": values["config"]["description"],
                "select": values["select"],
            }
        if as_json:
            print(json.dumps(listing, indent=2))
            return
        table = Table(title="scanner configs (recon configs NAME shows one)")
        for column in ("name", "selects", "description"):
            table.add_column(column)
        for stem, item in listing.items():
            sel = item["select"]
            parts = [", ".join(sel["vendor"]), ", ".join(sel["model"]), ", ".join(sel["coil"])]
            if sel["field_strength_t"]:
                parts.append("{}-{} T".format(*sel["field_strength_t"]))
            if sel["channels"]:
                parts.append("{}-{} ch".format(*sel["channels"]))
            table.add_row(stem, " ".join(p for p in parts if p) or "anything", item["description"])
        console.print(table)
        return
    config = load_config(name)
    if as_json:
        print(json.dumps(config.provenance(), indent=2))
        return
    say(f"# {config.path} (sha256 {config.sha256[:12]})")
    current = ""
    for line in config.to_toml().splitlines()[1:]:
        if line.startswith("[") and line[1:-1] in SCHEMA:
            current = line[1:-1]
        key = line.split(" = ", 1)[0].strip('"') if " = " in line else ""
        if current in SCHEMA and key in SCHEMA[current]:
            line = f"{line:<44} # {SCHEMA[current][key].doc}"
        console.print(line, markup=False, highlight=False, soft_wrap=True)
