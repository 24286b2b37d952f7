"""Linear operators with forward and adjoint for Cartesian reconstruction, written against ``xp``.

Every operator has ``ishape``/``oshape`` and ``forward(x)``, ``adjoint(y)`` and ``normal(x)``
(``A^H A x``); the adjoint tests in ``tests/test_operators.py`` check
``<A x, y> = <x, A^H y>`` to 1e-5 in complex64.

The SENSE operator can run on *uncentred* arrays (``centered=False``): the caller then passes
``ifftshift``-ed maps, mask and data once (:func:`to_uncentered`) and every iteration saves the
four shift copies of the centred FFT. Circular shifts commute with the periodic finite
differences and (up to the random cycle spin) with the periodic wavelet, so the regularisers
are unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft

from recon.backend import array_module, fftc, ifftc

_WORKERS = -1  # scipy.fft: all CPU workers


def _fft(x: Any, axes: tuple[int, ...], inverse: bool, overwrite: bool = False) -> Any:
    xp = array_module(x)
    if xp is np:
        fn = scipy.fft.ifftn if inverse else scipy.fft.fftn
        return fn(x, axes=axes, norm="ortho", workers=_WORKERS, overwrite_x=overwrite)
    fn = xp.fft.ifftn if inverse else xp.fft.fftn
    return fn(x, axes=axes, norm="ortho")


def xp_expand(x: Any, axis: int) -> Any:
    """``x`` with a new length-1 axis at ``axis`` (NumPy/CuPy ``expand_dims``)."""
    return array_module(x).expand_dims(x, axis)


def to_uncentered(x: Any, ndim: int) -> Any:
    """``ifftshift`` over the last ``ndim`` axes: centred layout -> uncentred (DC at index 0)."""
    xp = array_module(x)
    return xp.fft.ifftshift(x, axes=tuple(range(-ndim, 0)))


def to_centered(x: Any, ndim: int) -> Any:
    """``fftshift`` over the last ``ndim`` axes: inverse of :func:`to_uncentered`."""
    xp = array_module(x)
    return xp.fft.fftshift(x, axes=tuple(range(-ndim, 0)))


class Linop:
    """Base class: a linear map from arrays of ``ishape`` to arrays of ``oshape``."""

    ishape: tuple[int, ...]
    oshape: tuple[int, ...]

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def adjoint(self, y: Any) -> Any:
        raise NotImplementedError

    def normal(self, x: Any) -> Any:
        """``A^H A x``."""
        return self.adjoint(self.forward(x))


class SenseOp(Linop):
    """Cartesian SENSE encoding ``y = M F S x`` with one or more sets of maps.

    Parameters
    ----------
    maps : array, complex, shape ``(ncoils, *spatial)`` or ``(nmaps, ncoils, *spatial)``
        Coil sensitivities (e.g. ESPIRiT, two maps for a soft-SENSE reconstruction).
    mask : array, shape ``(*batch, *spatial)``, optional
        Sampling mask (0/1, or weights); leading axes beyond the spatial ones are batch
        axes (e.g. time frames with their own masks). ``None``: fully sampled.
    ndim : int
        Number of spatial axes (2 or 3).
    centered : bool
        Centred FFTs (default). ``False``: all arrays are in the uncentred layout of
        :func:`to_uncentered` and plain FFTs are used (faster).
    fourier_axes : int, optional
        Transform only the first ``fourier_axes`` spatial axes (default all). When the mask
        does not vary along the readout, the readout FFT can be applied to the data once
        (hybrid space) and left out of every iteration: same problem, fewer FFTs.

    Shapes
    ------
    image ``x``: ``(*batch, nmaps, *spatial)``; k-space ``y``: ``(*batch, ncoils, *spatial)``.
    """

    def __init__(
        self,
        maps: Any,
        mask: Any = None,
        *,
        ndim: int = 2,
        centered: bool = True,
        fourier_axes: int | None = None,
    ):
        xp = array_module(maps)
        if maps.ndim == ndim + 1:
            maps = maps[None]
        if maps.ndim != ndim + 2:
            raise ValueError(f"SenseOp: maps of shape {maps.shape} do not have {ndim} spatial axes")
        self.ndim = ndim
        self.maps = maps
        self.maps_conj = xp.conj(maps)
        self.nmaps, self.ncoils = maps.shape[:2]
        spatial = tuple(maps.shape[2:])
        if mask is None:
            batch: tuple[int, ...] = ()
            self.mask = None
        else:
            if tuple(mask.shape[mask.ndim - ndim :]) != spatial:
                raise ValueError(f"SenseOp: mask {mask.shape} does not end in {spatial}")
            batch = tuple(mask.shape[: mask.ndim - ndim])
            self.mask = xp.expand_dims(xp.asarray(mask, dtype=xp.float32), -ndim - 1)
            self.mask_sq = self.mask * self.mask
        self.spatial = spatial
        self.batch = batch
        self.ishape = (*batch, self.nmaps, *spatial)
        self.oshape = (*batch, self.ncoils, *spatial)
        nf = ndim if fourier_axes is None else fourier_axes
        if not 1 <= nf <= ndim:
            raise ValueError(f"SenseOp: fourier_axes={fourier_axes} not in 1..{ndim}")
        self.axes = tuple(range(-ndim, -ndim + nf))
        self.centered = centered

    def _f(self, x: Any) -> Any:
        if self.centered:
            return fftc(x, axes=self.axes)
        return _fft(x, self.axes, inverse=False, overwrite=True)

    def _fh(self, y: Any) -> Any:
        if self.centered:
            return ifftc(y, axes=self.axes)
        return _fft(y, self.axes, inverse=True, overwrite=True)

    def _coils(self, x: Any) -> Any:
        # (*batch, nmaps, *sp) -> (*batch, ncoils, *sp)
        if self.nmaps == 1:
            return x * self.maps[0]
        xe = xp_expand(x, -self.ndim - 1)
        return (xe * self.maps).sum(axis=-self.ndim - 2)

    def _combine(self, c: Any) -> Any:
        # (*batch, ncoils, *sp) -> (*batch, nmaps, *sp)
        if self.nmaps == 1:
            return (c * self.maps_conj[0]).sum(axis=-self.ndim - 1, keepdims=True)
        ce = xp_expand(c, -self.ndim - 2)
        return (ce * self.maps_conj).sum(axis=-self.ndim - 1)

    def forward(self, x: Any) -> Any:
        y = self._f(self._coils(x))
        if self.mask is not None:
            y *= self.mask
        return y

    def adjoint(self, y: Any) -> Any:
        if self.mask is not None:
            y = y * self.mask
        else:
            y = y.copy()
        return self._combine(self._fh(y))

    def normal(self, x: Any) -> Any:
        y = self._f(self._coils(x))
        if self.mask is not None:
            y *= self.mask_sq
        return self._combine(self._fh(y))


class FiniteDifference(Linop):
    """Periodic forward differences along ``axes``: ``(Dx)_a = roll(x, -1, a) - x``.

    Output shape ``(len(axes), *ishape)``; ``||D||^2 <= 4 len(axes)``.
    """

    def __init__(self, ishape: Sequence[int], axes: Sequence[int]):
        self.ishape = tuple(ishape)
        self.axes = tuple(a % len(self.ishape) for a in axes)
        self.oshape = (len(self.axes), *self.ishape)

    def forward(self, x: Any) -> Any:
        xp = array_module(x)
        return xp.stack([xp.roll(x, -1, axis=a) - x for a in self.axes])

    def adjoint(self, y: Any) -> Any:
        xp = array_module(y)
        out = xp.zeros(self.ishape, dtype=y.dtype)
        for i, a in enumerate(self.axes):
            out += xp.roll(y[i], 1, axis=a) - y[i]
        return out


def max_eigenvalue(normal: Any, x0: Any, iterations: int = 20) -> float:
    """Largest eigenvalue of a Hermitian positive operator by power iteration.

    Parameters
    ----------
    normal : callable
        ``x -> A^H A x``.
    x0 : array
        Start vector (random, of the image shape).
    """
    xp = array_module(x0)
    x = x0 / xp.linalg.norm(x0)
    lam = 0.0
    for _ in range(iterations):
        y = normal(x)
        lam = float(xp.linalg.norm(y))
        if lam == 0:
            return 0.0
        x = y / lam
    return lam
