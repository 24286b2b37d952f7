"""Coil compression: SVD/PCA and geometric coil compression (GCC).

A compression matrix ``A`` of shape ``(nvirtual, ncoils)`` maps the physical coils to
virtual coils, ``y_v = A y``; its rows are orthonormal, so prewhitened (white) noise stays
white. It is computed once from calibration data and applied to every repetition.

- **SVD** (Buehrer et al., MRM 2007;57:1131; Huang et al., MRI 2008;26:133): the leading
  left singular vectors of the calibration data reshaped to (ncoils, samples); works for
  Cartesian and non-Cartesian calibration samples alike.
- **GCC** (Zhang, Pauly, Levesque, MRM 2013;69:571): the data are inverse-Fourier
  transformed along the fully sampled readout, and each readout position ``x`` gets its
  own matrix from the calibration data in a small window of positions around ``x``. The
  matrices are then *aligned*: going out from the centre, each is rotated by the unitary
  ``P`` closest to its neighbour (``P = U V^H`` from the SVD of ``A_{x-1} A_x^H``, the
  orthogonal Procrustes solution), so the virtual coils vary smoothly along x and the
  compressed data stay consistent for k-space methods (GRAPPA, ESPIRiT).

The number of virtual coils is given directly or as the retained energy fraction
``sum_{i<n} sigma_i^2 / sum sigma_i^2 >= energy``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import array_module, fftc, ifftc
from recon.errors import ConfigError


def _count(sigma2: np.ndarray, nvirtual: int | None, energy: float | None, ncoils: int) -> int:
    if nvirtual is not None:
        if not 1 <= nvirtual <= ncoils:
            raise ConfigError(f"coil compression: nvirtual must be in 1..{ncoils}, got {nvirtual}")
        return int(nvirtual)
    if energy is None:
        return ncoils
    if not 0 < energy <= 1:
        raise ConfigError(f"coil compression: energy must be in (0, 1], got {energy}")
    frac = np.cumsum(sigma2) / max(float(np.sum(sigma2)), np.finfo(float).tiny)
    return int(min(np.searchsorted(frac, energy - 1e-12) + 1, ncoils))


def _left_vectors(flat: Any) -> tuple[Any, np.ndarray]:
    """Left singular vectors (columns, descending) and sigma^2 of ``flat`` (ncoils, n)."""
    xp = array_module(flat)
    flat = flat.astype(xp.complex128)
    lam, u = xp.linalg.eigh(flat @ flat.conj().T)
    lam, u = lam[::-1], u[:, ::-1]
    return u, np.clip(np.asarray(lam.get() if hasattr(lam, "get") else lam), 0, None)


def svd_compression_matrix(
    calib: Any,
    nvirtual: int | None = None,
    energy: float | None = None,
    *,
    coil_axis: int = 0,
) -> Any:
    """SVD compression matrix from calibration data.

    Parameters
    ----------
    calib : complex array with coils at ``coil_axis``
        Calibration k-space (Cartesian ``(ncoils, ...)``) or non-Cartesian calibration
        samples ``(ncoils, nsamples)``: any layout, all other axes are samples.
    nvirtual : int, optional
        Number of virtual coils.
    energy : float, optional
        Retained energy fraction (used when ``nvirtual`` is None); neither: all coils.

    Returns
    -------
    complex64 ``(nvirtual, ncoils)`` with orthonormal rows.
    """
    xp = array_module(calib)
    flat = xp.moveaxis(calib, coil_axis, 0)
    flat = flat.reshape(flat.shape[0], -1)
    u, sigma2 = _left_vectors(flat)
    n = _count(sigma2, nvirtual, energy, flat.shape[0])
    return u[:, :n].conj().T.astype(xp.complex64)


def retained_energy(calib: Any, matrix: Any, *, coil_axis: int = 0) -> float:
    """Fraction of the energy of ``calib`` kept by ``matrix`` (``||A y||^2 / ||y||^2``)."""
    xp = array_module(calib)
    compressed = apply_compression(calib, matrix, coil_axis=coil_axis)
    return float(xp.sum(xp.abs(compressed) ** 2) / xp.sum(xp.abs(calib) ** 2))


def apply_compression(data: Any, matrix: Any, *, coil_axis: int = 0) -> Any:
    """``y_v = A y`` along ``coil_axis`` (A ``(nvirtual, ncoils)``); complex64 output."""
    xp = array_module(data)
    moved = xp.moveaxis(data, coil_axis, -1)
    out = moved.astype(xp.complex64, copy=False) @ xp.asarray(matrix, dtype=xp.complex64).T
    return xp.moveaxis(out, -1, coil_axis)


def gcc_matrices(
    calib: Any,
    nvirtual: int | None = None,
    energy: float | None = None,
    *,
    window: int = 5,
    align: bool = True,
) -> Any:
    """Geometric coil compression matrices, one per readout position (Zhang et al. 2013).

    Parameters
    ----------
    calib : complex ``(ncoils, ..., nx)``
        Cartesian calibration k-space, fully sampled along the readout (last axis); the
        other axes are the calibration region in the phase-encoding directions.
    nvirtual, energy : as in :func:`svd_compression_matrix`; with ``energy`` the count is
        the largest any position needs.
    window : int
        Readout positions (odd) whose data form each position's matrix.
    align : bool
        Rotate neighbouring matrices into alignment (module docstring).

    Returns
    -------
    complex64 ``(nx, nvirtual, ncoils)``.
    """
    xp = array_module(calib)
    nc, nx = calib.shape[0], calib.shape[-1]
    hybrid = ifftc(xp.asarray(calib, dtype=xp.complex64), axes=-1)
    hybrid = xp.moveaxis(hybrid.reshape(nc, -1, nx), -1, 0)  # (nx, nc, npe)
    half = window // 2
    vectors, energies = [], []
    for x in range(nx):
        block = hybrid[max(x - half, 0) : x + half + 1]
        flat = xp.moveaxis(block, 1, 0).reshape(nc, -1)
        u, sigma2 = _left_vectors(flat)
        vectors.append(u)
        energies.append(sigma2)
    counts = [_count(s, nvirtual, energy, nc) for s in energies]
    n = max(counts)
    mats = xp.stack([u[:, :n].conj().T for u in vectors])  # (nx, n, nc)
    if align:
        mats = _align(mats)
    return mats.astype(xp.complex64)


def _align(mats: Any) -> Any:
    """Rotate ``mats[x]`` (nx, n, nc) towards its neighbour, outwards from the centre."""
    xp = array_module(mats)
    out = mats.copy()
    centre = mats.shape[0] // 2
    order = [*range(centre + 1, mats.shape[0]), *range(centre - 1, -1, -1)]
    for x in order:
        ref = out[x - 1] if x > centre else out[x + 1]
        u, _, vh = xp.linalg.svd(ref @ out[x].conj().T)
        out[x] = (u @ vh) @ out[x]
    return out


def apply_gcc(kspace: Any, matrices: Any, *, coil_axis: int = 0) -> Any:
    """Compress k-space ``(..., ncoils, ..., nx)`` with per-readout-position matrices.

    Inverse FFT along the readout (last axis), ``y_v(x) = A_x y(x)``, FFT back.

    Returns
    -------
    complex64, the same shape with ``nvirtual`` coils.
    """
    xp = array_module(kspace)
    hybrid = ifftc(xp.asarray(kspace, dtype=xp.complex64), axes=-1)
    moved = xp.moveaxis(hybrid, coil_axis, -2)  # (..., nc, nx)
    mats = xp.asarray(matrices, dtype=xp.complex64)  # (nx, n, nc)
    out = xp.einsum("xvc,...cx->...vx", mats, moved)
    return fftc(xp.moveaxis(out, -2, coil_axis), axes=-1)
