"""``recon grappa``, ``recon sense`` and ``recon pics``: Cartesian reconstructions of a file.

Each command reads an ISMRMRD file (all slices and repetitions), prewhitens with the noise
readouts, removes the readout oversampling and reconstructs (see
:mod:`recon.cartesian.chain`). Parameters come from the command line, else from the scanner
config given with ``--config`` (a shipped name or a TOML path, validated by
:func:`recon.pipeline.config.load_config`: ``[grappa]``, ``[sense]``, ``[pics]``,
``[partial_fourier]``, ``[combine]``), else from the built-in defaults (partial Fourier
zero-fill without a config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import typer

from recon.cli.app import app, say
from recon.errors import ConfigError

FORMAT_HELP = "nifti (default), png, ismrmrd, dicom or cfl."
CONFIG_HELP = "Scanner config: shipped name or TOML path."


def _config(name: str | None) -> Any:
    if name is None:
        return None
    from recon.pipeline.config import load_config

    return load_config(name)


def _pick(cli: Any, config: Any, dotted: str, default: Any) -> Any:
    """The command-line value, else the config's ``section.key``, else the default."""
    if cli is not None:
        return cli
    return default if config is None else config.get(dotted)


def _maps_method(cli: str | None, config: Any) -> str:
    """``--maps``, else the config's ``sensitivity.method`` when it is lowres or espirit."""
    if cli is not None:
        return cli
    method = _pick(None, config, "sensitivity.method", "lowres")
    return method if method in ("lowres", "espirit") else "lowres"


def _magnitude(image: np.ndarray) -> np.ndarray:
    """``(*batch, nmaps, nz, ny, nx)`` -> RSS over the maps ``(*batch, nz, ny, nx)``."""
    return np.sqrt(np.sum(np.abs(image) ** 2, axis=-4))


def parse_kernel(text: str) -> tuple[int, ...]:
    """``"5x4"`` (readout x phase, Gadgetron's order) -> ``(4, 5)`` in array order."""
    try:
        sizes = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(
            f"kernel {text!r}: use e.g. 5x4 (readout x phase [x partition])"
        ) from None
    if len(sizes) not in (2, 3) or min(sizes) < 1:
        raise ConfigError(f"kernel {text!r}: two or three positive sizes, e.g. 5x4 or 5x4x2")
    return sizes[::-1]


def _load(path: Path):
    from recon.io.ismrmrd import read_dataset
    from recon.io.sort import sort_cartesian

    raw = read_dataset(path)
    return raw.header, sort_cartesian(raw)


def _write(output: Path, image: np.ndarray, header: Any, data: Any, fmt: str, method: str):
    """Export ``(*batch, nz, ny, nx)``; 2D multi-slice data are stacked along z."""
    from recon.io.export import export, make_sidecar

    volume = image.reshape(-1, *image.shape[-3:])
    if len(data.geometry) > 1:
        nslices = len(data.geometry)
        volume = volume.reshape(nslices, -1, *image.shape[-2:]).transpose(1, 0, 2, 3)
    geometry = data.stacked_geometry().with_shape(tuple(volume.shape[-3:]))
    sidecar = make_sidecar(header, method=method, acceleration=data.acceleration)
    return export(output, volume, geometry, format=fmt, header=header, sidecar=sidecar)


@app.command()
def grappa(
    input: Path = typer.Argument(..., exists=True, dir_okay=False, help="ISMRMRD raw data."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image file."),
    fmt: str = typer.Option("nifti", "--format", help=FORMAT_HELP),
    kernel: str = typer.Option(None, "--kernel", help="Kernel readout x phase [x partition]."),
    reg: float = typer.Option(None, "--reg", help="Tikhonov weight relative to ||A||^2/n."),
    pf: str = typer.Option(None, "--pf", help="Partial Fourier: zero, homodyne or pocs."),
    prewhiten: bool = typer.Option(True, "--prewhiten/--no-prewhiten", help="Use noise scans."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    gfactor: Path = typer.Option(None, "--gfactor", help="Also write the g-factor map here."),
    combine: str = typer.Option(None, "--combine", help="Coil combination: rss or adaptive."),
) -> None:
    """GRAPPA (any R_y, R_y x R_z CAIPI) with embedded or separate calibration."""
    from recon.cartesian.chain import grappa_chain, grappa_gfactor

    cfg = _config(config)
    pf_method = _pick(pf, cfg, "partial_fourier.method", "zero")
    pf_iterations = _pick(None, cfg, "partial_fourier.iterations", 10)
    weight = _pick(reg, cfg, "grappa.lambda", 5e-4)
    how = _pick(combine, cfg, "combine.method", "rss")
    if how not in ("rss", "adaptive"):
        raise ConfigError(f"coil combination {how!r}: recon grappa supports rss or adaptive")
    header, data = _load(input)
    ndim = 2 if data.shape[0] == 1 else 3
    if kernel is not None:
        sizes = parse_kernel(kernel)
        if ndim == 3 and len(sizes) == 2:
            sizes = (2 if data.acceleration[1] > 1 else 1, *sizes)
        if ndim == 2 and len(sizes) == 3:
            raise ConfigError(f"kernel {kernel!r}: 2D data take readout x phase only")
    else:
        sizes = _pick(None, cfg, f"grappa.kernel_{ndim}d", None)
    image = grappa_chain(
        data,
        kernel=sizes,
        reg=weight,
        pf_method=pf_method,
        pf_iterations=pf_iterations,
        whiten=prewhiten,
        combine=how,
    )
    path = _write(output, image, header, data, fmt, f"GRAPPA R={data.acceleration}")
    say(f"wrote {path} ({'x'.join(map(str, image.shape[-3:][::-1]))})")
    if gfactor is not None:
        g = grappa_gfactor(data, kernel=sizes, reg=weight, whiten=prewhiten)
        gpath = _write(gfactor, g, header, data, fmt, "GRAPPA g-factor")
        say(f"wrote {gpath}")


@app.command()
def sense(
    input: Path = typer.Argument(..., exists=True, dir_okay=False, help="ISMRMRD raw data."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image file."),
    fmt: str = typer.Option("nifti", "--format", help=FORMAT_HELP),
    iterations: int = typer.Option(None, "--iterations", "-i", help="CG iterations (20)."),
    lam: float = typer.Option(None, "--lambda", "-l", help="Tikhonov weight (0)."),
    prewhiten: bool = typer.Option(True, "--prewhiten/--no-prewhiten", help="Use noise scans."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    maps: str = typer.Option(None, "--maps", help="Coil maps: lowres or espirit."),
    nmaps: int = typer.Option(1, "--nmaps", help="ESPIRiT maps: 1, or 2 (soft SENSE)."),
) -> None:
    """CG-SENSE with coil maps from the calibration region (one or two ESPIRiT maps)."""
    from recon.cartesian.chain import sense_chain

    cfg = _config(config)
    its = _pick(iterations, cfg, "sense.iterations", 20)
    weight = _pick(lam, cfg, "sense.lambda", 0.0)
    method = _maps_method(maps, cfg)
    header, data = _load(input)
    image = sense_chain(
        data, maps_method=method, nmaps=nmaps, iterations=its, l2=weight, whiten=prewhiten
    )
    path = _write(output, _magnitude(image), header, data, fmt, "CG-SENSE")
    say(f"wrote {path}")


@app.command()
def pics(
    input: Path = typer.Argument(..., exists=True, dir_okay=False, help="ISMRMRD raw data."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image file."),
    fmt: str = typer.Option("nifti", "--format", help=FORMAT_HELP),
    regularizers: str = typer.Option(
        None,
        "-R",
        "--regularizer",
        help="e.g. l1-wavelet:0.005, tv:0.002, or both comma-separated.",
    ),
    iterations: int = typer.Option(None, "--iterations", "-i", help="Iterations (50)."),
    solver: str = typer.Option(None, "--solver", help="auto, fista, pdhg or cg."),
    prewhiten: bool = typer.Option(True, "--prewhiten/--no-prewhiten", help="Use noise scans."),
    config: str = typer.Option(None, "--config", help=CONFIG_HELP),
    maps: str = typer.Option(None, "--maps", help="Coil maps: lowres or espirit."),
) -> None:
    """Regularised SENSE (L1-wavelet, TV, LLR) with BART-like data scaling."""
    from recon.cartesian.chain import sense_chain

    cfg = _config(config)
    regs = _pick(regularizers, cfg, "pics.regularizer", "l1-wavelet:0.005")
    its = _pick(iterations, cfg, "pics.iterations", 50)
    how = _pick(solver, cfg, "pics.solver", "auto")
    method = _maps_method(maps, cfg)
    header, data = _load(input)
    image = sense_chain(
        data, maps_method=method, regularizers=regs, iterations=its, solver=how, whiten=prewhiten
    )
    path = _write(output, _magnitude(image), header, data, fmt, f"pics {regs}")
    say(f"wrote {path}")
