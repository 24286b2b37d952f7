"""Coil combination: root-sum-of-squares, sensitivity-weighted (Roemer), adaptive.

``coil_images`` have the coils on axis 0: ``(ncoils, *shape)``. Maps from
:mod:`recon.coils.sensitivity` may be one set ``(ncoils, *shape)`` or several
``(nmaps, ncoils, *shape)`` (ESPIRiT with two maps: one image per map).

SNR units (Kellman & McVeigh, MRM 2005;54:1439): when the data were prewhitened so that the
k-space noise of every coil is white with unit variance per complex sample, the orthonormal
FFT keeps that variance in the coil images. ``snr_units=True`` then scales the combined
image so that the noise standard deviation of its real part is 1 (multiplication by
``sqrt(2)``, as Gadgetron's SNR-unit reconstructions do), i.e. the pixel value reads as SNR.
It holds for fully sampled data reconstructed at the acquired resolution; zero filling,
oversampling removal with a non-orthonormal scale, or undersampling change the noise level.
"""

from __future__ import annotations

import math
from typing import Any

from recon.backend import array_module
from recon.coils.sensitivity import inati_maps, walsh_maps


def _snr(image: Any, snr_units: bool) -> Any:
    return image * math.sqrt(2.0) if snr_units else image


def combine_rss(coil_images: Any, *, snr_units: bool = False) -> Any:
    """Root-sum-of-squares ``sqrt(sum_c |x_c|^2)`` (float32, ``shape``).

    In SNR units (prewhitened data) this is the high-SNR approximation of the optimal
    combination's SNR (Larsson et al., MRM 2003;49:388).
    """
    xp = array_module(coil_images)
    out = xp.sqrt(xp.sum(xp.abs(coil_images) ** 2, axis=0))
    return _snr(out, snr_units).astype(xp.float32)


def combine_roemer(
    coil_images: Any,
    maps: Any,
    *,
    psi: Any = None,
    snr_units: bool = False,
    eps: float = 1e-12,
) -> Any:
    """Sensitivity-weighted combination (Roemer et al., MRM 1990;16:192).

    ``x = S^H Psi^-1 y / (S^H Psi^-1 S)`` per pixel: an unbiased estimate of the object (in
    the units of the maps). With ``snr_units`` the image is instead
    ``sqrt(2) S^H Psi^-1 y / sqrt(S^H Psi^-1 S)``, whose noise has unit standard deviation
    per real channel.

    Parameters
    ----------
    coil_images : complex ``(ncoils, *shape)``
    maps : complex ``(ncoils, *shape)`` or ``(nmaps, ncoils, *shape)``
    psi : ``(ncoils, ncoils)``, optional
        Noise covariance of the images; None for prewhitened data (identity).
    snr_units : bool
    eps : float
        Pixels with ``S^H Psi^-1 S <= eps`` (outside the maps' support) are set to 0.

    Returns
    -------
    complex64 ``shape`` (or ``(nmaps, *shape)`` for several maps).
    """
    xp = array_module(coil_images)
    several = maps.ndim == coil_images.ndim + 1
    s = maps if several else maps[None]
    if psi is not None:
        inv = xp.linalg.inv(xp.asarray(psi, dtype=xp.complex128)).astype(xp.complex64)
        weighted = xp.moveaxis(xp.moveaxis(s, 1, -1) @ inv.T, -1, 1)  # Psi^-1 S (Hermitian)
    else:
        weighted = s
    num = xp.sum(xp.conj(weighted) * coil_images[None], axis=1)
    den = xp.real(xp.sum(xp.conj(weighted) * s, axis=1))
    safe = xp.where(den > eps, den, 1.0)
    scale = xp.sqrt(safe) if snr_units else safe
    out = xp.where(den > eps, num / scale, 0)
    out = _snr(out, snr_units).astype(xp.complex64)
    return out if several else out[0]


def adaptive_combine(
    coil_images: Any,
    *,
    method: str = "inati",
    window: int = 7,
    snr_units: bool = False,
) -> Any:
    """Adaptive combination: maps estimated from the images themselves, then Roemer.

    ``method`` is ``"inati"`` (fast iterative, default) or ``"walsh"`` (per-pixel
    eigenvectors of the local covariance); both are phase-referenced to the dominant coil,
    so the combined image keeps the object's phase. The data should be prewhitened.

    Returns
    -------
    complex64 ``shape``.
    """
    if method == "inati":
        maps = inati_maps(coil_images, window=window)
    elif method == "walsh":
        maps = walsh_maps(coil_images, window=window)
    else:
        from recon.errors import ConfigError

        raise ConfigError(f"adaptive combine: unknown method {method!r} (inati or walsh)")
    return combine_roemer(coil_images, maps, snr_units=snr_units)
