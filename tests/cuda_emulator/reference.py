"""Exact nonuniform DFTs (float64) and random test data for the NUFFT and emulator tests."""

from __future__ import annotations

import numpy as np


def dft_matrix(coord: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``E[j, r] = exp(-i 2 pi k_j . r / N) / sqrt(prod N)``, r centred, complex128.

    ``coord`` has shape ``(npts, ndim)`` in grid units; the columns follow the C order of an
    image of ``shape``.
    """
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    r = np.stack([g.ravel() for g in grids], axis=-1).astype(np.float64)
    phase = (np.asarray(coord, dtype=np.float64) / np.asarray(shape, dtype=np.float64)) @ r.T
    return np.exp(-2j * np.pi * phase) / np.sqrt(np.prod(shape))


def nudft(image: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """Exact forward transform of ``(batch, *shape)`` images at ``coord`` (npts, ndim)."""
    shape = image.shape[1:]
    flat = image.reshape(image.shape[0], -1).astype(np.complex128)
    return flat @ dft_matrix(coord, shape).T


def nudft_adjoint(samples: np.ndarray, coord: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Exact adjoint transform of ``(batch, npts)`` samples onto ``(batch, *shape)``."""
    out = samples.astype(np.complex128) @ dft_matrix(coord, shape).conj()
    return out.reshape(samples.shape[0], *shape)


def random_complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard complex Gaussian array, complex64."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def random_coord(rng: np.random.Generator, npts: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform random coordinates in [-N/2, N/2) per axis, shape ``(npts, ndim)``."""
    return (rng.random((npts, len(shape))) - 0.5) * np.asarray(shape, dtype=np.float64)


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    """``||x - r|| / ||r||`` in float64."""
    x = np.asarray(estimate, dtype=np.complex128)
    r = np.asarray(reference, dtype=np.complex128)
    return float(np.linalg.norm(x - r) / np.linalg.norm(r))


def variable_density_spiral(ninterleaves: int, nsamples: int, n: int, turns: float, alpha: float):
    """Variable-density spiral-out interleaves ``k = (n/2) s^alpha exp(i 2 pi turns s)``, s in
    [0, 1), rotated evenly; alpha > 1 samples the centre more densely than the edge (so coil
    maps can be calibrated from the centre). Shape (ninterleaves, nsamples, 2), grid units.
    (recon.noncart.trajectory.spiral is uniform density.)"""
    s = np.arange(nsamples) / nsamples
    arm = (n / 2) * s**alpha * np.exp(2j * np.pi * turns * s)
    k = arm[None] * np.exp(2j * np.pi * np.arange(ninterleaves) / ninterleaves)[:, None]
    return np.stack([k.imag, k.real], -1).astype(np.float32)
