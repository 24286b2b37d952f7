"""Partial Fourier reconstruction along one phase-encoding axis: zero-fill, homodyne, POCS.

- zero-fill: leave the missing lines at zero (default unless the config asks otherwise).
- homodyne (Noll, Nishimura, Macovski, IEEE TMI 1991;10:154): weight the acquired lines
  ``2`` on the asymmetric side, a linear ramp across the symmetric centre and ``0`` where not
  acquired, then demodulate by the phase of the symmetric low-resolution image and keep
  the real part.
- POCS (Haacke, Lindskog, Lin, JMR 1991;92:126): alternate between imposing the low-resolution
  phase on the image and putting the acquired samples back.

Each method works per coil and returns k-space, so it sits between GRAPPA/SENSE filling and
the coil combination. The acquired extent is ``[first, last]`` along the axis and the
symmetric region is the part mirrored about the k-space centre ``n // 2``.
"""

from __future__ import annotations

from typing import Any

from recon.backend import array_module, fftc, ifftc
from recon.errors import ConfigError

METHODS = ("zero", "homodyne", "pocs")


def acquired_extent(kspace: Any, axis: int) -> tuple[int, int]:
    """First and last non-zero index of ``kspace`` along ``axis``."""
    xp = array_module(kspace)
    other = tuple(a for a in range(kspace.ndim) if a != axis % kspace.ndim)
    lines = xp.nonzero(xp.abs(kspace).sum(axis=other) > 0)[0]
    if lines.size == 0:
        raise ConfigError("partial Fourier: k-space is empty")
    return int(lines[0]), int(lines[-1])


def _shape_along(n: int, axis: int, ndim: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis % ndim] = n
    return tuple(shape)


def _symmetric(n: int, first: int, last: int) -> tuple[int, int]:
    centre = n // 2
    half = min(centre - first, last - centre)
    if half < 1:
        raise ConfigError("partial Fourier: the k-space centre is not inside the acquired lines")
    return centre - half, centre + half


def _phase(kspace: Any, axis: int, lo: int, hi: int, spatial: tuple[int, ...]) -> Any:
    """Unit phasor of the image from the symmetric centre (Hann-filtered along ``axis``)."""
    xp = array_module(kspace)
    n = kspace.shape[axis]
    idx = xp.arange(n)
    width = hi - lo + 1
    hann = 0.5 - 0.5 * xp.cos(2 * xp.pi * (idx - lo + 0.5) / width)
    hann = xp.where((idx >= lo) & (idx <= hi), hann, 0.0).astype(xp.float32)
    low = ifftc(kspace * hann.reshape(_shape_along(n, axis, kspace.ndim)), axes=spatial)
    return xp.exp(1j * xp.angle(low)).astype(xp.complex64)


def partial_fourier(
    kspace: Any,
    method: str = "zero",
    *,
    axis: int = -2,
    ndim: int = 2,
    iterations: int = 10,
    extent: tuple[int, int] | None = None,
) -> Any:
    """Fill the missing partial Fourier part of centred k-space.

    Parameters
    ----------
    kspace : array, complex, shape ``(..., *spatial)``
        Per-coil centred k-space (e.g. ``(ncoils, ny, nx)``) after parallel imaging.
    method : str
        ``"zero"``, ``"homodyne"`` or ``"pocs"``.
    axis : int
        The partial Fourier axis (default ky, ``-2``).
    ndim : int
        Number of spatial axes (the trailing ones, transformed together).
    iterations : int
        POCS iterations.
    extent : (int, int), optional
        First and last acquired index along ``axis`` (default: from the non-zero lines).

    Returns
    -------
    array, complex64
        k-space of the same shape; acquired samples are unchanged for zero-fill and POCS.
    """
    if method not in METHODS:
        raise ConfigError(f"partial Fourier method {method!r}: use one of {', '.join(METHODS)}")
    if method == "zero":
        return kspace
    xp = array_module(kspace)
    n = kspace.shape[axis]
    first, last = extent if extent is not None else acquired_extent(kspace, axis)
    lo, hi = _symmetric(n, first, last)
    if (lo - first) + (last - hi) <= 1:  # symmetric up to the unpaired Nyquist line
        return kspace
    spatial = tuple(range(-ndim, 0))
    phasor = _phase(kspace, axis, lo, hi, spatial)
    idx = xp.arange(n)
    acquired = ((idx >= first) & (idx <= last)).reshape(_shape_along(n, axis, kspace.ndim))
    if method == "homodyne":
        # Ramp from 0 to 2 across the symmetric region, 2 on the extra side: pre-weighting
        # whose even part is 1 everywhere (Noll 1991).
        ramp = (idx - lo + 0.5) / (hi - lo + 1)
        if last > hi:
            weight = xp.where(idx < lo, 0.0, xp.where(idx > hi, 2.0, 2.0 * ramp))
        else:
            weight = xp.where(idx > hi, 0.0, xp.where(idx < lo, 2.0, 2.0 - 2.0 * ramp))
        weight = weight.astype(xp.float32).reshape(_shape_along(n, axis, kspace.ndim))
        image = ifftc(kspace * weight, axes=spatial)
        real = xp.real(image * xp.conj(phasor))
        return fftc((real * phasor).astype(xp.complex64), axes=spatial)
    k = kspace.astype(xp.complex64)
    for _ in range(iterations):
        image = ifftc(k, axes=spatial)
        image = xp.abs(image) * phasor
        k = xp.where(acquired, kspace, fftc(image, axes=spatial))
    return k
