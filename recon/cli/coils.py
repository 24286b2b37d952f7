"""Coil stages as commands: ``recon prewhiten``, ``recon compress``, ``recon sensmaps``.

Each reads an ISMRMRD file; ``prewhiten`` and ``compress`` write an ISMRMRD file (every
readout transformed, so the result can be handed to any other tool), ``sensmaps`` writes
the maps (``.npz`` with ``maps`` and ``eigenvalues``, or a BART ``.cfl``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import typer

from recon.cli.app import app, say
from recon.errors import ConfigError, InputError


def _report_paths(out: Path, prefix: Path | None) -> tuple[Path, Path]:
    base = prefix if prefix is not None else out.with_suffix("")
    return base.with_name(base.name + ".noise.json"), base.with_name(base.name + ".noise.png")


@app.command()
def prewhiten(
    src: Path = typer.Argument(..., help="Input ISMRMRD file."),
    out: Path = typer.Argument(..., help="Output ISMRMRD file, every readout whitened."),
    noise: Path = typer.Option(
        None, "--noise", help="Separate noise scan (ISMRMRD) or covariance (.npy/.npz)."
    ),
    bandwidth: float = typer.Option(
        None, "--bandwidth", help="Relative receiver noise bandwidth (default: header, 0.793)."
    ),
    report: Path = typer.Option(
        None, "--report", help="Prefix of the noise report files (default: beside OUT)."
    ),
) -> None:
    """Noise-prewhiten every readout; report the noise covariance and correlation."""
    from recon.coils.prewhiten import NoiseWarning
    from recon.coils.whiten_file import prewhiten_file

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoiseWarning)
        result, _ = prewhiten_file(src, out, noise=noise, bandwidth=bandwidth)
    for w in caught:
        say(f"[yellow]warning:[/yellow] {w.message}")
    if result is None:
        say(f"wrote {out} (unchanged copy)")
        return
    json_path, png_path = _report_paths(out, report)
    json_path.write_text(json.dumps(result.as_dict(), indent=1))
    result.plot(png_path)
    s = result.summary()
    say(
        f"wrote {out}: {s['ncoils']} coils whitened from {s['nsamples']} noise samples "
        f"({s['source']}, dwell {s['noise_dwell_us']} us, bandwidth {s['bandwidth']}); "
        f"|correlation| max {s['max_offdiag_correlation']:.3f} mean "
        f"{s['mean_offdiag_correlation']:.3f}, condition {s['condition_number']:.1f}; "
        f"report {json_path.name}, {png_path.name}"
    )


@app.command()
def compress(
    src: Path = typer.Argument(..., help="Input ISMRMRD file (prewhitened preferably)."),
    out: Path = typer.Argument(..., help="Output ISMRMRD file with virtual coils."),
    nvirtual: int = typer.Option(None, "--nvirtual", "-n", help="Number of virtual coils."),
    energy: float = typer.Option(None, "--energy", help="Retained energy fraction, e.g. 0.95."),
    method: str = typer.Option("svd", "--method", help="svd (any trajectory) or gcc."),
    window: int = typer.Option(5, "--window", help="GCC: readout positions per matrix."),
) -> None:
    """Coil compression (SVD or geometric) computed from the calibration readouts."""
    from recon.coils.compress_file import compress_file

    if nvirtual is None and energy is None:
        raise ConfigError("compress: give --nvirtual or --energy")
    matrix, kept = compress_file(
        src, out, nvirtual=nvirtual, energy=energy, method=method, window=window
    )
    say(
        f"wrote {out}: {matrix.shape[-1]} -> {matrix.shape[-2]} coils ({method}), "
        f"{100 * kept:.2f} % of the calibration energy kept"
    )


@app.command()
def sensmaps(
    src: Path = typer.Argument(..., help="Input ISMRMRD file (Cartesian or non-Cartesian)."),
    out: Path = typer.Argument(..., help="Output maps: .npz (maps, eigenvalues) or .cfl."),
    method: str = typer.Option("espirit", "--method", help="espirit, walsh or inati."),
    nmaps: int = typer.Option(1, "--maps", "-m", help="ESPIRiT: number of map sets (1, 2)."),
    kernel: int = typer.Option(6, "--kernel", "-k", help="ESPIRiT kernel width."),
    calib: int = typer.Option(24, "--calib", "-r", help="Calibration region width."),
    thresh: float = typer.Option(0.02, "--thresh", "-t", help="ESPIRiT singular-value threshold."),
    crop: float = typer.Option(0.8, "--crop", "-c", help="ESPIRiT eigenvalue crop."),
) -> None:
    """Coil sensitivity maps for every slice (ESPIRiT, Walsh or Inati)."""
    from recon.coils.sensmap_file import sensitivity_maps_file

    if method not in ("espirit", "walsh", "inati"):
        raise ConfigError(f"sensmaps: unknown method {method!r} (espirit, walsh, inati)")
    if out.suffix not in (".npz", ".cfl"):
        raise InputError(f"{out}: output must end in .npz or .cfl")
    from recon.coils.prewhiten import NoiseWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoiseWarning)
        maps, eig = sensitivity_maps_file(
            src, method=method, nmaps=nmaps, kernel_width=kernel, calib_width=calib,
            thresh=thresh, crop=crop,
        )  # fmt: skip
    for w in caught:
        say(f"[yellow]warning:[/yellow] {w.message}")
    if out.suffix == ".cfl":
        from recon.io.cfl import write_cfl

        write_cfl(out, maps)
    else:
        from recon.io.atomic import atomic_path

        with atomic_path(out) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, maps=maps, eigenvalues=eig if eig is not None else np.zeros(0))
    say(f"wrote {out}: maps {tuple(maps.shape)} ({method})")
