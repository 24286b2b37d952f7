"""Simulated Cartesian data for the parallel imaging / CS tests (helper of tests/test_*.py).

A 7 T-like setting from the simulator (:mod:`recon.sim`): the brain phantom with smooth phase
and a 32-channel loop array (Biot-Savart), maps normalised to ``sum |S|^2 = 1`` (ESPIRiT-like),
white noise added in k-space.
"""

from __future__ import annotations

import numpy as np

from recon.backend import fftc
from recon.io.sort import CartesianData
from recon.sim.coils import coil_sensitivities
from recon.sim.phantom import brain_phantom


def phantom(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Brain phantom of the simulator (:func:`recon.sim.phantom.brain_phantom`), 220 mm FOV."""
    return brain_phantom(shape, seed=seed)


def coil_maps(ncoils: int, shape: tuple[int, ...]) -> np.ndarray:
    """Biot-Savart loop-array maps of the simulator, ``sum |S|^2 = 1`` (ESPIRiT-like)."""
    return coil_sensitivities(ncoils, shape)


def kspace(image: np.ndarray, maps: np.ndarray, noise: float = 0.0, seed: int = 1) -> np.ndarray:
    """Fully sampled centred k-space ``(ncoils, *shape)`` with optional white noise (std)."""
    k = fftc(maps * image, axes=tuple(range(1, maps.ndim)))
    if noise:
        rng = np.random.default_rng(seed)
        k = k + noise * (
            rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)
        ) / np.sqrt(2)
    return k.astype(np.complex64)


def support(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the object."""
    return np.abs(image) > 1e-3


def sorted_series(
    series: np.ndarray, mask_y: np.ndarray, acs: slice, accel: tuple[int, int]
) -> CartesianData:
    """In-memory sorted data (as :func:`recon.io.sort.sort_cartesian` returns) of a 2D series.

    ``series`` is ``(nrep, ncoils, ny, nx)`` fully sampled k-space; imaging lines are
    ``mask_y``, the calibration lines ``acs`` (in every repetition).
    """
    nrep, nc, ny, nx = series.shape
    k = series * mask_y[None, None, :, None]
    kspace = k.reshape(1, 1, 1, nrep, 1, nc, 1, ny, nx).astype(np.complex64)
    mask = np.broadcast_to(mask_y, (1, 1, 1, nrep, 1, 1, ny)).copy()
    calib = series[:, :, acs].reshape(1, 1, 1, nrep, 1, nc, 1, acs.stop - acs.start, nx)
    calib_mask = np.ones((1, 1, 1, nrep, 1, 1, acs.stop - acs.start), bool)
    return CartesianData(
        kspace=kspace,
        mask=mask,
        axes=("slice", "contrast", "phase", "repetition", "set"),
        counters={},
        encoding=None,
        acceleration=accel,
        dwell_time_us=1.0,
        oversampling_removed=True,
        geometry=[],
        calib=calib.astype(np.complex64),
        calib_mask=calib_mask,
        calib_region=(slice(0, 1), acs),
        noise=None,
    )
