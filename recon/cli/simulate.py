"""``recon simulate``: write a simulated 7 T head acquisition as an ISMRMRD file.

The file and its ground truth (``<file>.truth.npz``) come from :func:`recon.sim.simulate`;
this command maps options onto :class:`recon.sim.spec.SimSpec` and prints a summary.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from recon.cli.app import STATE, app, console, say
from recon.errors import ConfigError


def _angles(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--oblique {text!r}: expected three angles in degrees, a,b,c") from None
    if len(values) != 3:
        raise ConfigError(f"--oblique {text!r}: expected three angles in degrees, a,b,c")
    return values  # type: ignore[return-value]


@app.command()
def simulate(
    output: Path = typer.Argument(..., dir_okay=False, help="Output ISMRMRD/HDF5 file."),
    matrix: int = typer.Option(128, "--matrix", help="In-plane reconstruction matrix."),
    fov: float = typer.Option(220.0, "--fov", help="In-plane field of view (mm)."),
    slices: int = typer.Option(1, "--slices", help="2D slices, or 3D partitions."),
    thickness: float = typer.Option(3.0, "--thickness", help="Slice/partition thickness (mm)."),
    three_d: bool = typer.Option(False, "--3d", help="Cartesian 3D (ky x kz encoding)."),
    coils: int = typer.Option(32, "--coils", help="Receive channels."),
    accel: int = typer.Option(1, "--accel", help="Undersampling along ky."),
    accel_z: int = typer.Option(1, "--accel-z", help="Undersampling along kz (3D)."),
    caipi: int = typer.Option(0, "--caipi", help="CAIPIRINHA ky shift per kz partition (3D)."),
    calib: int = typer.Option(24, "--calib", help="Calibration (ACS) lines along ky."),
    calib_z: int = typer.Option(None, "--calib-z", help="ACS lines along kz (3D)."),
    calib_mode: str = typer.Option(
        "embedded", "--calib-mode", help="embedded, separate or interleaved."
    ),
    partial_fourier: float = typer.Option(
        1.0, "--partial-fourier", help="Fraction of ky lines acquired (0.5, 1]."
    ),
    oversampling: bool = typer.Option(
        True, "--oversampling/--no-oversampling", help="2x readout oversampling."
    ),
    trajectory: str = typer.Option(
        "cartesian",
        "--trajectory",
        help="cartesian, radial, golden-radial, spiral or stack-of-stars.",
    ),
    spokes: int = typer.Option(None, "--spokes", help="Spokes (radial) or interleaves (spiral)."),
    repetitions: int = typer.Option(1, "--repetitions", help="Time frames (fMRI-like)."),
    with_field_map: bool = typer.Option(False, "--field-map", help="Add B0 off-resonance."),
    field_spread: float = typer.Option(40.0, "--field-spread", help="B0 map scale (Hz)."),
    noise: float = typer.Option(0.01, "--noise", help="Noise std per sample (0: none)."),
    noise_readouts: int = typer.Option(128, "--noise-readouts", help="Noise-only readouts."),
    dwell: float = typer.Option(5.0, "--dwell", help="Imaging dwell time (us)."),
    noise_dwell: float = typer.Option(None, "--noise-dwell", help="Noise dwell time (us)."),
    te: float = typer.Option(15.0, "--te", help="Echo time (ms), of the first echo."),
    echoes: int = typer.Option(1, "--echoes", help="Gradient echoes (Cartesian; contrasts)."),
    echo_spacing: float = typer.Option(1.0, "--echo-spacing", help="Echo spacing (ms)."),
    tr: float = typer.Option(50.0, "--tr", help="Repetition time (ms)."),
    flip: float = typer.Option(20.0, "--flip", help="Flip angle (degrees)."),
    oblique: str = typer.Option("0,0,0", "--oblique", help="Rotation about x,y,z (degrees)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
) -> None:
    """Simulate a 7 T head acquisition and write it as a real ISMRMRD file (+ ground truth)."""
    from rich.table import Table

    from recon.sim import SimSpec
    from recon.sim import simulate as run

    if output.suffix.lower() not in (".h5", ".hdf5", ".mrd"):
        raise ConfigError(f"{output}: the output must be an HDF5 file (.h5, .hdf5 or .mrd)")
    spec = SimSpec(
        matrix=matrix,
        fov_mm=fov,
        slices=slices,
        slice_thickness_mm=thickness,
        three_d=three_d,
        ncoils=coils,
        accel=accel,
        accel_z=accel_z,
        caipi_shift=caipi,
        calib=calib,
        calib_z=calib_z,
        calib_mode=calib_mode,
        partial_fourier=partial_fourier,
        oversampling=oversampling,
        trajectory=trajectory,
        spokes=spokes,
        repetitions=repetitions,
        field_map=with_field_map,
        field_spread_hz=field_spread,
        noise_std=noise,
        noise_readouts=noise_readouts,
        dwell_us=dwell,
        noise_dwell_us=noise_dwell,
        te_ms=te,
        echoes=echoes,
        echo_spacing_ms=echo_spacing,
        tr_ms=tr,
        flip_deg=flip,
        oblique_deg=_angles(oblique),
        seed=seed,
    )
    start = time.perf_counter()
    truth = run(output, spec)
    elapsed = time.perf_counter() - start
    table = Table(title=f"simulated {output}", show_header=False)
    kind = "3D" if spec.volumetric else f"2D, {spec.slices} slice(s)"
    table.add_row("acquisition", f"{spec.trajectory}, {kind}, {spec.ncoils} coils, 6.98 T")
    table.add_row("matrix", f"{spec.matrix} x {spec.matrix} x {truth.image.shape[0]}")
    if spec.cartesian:
        table.add_row(
            "sampling",
            f"R = {spec.accel} x {spec.accel_z}, CAIPI shift {spec.caipi_shift}, "
            f"{spec.calib} ACS lines ({spec.calib_mode}), partial Fourier "
            f"{spec.partial_fourier:g}, readout {spec.nx_encoded} samples",
        )
    else:
        table.add_row(
            "trajectory",
            f"{truth.coord.shape[1]} readouts x {truth.coord.shape[2]} samples per "
            f"{'partition' if spec.volumetric else 'slice'}",
        )
    for name, count in truth.counts.items():
        table.add_row(f"readouts: {name}", str(count))
    table.add_row("repetitions", str(spec.repetitions))
    table.add_row("field map", f"+-{spec.field_spread_hz:g} Hz" if spec.field_map else "no")
    table.add_row("ground truth", str(truth.truth_path))
    table.add_row("time", f"{elapsed:.2f} s")
    if not STATE.quiet:
        console.print(table)
    say(f"wrote [bold]{output}[/bold]")
