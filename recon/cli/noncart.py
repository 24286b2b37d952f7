"""``recon grid`` (non-Cartesian reconstruction of a file) and ``recon nufft`` (NUFFT check).

``recon grid`` reads an ISMRMRD file with a stored trajectory (radial, spiral, ...), and per
slice/contrast/repetition reconstructs by gridding (density compensation + adjoint NUFFT,
root-sum-of-squares over coils), CG-SENSE with Toeplitz embedding, or pics-style L1-wavelet/TV
(coil maps from the gridded centre of k-space), then exports the magnitude images.

``recon nufft`` times a NUFFT on random points and data and measures its error against the
exact NUDFT on a subset: a quick check of a backend on this machine.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import typer

from recon.cli.app import app, say
from recon.errors import ConfigError

METHODS = ("grid", "cg-sense", "pics")
DCF_CHOICES = ("pipe-menon", "radial", "none", "file")


def _reconstruct_one(samples, coord, shape, *, method, dcf, weights_file, eps, iterations,
                     regularizers, calib_radius, plan_options):  # fmt: skip
    from recon.backend import rss
    from recon.noncart.reconstruct import (
        calibration_maps,
        cg_sense,
        density_weights,
        noncart_pics,
    )

    if dcf == "file":
        if weights_file is None:
            raise ConfigError("--dcf file: the file stores no density weights")
        weights = weights_file
    else:
        weights = density_weights(coord, shape, dcf, **plan_options)
    if method == "grid":
        from recon.noncart.nufft import NufftPlan

        images = NufftPlan(shape, coord, eps=eps, **plan_options).adjoint(samples * weights)
        return rss(images, axis=0)
    maps = calibration_maps(samples, coord, shape, weights=weights, radius=calib_radius,
                            **plan_options)  # fmt: skip
    if method == "cg-sense":
        return cg_sense(samples, coord, maps, weights=weights, iterations=iterations, eps=eps,
                        **plan_options)  # fmt: skip
    return noncart_pics(samples, coord, maps, weights=weights, iterations=iterations, eps=eps,
                        regularizers=regularizers, **plan_options)  # fmt: skip


@app.command()
def grid(
    input: Path = typer.Argument(..., exists=True, dir_okay=False, help="ISMRMRD raw data."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image file."),
    fmt: str = typer.Option("nifti", "--format", help="nifti, png, ismrmrd, dicom or cfl."),
    method: str = typer.Option("grid", "--method", "-m", help="grid, cg-sense or pics."),
    dcf: str = typer.Option("pipe-menon", "--dcf", help="pipe-menon, radial, none or file."),
    eps: float = typer.Option(1e-4, "--eps", help="NUFFT tolerance."),
    iterations: int = typer.Option(15, "--iterations", "-i", help="CG / FISTA iterations."),
    regularizers: str = typer.Option(
        "l1-wavelet:0.005", "-R", "--regularizer", help="pics: l1-wavelet:LAM or tv:LAM."
    ),
    calib_radius: float = typer.Option(12.0, "--calib-radius", help="Coil maps: k radius."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Non-Cartesian reconstruction (gridding, CG-SENSE or pics) of an ISMRMRD file."""
    from recon.backend import Device, to_host
    from recon.geometry import stack_slices
    from recon.io.export import export, make_sidecar
    from recon.io.ismrmrd import read_dataset
    from recon.io.sort import sort_noncartesian

    if method not in METHODS:
        raise ConfigError(f"--method {method!r}: use one of {', '.join(METHODS)}")
    if dcf not in DCF_CHOICES:
        raise ConfigError(f"--dcf {dcf!r}: use one of {', '.join(DCF_CHOICES)}")
    dev = Device(device)
    raw = read_dataset(input)
    data = sort_noncartesian(raw)
    shape = tuple(data.image_shape)
    nbatch = math.prod(data.samples.shape[: len(data.axes)])
    samples = data.samples.reshape(nbatch, *data.samples.shape[len(data.axes) :])
    coord = data.coord.reshape(nbatch, *data.coord.shape[len(data.axes) :])
    stored = None if data.weights is None else data.weights.reshape(nbatch, *coord.shape[1:-1])
    say(f"{input.name}: {nbatch} image(s) {shape}, {samples.shape[1]} coil(s), "
        f"{math.prod(coord.shape[1:-1])} samples each, method {method} on {dev}")  # fmt: skip
    start = time.perf_counter()
    images = []
    with dev.use():
        for b in range(nbatch):
            image = _reconstruct_one(
                dev.to(samples[b]), dev.to(coord[b]), shape, method=method, dcf=dcf,
                weights_file=None if stored is None else dev.to(stored[b]), eps=eps,
                iterations=iterations, regularizers=regularizers, calib_radius=calib_radius,
                plan_options={"device": dev},
            )  # fmt: skip
            images.append(np.abs(to_host(image)).astype(np.float32))
    volume = np.stack(images)
    if len(shape) == 2:  # 2D: slices (and other batch entries) stacked along z
        volume = volume.reshape(len(data.geometry), -1, *shape).transpose(1, 0, 2, 3)
    geometry = data.geometry[0] if len(data.geometry) == 1 else stack_slices(data.geometry)
    geometry = geometry.with_shape(tuple(volume.shape[-3:]))
    sidecar = make_sidecar(raw.header, method=f"non-Cartesian {method} (dcf {dcf})")
    path = export(output, volume, geometry, format=fmt, header=raw.header, sidecar=sidecar)
    say(f"wrote {path} in {time.perf_counter() - start:.1f} s")


@app.command()
def nufft(
    shape: str = typer.Option("256x256", "--shape", help="Image shape, e.g. 256x256 or 64x64x64."),
    points: int = typer.Option(200_000, "--points", help="Number of random points."),
    coils: int = typer.Option(8, "--coils", help="Transforms per call (coils)."),
    eps: float = typer.Option(1e-4, "--eps", help="Requested tolerance."),
    backend: str = typer.Option("auto", "--backend", help="auto, finufft, cuda or cufinufft."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    repeats: int = typer.Option(3, "--repeats", help="Timed repeats (median)."),
) -> None:
    """Time the forward and adjoint NUFFT and measure their error against the exact NUDFT."""
    from recon.backend import Device, to_host
    from recon.metrics import nrmse
    from recon.noncart.nudft import nudft_adjoint, nudft_forward
    from recon.noncart.nufft import NufftPlan

    try:
        dims = tuple(int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--shape {shape!r}: use e.g. 256x256 or 64x64x64") from None
    if len(dims) not in (2, 3) or min(dims) < 2 or points < 1 or coils < 1 or repeats < 1:
        raise ConfigError("need a 2D/3D --shape >= 2, and --points, --coils, --repeats >= 1")
    dev = Device(device)
    gen = np.random.default_rng(0)
    coord = ((gen.random((points, len(dims))) - 0.5) * np.asarray(dims)).astype(np.float32)
    image = gen.standard_normal((coils, *dims)) + 1j * gen.standard_normal((coils, *dims))
    samples = gen.standard_normal((coils, points)) + 1j * gen.standard_normal((coils, points))
    with dev.use():
        plan = NufftPlan(dims, dev.to(coord), eps=eps, backend=backend, device=dev)
        say(f"backend {plan.backend_name} on {dev}: {coils} x {points} points, image {dims}")
        subset = gen.choice(points, min(points, 256), replace=False)
        pixels = gen.choice(math.prod(dims), min(math.prod(dims), 256), replace=False)
        cases = (
            ("forward (type 2)", plan.forward, image.astype(np.complex64),
             lambda out: nrmse(out[0, subset], nudft_forward(image[0], coord[subset]))),
            ("adjoint (type 1)", plan.adjoint, samples.astype(np.complex64),
             lambda out: nrmse(out[0].ravel()[pixels],
                               nudft_adjoint(samples[0], coord, dims, pixels))),
        )  # fmt: skip
        for label, run, data, error in cases:
            data = dev.to(data)
            out = to_host(run(data))
            times = []
            for _ in range(repeats):
                begin = time.perf_counter()
                result = run(data)
                to_host(result[:1, :1])  # synchronises a GPU
                times.append(time.perf_counter() - begin)
            seconds = float(np.median(times))
            say(f"{label}: {seconds * 1e3:.1f} ms, {coils * points / seconds:.3g} points/s, "
                f"error vs exact NUDFT {error(out):.2e} (eps {eps:g})")  # fmt: skip
