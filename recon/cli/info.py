"""``recon info FILE.h5``: what an ISMRMRD file holds; ``recon convert``: image formats."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.table import Table

from recon.cli.app import STATE, app, console, err_console, say


def _span(values: list | None) -> str:
    return "-" if not values else f"{values[0]}..{values[1]}"


def _fmt(values: object) -> str:
    if isinstance(values, list | tuple):
        return " x ".join(str(v) for v in values)
    return "-" if values is None else str(values)


def _print_summary(summary: dict) -> None:
    top = Table(title=f"[bold]{summary['file']}[/bold]", show_header=False, box=None)
    top.add_column(style="cyan")
    top.add_column()
    field = summary["field_strength_t"]
    rows = [
        ("scanner", f"{summary['vendor'] or '-'} {summary['model'] or ''}".strip()),
        ("field strength", f"{field:.3f} T" if field else "-"),
        ("channels", str(summary["channels"])),
        ("protocol", _fmt(summary["protocol"])),
        ("sequence", _fmt(summary["sequence_type"])),
        (
            "TR / TE / flip",
            f"{_fmt(summary['tr_ms'])} / {_fmt(summary['te_ms'])} ms / "
            f"{_fmt(summary['flip_angle_deg'])} deg",
        ),
        ("readouts", f"{summary['readouts']} ({summary['unusable_readouts']} unusable)"),
        (
            "noise readouts",
            f"{summary['noise_readouts']} (dwell {_fmt(summary['noise_dwell_time_us'])} us)",
        ),
        ("header", "valid (ismrmrd.xsd)" if summary["header_validated"] else "read leniently"),
    ]
    for key, value in rows:
        top.add_row(key, value)
    console.print(top)

    kinds = Table(title="readouts by kind / by flag")
    kinds.add_column("kind")
    kinds.add_column("count", justify="right")
    for name, count in summary["kinds"].items():
        if count:
            kinds.add_row(name, str(count))
    for name, count in summary["flags"].items():
        kinds.add_row(f"[dim]flag {name}[/dim]", str(count))
    console.print(kinds)

    for i, enc in enumerate(summary["encodings"]):
        table = Table(title=f"encoding {i}: {enc['trajectory']}", show_header=False)
        table.add_column(style="cyan")
        table.add_column()
        table.add_row("encoded matrix (x y z)", _fmt(enc["encoded_matrix"]))
        table.add_row("recon matrix (x y z)", _fmt(enc["recon_matrix"]))
        table.add_row(
            "encoded / recon FOV mm", f"{_fmt(enc['encoded_fov_mm'])} / {_fmt(enc['recon_fov_mm'])}"
        )
        table.add_row("readout oversampling", f"{enc['readout_oversampling']:g}")
        accel = _fmt(enc["acceleration"])
        if "measured_acceleration" in enc:
            accel += f" (measured ky step {enc['measured_acceleration']})"
        table.add_row("acceleration (ky kz)", accel)
        table.add_row(
            "calibration",
            f"{enc['calibration_lines']} lines "
            f"({enc['calibration_mode'] or '-'}), ky "
            f"{_span(enc['calibration_ky_range'])}",
        )
        table.add_row(
            "imaging readouts / lines", f"{enc['imaging_readouts']} / {enc['imaging_lines']}"
        )
        if "samples_per_readout" in enc:
            table.add_row(
                "samples / dwell", f"{enc['samples_per_readout']} / {enc['dwell_time_us']} us"
            )
            table.add_row("trajectory dimensions", str(enc["trajectory_dimensions"]))
        if "partial_fourier" in enc:
            pf = enc["partial_fourier"]
            table.add_row("ky lines (centre)", f"{_span(enc['ky_range'])} ({enc['ky_center']})")
            table.add_row("partial Fourier ky kz kx", f"{pf['ky']:g} {pf['kz']:g} {pf['kx']:g}")
        if "axis_codes" in enc:
            table.add_row(
                "orientation (x y z)",
                f"{enc['axis_codes']} at LPS ({', '.join(map(str, enc['position_lps_mm']))}) mm",
            )
        counts = " ".join(f"{k}={v}" for k, v in enc["counts"].items() if v != 1)
        table.add_row("counters", counts or "all 1")
        console.print(table)


def _is_image_file(path: Path) -> bool:
    """An HDF5 file without raw data (``xml`` + ``data``) but with ISMRMRD image series."""
    import h5py

    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as handle:
            groups = [g for g in handle.values() if isinstance(g, h5py.Group)]
            if any("data" in g and "xml" in g for g in groups):
                return False
            return any(
                isinstance(s, h5py.Group) and "header" in s and "data" in s
                for g in groups
                for s in g.values()
            )
    except OSError:
        return False


def _print_images(summary: dict) -> None:
    table = Table(title=f"[bold]{summary['file']}[/bold]: ISMRMRD images")
    for column in ("series", "images", "channels z y x", "dtype", "type", "FOV mm"):
        table.add_column(column)
    types = {1: "magnitude", 2: "phase", 3: "real", 4: "imag", 5: "complex"}
    for item in summary["series"]:
        kinds = ", ".join(types.get(t, str(t)) for t in item["image_types"])
        table.add_row(item["name"], str(item["images"]), _fmt(item["shape"]), item["dtype"],
                      kinds, _fmt(item["fov_mm"]))  # fmt: skip
    console.print(table)


@app.command()
def info(
    path: Path = typer.Argument(..., help="ISMRMRD raw data or image file (.h5)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Summarise an ISMRMRD file: readouts, matrices, acceleration, calibration (raw data),
    or the image series of an image file."""
    from recon.io.ismrmrd import read_dataset
    from recon.io.summary import summarize

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if _is_image_file(path):
            from recon.io.images import read_ismrmrd_images
            from recon.io.summary import summarize_images

            summary = {"file": str(path), **summarize_images(read_ismrmrd_images(path))}
        else:
            summary = summarize(read_dataset(path))
    summary["warnings"] = [str(w.message) for w in caught]
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    if summary["kind"] == "images":
        _print_images(summary)
        return
    for message in summary["warnings"]:
        if not STATE.quiet:
            err_console.print(f"warning: {message}", markup=False, highlight=False)
    if not STATE.quiet:
        _print_summary(summary)


def _series_volume(series) -> tuple:
    """First channel of an image series as ``(nz, ny, nx)`` and its geometry."""
    from recon.geometry import stack_slices

    data = series.data[:, 0]  # (nimages, nz, ny, nx)
    if data.shape[1] == 1 and len(data) > 1:
        return data[:, 0], stack_slices([series.geometry(i) for i in range(len(data))])
    return data[0], series.geometry(0)


@app.command()
def convert(
    source: Path = typer.Argument(..., help="ISMRMRD image file (.h5) or BART .cfl."),
    output: Path = typer.Argument(..., help="Output file or directory."),
    fmt: str = typer.Option("nifti", "--format", "-f", help="nifti, png, ismrmrd, dicom, cfl."),
    series: str = typer.Option(
        None,
        "--series",
        help="Only this image series (default: every series of the first one's shape, as frames).",
    ),
) -> None:
    """Convert images between formats (ISMRMRD images or BART cfl in; any export format out).

    BART arrays get a unit-voxel identity geometry (cfl files carry none).
    """
    import numpy as np

    from recon.errors import InputError
    from recon.geometry import Geometry
    from recon.io.export import export

    if source.suffix in (".cfl", ".hdr"):
        from recon.io.cfl import read_cfl

        array = read_cfl(source)
        image = array.reshape(-1, *array.shape[-3:]) if array.ndim >= 3 else array[None]
        geometry = Geometry(image.shape[-3:], (1.0, 1.0, 1.0), np.zeros(3))
    else:
        from recon.io.images import read_ismrmrd_images

        found = read_ismrmrd_images(source)
        if series is not None:
            found = [s for s in found if s.name.split("/")[-1] == series or s.name == series]
            if not found:
                raise InputError(f"{source}: no image series named {series!r}")
        volumes = [_series_volume(s) for s in found]
        shape = volumes[0][0].shape
        image = np.stack([v for v, _ in volumes if v.shape == shape])
        geometry = volumes[0][1]
    out = export(output, image, geometry, format=fmt)
    say(f"wrote {out}")
