"""Orthonormal Daubechies wavelet transform written against ``xp`` (NumPy or CuPy).

The filters are computed, not tabulated: the Daubechies construction (I. Daubechies,
*Ten Lectures on Wavelets*, SIAM 1992, ch. 6) factors the half-band polynomial
``P(y) = sum_{k<N} C(N-1+k, k) y^k`` with ``y = sin^2(w/2)`` and keeps the roots inside the
unit circle (minimum phase), giving the same ``dbN`` filters as PyWavelets (tested).

The transform uses periodic extension ("periodization"), so it is an orthogonal matrix on
arrays whose transformed axes are divisible by ``2**levels``: the adjoint is the inverse and
reconstruction is perfect. Coefficients are stored in place in the Mallat layout (coarse
approximation in the low corner), so the coefficient array has the image's shape and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from math import comb
from typing import Any

import numpy as np

from recon.backend import array_module
from recon.errors import ConfigError


@cache
def daubechies_filters(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Decomposition low-pass and high-pass filters of the Daubechies wavelet ``db<order>``.

    Parameters
    ----------
    order : int
        Number of vanishing moments N (1..20); the filters have length 2N.

    Returns
    -------
    lo, hi : ndarray, float64, shape ``(2N,)``
        ``lo`` sums to sqrt(2); ``hi[k] = (-1)^k lo[2N-1-k]``. ``lo`` equals PyWavelets'
        ``Wavelet("dbN").rec_lo`` (the time-reversed ``dec_lo``).
    """
    if not 1 <= order <= 20:
        raise ConfigError(f"wavelet db{order}: order must be between 1 and 20")
    n = order
    # P(y) = sum_k C(N-1+k, k) y^k, y = (2 - z - 1/z) / 4. Roots of P in y -> roots in z.
    p_coeffs = [comb(n - 1 + k, k) for k in range(n)]
    y_roots = np.roots(p_coeffs[::-1]) if n > 1 else np.array([])
    z_roots = []
    for y in y_roots:
        # z^2 - (2 - 4y) z + 1 = 0: two reciprocal roots; keep the one inside the unit circle.
        pair = np.roots([1.0, -(2.0 - 4.0 * y), 1.0])
        z_roots.append(pair[np.argmin(np.abs(pair))])
    poly = np.array([1.0 + 0j])
    for _ in range(n):
        poly = np.convolve(poly, [1.0, 1.0])
    for z in z_roots:
        poly = np.convolve(poly, [1.0, -z])
    lo = np.real(poly)
    lo = lo * (np.sqrt(2.0) / lo.sum())
    hi = lo[::-1] * (-1.0) ** np.arange(lo.size)
    return lo, hi


def _parse_wave(wave: str) -> int:
    name = wave.lower()
    if name == "haar":
        return 1
    if name.startswith("db") and name[2:].isdigit():
        return int(name[2:])
    raise ConfigError(f"wavelet {wave!r}: use 'haar' or 'db1'..'db20'")


class Wavelet:
    """Multi-level separable orthonormal wavelet transform over some axes of an array.

    Parameters
    ----------
    shape : tuple of int
        Shape of the arrays transformed, e.g. ``(nmaps, ny, nx)``.
    axes : sequence of int, optional
        Axes to transform (default: the last two, or three when ``len(shape) >= 3`` and
        ``three_d``). Axes whose length is not divisible by 2 or shorter than twice the
        filter length are left untransformed.
    wave : str
        ``"db1"`` (Haar) .. ``"db20"``; default ``"db4"`` (BART and SigPy use db4).
    levels : int, optional
        Number of decomposition levels; default the largest number for which every
        transformed axis stays divisible by 2**levels and at least the filter length long.

    Notes
    -----
    ``forward`` and ``adjoint`` are exact transposes of each other and the matrix is
    orthogonal, so ``adjoint(forward(x)) == x`` to rounding. ``detail_mask`` marks the
    coefficients outside the coarsest approximation band (those that get thresholded).
    """

    def __init__(
        self,
        shape: Sequence[int],
        axes: Sequence[int] | None = None,
        wave: str = "db4",
        levels: int | None = None,
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.ishape = self.oshape = self.shape
        ndim = len(self.shape)
        if axes is None:
            axes = range(max(0, ndim - 2), ndim)
        lo, hi = daubechies_filters(_parse_wave(wave))
        self.lo, self.hi = lo, hi
        flen = lo.size
        candidates = [a % ndim for a in axes]
        self.axes = tuple(a for a in candidates if self.shape[a] % 2 == 0 and self.shape[a] >= 2)
        if not self.axes:
            raise ConfigError(f"wavelet: no axis of shape {self.shape} can be transformed")

        def max_levels(n: int) -> int:
            lev = 0
            while n % 2 == 0 and n // 2 >= flen:
                n //= 2
                lev += 1
            return lev

        possible = min(max_levels(self.shape[a]) for a in self.axes)
        if levels is None:
            levels = possible
        if levels < 1 or levels > max(possible, 1) or possible == 0:
            raise ConfigError(
                f"wavelet {wave}: {levels} levels impossible for axes "
                f"{[self.shape[a] for a in self.axes]} (at most {possible})"
            )
        self.levels = int(levels)
        self.block = 2**self.levels  # shifts by multiples of this commute with the transform

    def _coarse_slices(self, level: int) -> tuple[slice, ...]:
        sl = [slice(None)] * len(self.shape)
        for a in self.axes:
            sl[a] = slice(0, self.shape[a] >> level)
        return tuple(sl)

    def detail_mask(self, xp: Any = np) -> Any:
        """Boolean array of the image shape: True outside the coarsest approximation band."""
        mask = xp.ones(self.shape, dtype=bool)
        mask[self._coarse_slices(self.levels)] = False
        return mask

    @staticmethod
    def _sl(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
        index = [slice(None)] * ndim
        index[axis] = sl
        return tuple(index)

    def _apply(self, block: Any, axis: int, transpose: bool) -> Any:
        """One level along ``axis``: analysis (``transpose=False``) or its adjoint.

        Direct form with periodic extension and strided views: ``low[n] = sum_k lo[k]
        x[2n + k]``; only products and sums, ``O(filter length)`` per sample on the CPU and
        the GPU alike (no BLAS, so no thread oversubscription on a busy machine).
        """
        xp = array_module(block)
        nd, n = block.ndim, block.shape[axis]
        half, flen = n // 2, self.lo.size

        def sl(s: slice) -> tuple[slice, ...]:
            return self._sl(nd, axis, s)

        tmp = xp.empty(block[sl(slice(0, half))].shape, dtype=block.dtype)
        if not transpose:
            ext = xp.concatenate([block, block[sl(slice(0, flen - 2))]], axis=axis)
            out = xp.empty_like(block)
            for band, taps in ((slice(0, half), self.lo), (slice(half, n), self.hi)):
                acc = out[sl(band)]
                for k, tap in enumerate(taps):
                    view = ext[sl(slice(k, k + 2 * half, 2))]
                    if k == 0:
                        xp.multiply(view, float(tap), out=acc)
                    else:
                        xp.multiply(view, float(tap), out=tmp)
                        acc += tmp
            return out
        # Adjoint: x[2m + p] = sum_j lo[2j + p] low[m - j] + hi[2j + p] high[m - j].
        taps = flen // 2
        wrap = slice(half - (taps - 1), half)
        low = block[sl(slice(0, half))]
        high = block[sl(slice(half, n))]
        low = xp.concatenate([low[sl(wrap)], low], axis=axis)
        high = xp.concatenate([high[sl(wrap)], high], axis=axis)
        out = xp.empty_like(block)
        for phase in (0, 1):
            acc = out[sl(slice(phase, n, 2))]
            first = True
            for j in range(taps):
                start = taps - 1 - j
                for src, filt in ((low, self.lo), (high, self.hi)):
                    view = src[sl(slice(start, start + half))]
                    if first:
                        xp.multiply(view, float(filt[2 * j + phase]), out=acc)
                        first = False
                    else:
                        xp.multiply(view, float(filt[2 * j + phase]), out=tmp)
                        acc += tmp
        return out

    def forward(self, x: Any) -> Any:
        """Wavelet coefficients of ``x`` (same shape and dtype, Mallat layout)."""
        if tuple(x.shape) != self.shape:
            raise ValueError(f"wavelet: expected shape {self.shape}, got {tuple(x.shape)}")
        c = x.copy()
        for level in range(self.levels):
            sl = self._coarse_slices(level)
            block = c[sl]
            for a in self.axes:
                block = self._apply(block, a, transpose=False)
            c[sl] = block
        return c

    def adjoint(self, c: Any) -> Any:
        """Inverse (= adjoint) transform of Mallat-layout coefficients ``c``."""
        if tuple(c.shape) != self.shape:
            raise ValueError(f"wavelet: expected shape {self.shape}, got {tuple(c.shape)}")
        x = c.copy()
        for level in reversed(range(self.levels)):
            sl = self._coarse_slices(level)
            block = x[sl]
            for a in reversed(self.axes):
                block = self._apply(block, a, transpose=True)
            x[sl] = block
        return x

    inverse = adjoint
