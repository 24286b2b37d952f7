"""Sensitivity maps for every slice of an ISMRMRD file (the ``recon sensmaps`` stage).

Cartesian data: from the calibration readouts (or the centre of fully sampled k-space),
oversampling removed. Non-Cartesian data: from a low-resolution calibration region gridded
from the centre of k-space (:func:`recon.coils.sensitivity.noncartesian_calibration`).
The maps are computed on the prewhitened data when the file holds noise readouts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from recon.coils.prewhiten import (
    NoiseWarning,
    noise_covariance,
    prewhiten,
    scale_covariance,
    whitening_matrix,
)
from recon.coils.sensitivity import (
    calibration_images,
    espirit_maps,
    inati_maps,
    noncartesian_calibration,
    walsh_maps,
)
from recon.errors import InputError
from recon.io.ismrmrd import read_dataset
from recon.io.sort import NoiseData, sort_cartesian, sort_noncartesian


def _whitener(noise: NoiseData | None, dwell_us: float, bandwidth: float | None) -> np.ndarray:
    if noise is None:
        warnings.warn("no noise readouts: maps from data that are not prewhitened", NoiseWarning,
                      stacklevel=3)  # fmt: skip
        return None
    psi = scale_covariance(
        noise_covariance(noise.samples),
        noise_dwell_us=noise.dwell_time_us,
        imaging_dwell_us=dwell_us,
        bandwidth=bandwidth or noise.relative_bandwidth or 0.793,
    )
    return whitening_matrix(psi)


def _maps(calib: np.ndarray, shape: tuple[int, ...], method: str, options: dict) -> tuple:
    width = options["calib_width"]
    if method == "espirit":
        return espirit_maps(calib, shape, return_eigenvalues=True, **options)
    centre = tuple(
        slice(max(n // 2 - width // 2, 0), max(n // 2 - width // 2, 0) + min(width, n))
        for n in calib.shape[1:]
    )
    images = calibration_images(calib[(slice(None), *centre)], shape)
    squeeze = [a for a, n in enumerate(shape) if n == 1]
    flat = np.squeeze(images, axis=tuple(a + 1 for a in squeeze))
    maps = walsh_maps(flat) if method == "walsh" else inati_maps(flat)
    return np.expand_dims(maps, tuple(a + 1 for a in squeeze)), None


def sensitivity_maps_file(
    src: str | Path,
    *,
    method: str = "espirit",
    bandwidth: float | None = None,
    **options,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Maps of every slice/repetition of ``src``.

    Parameters
    ----------
    method : {"espirit", "walsh", "inati"}
    options : keyword arguments of :func:`recon.coils.sensitivity.espirit_maps`
        (``nmaps``, ``kernel_width``, ``calib_width``, ``thresh``, ``crop``); Walsh and Inati
        use ``calib_width`` only.

    Returns
    -------
    maps : complex64 ``(*batch, [nmaps,] ncoils, nz, ny, nx)``
    eigenvalues : float32 ``(*batch, [nmaps,] nz, ny, nx)`` (ESPIRiT) or None
    """
    raw = read_dataset(src)
    if method != "espirit":
        options = {"calib_width": options.get("calib_width", 24)}
    cartesian = raw.header.encoding.trajectory.lower() == "cartesian"
    if cartesian:
        data = sort_cartesian(raw, remove_oversampling=True)
        w = _whitener(data.noise, data.dwell_time_us, bandwidth)
        source = data.calib if data.calib is not None else data.kspace
        shape = tuple(data.kspace.shape[-3:])
        batch = source.shape[:-4]
        calibs = source.reshape(-1, *source.shape[-4:])
    else:
        data = sort_noncartesian(raw)
        w = _whitener(data.noise, data.dwell_time_us, bandwidth)
        shape = tuple(data.image_shape)
        batch = data.samples.shape[:-3]
        samples = data.samples.reshape(-1, *data.samples.shape[-3:])
        coord = data.coord.reshape(-1, *data.coord.shape[-3:])
        weights = None if data.weights is None else data.weights.reshape(-1, *coord.shape[1:-1])
        width = options.get("calib_width", 24)
        calibs = [
            noncartesian_calibration(
                samples[i], coord[i], tuple(min(width, n) for n in shape),
                dcf=None if weights is None else weights[i],
            )
            for i in range(len(samples))
        ]  # fmt: skip
        shape = shape if len(shape) == 3 else (1, *shape)
        calibs = [c if c.ndim == 4 else c[:, None] for c in calibs]
    if len(calibs) == 0:
        raise InputError(f"{src}: no data to compute sensitivity maps from")
    maps, eigs = [], []
    for calib in calibs:
        if w is not None:
            calib = prewhiten(calib, w)
        m, e = _maps(calib, shape, method, options)
        maps.append(m)
        eigs.append(e)
    out = np.stack(maps).reshape(*batch, *maps[0].shape)
    eig = None if eigs[0] is None else np.stack(eigs).reshape(*batch, *eigs[0].shape)
    return out, eig
