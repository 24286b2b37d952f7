"""Toeplitz embedding of the NUFFT normal operator ``A^H W A``.

``(A^H W A x)[r] = sum_s T[r - s] x[s]`` with ``T[r] = sum_j w_j exp(i 2 pi k_j . r / N) / prod N``
for ``|r_a| < N_a``: a Toeplitz matrix, embedded in a circulant one on the 2N grid (Wajer &
Pruessmann; Fessler et al., IEEE TSP 2005; Baron et al., MRM 2018). ``T`` is computed once per
trajectory by one adjoint NUFFT of the weights onto the 2N grid (coordinates doubled), its FFT
``P`` stored; each application is then zero-padding, an FFT on the 2N grid, a product with P,
an inverse FFT and a crop, independent of the number of samples. The entries with
``r_a = -N_a`` are never used and are zeroed, which makes T Hermitian and P real (float32).
Zero-padding is pruned: the FFT along each axis only runs over the rows that are not all zero.
"""

from __future__ import annotations

import math
from typing import Any

from recon.backend import array_module, fft_module
from recon.noncart.nufft import NufftPlan


class ToeplitzNormal:
    """``x -> A^H W A x`` for images ``(..., *shape)`` through the 2N-grid embedding.

    Parameters
    ----------
    coord : array, shape ``(..., ndim)``
        k-space coordinates in grid units.
    shape : tuple of int
        Image shape N.
    weights : array, shape ``coord.shape[:-1]``, optional
        Sample weights W (e.g. density compensation); ones by default.
    eps : float
        Tolerance of the NUFFT computing the point-spread function.
    **plan_options
        Backend and device options of :class:`~recon.noncart.nufft.NufftPlan`.
    """

    def __init__(
        self,
        coord: Any,
        shape: tuple[int, ...],
        *,
        weights: Any = None,
        eps: float = 1e-5,
        **plan_options: Any,
    ) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        big = tuple(2 * n for n in self.shape)
        plan = NufftPlan(big, 2 * coord, eps=eps, **plan_options)
        xp = self.xp = plan.xp
        if weights is None:
            weights = xp.ones(plan.pts_shape, dtype=xp.complex64)
        samples = xp.asarray(weights, dtype=xp.complex64)[None]
        # adjoint on the 2N grid is sum_j w_j exp(i 2 pi k_j r / N) / sqrt(prod 2N)
        psf = plan.adjoint(samples)[0] * (math.sqrt(math.prod(big)) / math.prod(self.shape))
        for axis in range(self.ndim):  # r = -N (index 0 of the centred 2N grid) is never used
            index = [slice(None)] * self.ndim
            index[axis] = 0
            psf[tuple(index)] = 0
        fft, kw = fft_module(xp)
        kernel = fft.fftn(xp.fft.ifftshift(psf), **kw)
        self.kernel = xp.ascontiguousarray(kernel.real.astype(xp.float32))

    def __call__(self, x: Any) -> Any:
        """``A^H W A x`` for ``x`` of shape ``(..., *shape)``, complex64."""
        xp = array_module(x)
        fft, kw = fft_module(xp)
        nd = self.ndim
        y = x
        for axis in range(-1, -nd - 1, -1):  # pad + FFT axis by axis: pruned zero rows
            y = fft.fft(y, n=2 * self.shape[axis], axis=axis, **kw)
        y *= self.kernel
        for axis in range(-nd, 0):
            y = fft.ifft(y, axis=axis, overwrite_x=True, **kw)
            index = [slice(None)] * y.ndim
            index[axis] = slice(0, self.shape[axis])
            y = y[tuple(index)]
        return y.astype(xp.complex64, copy=False)
