"""Regularisers for pics-style reconstruction: L1-wavelet, total variation, locally low rank.

Each regulariser is weighted by ``lam`` and offers what the solvers need:

- :class:`WaveletL1` ``lam ||W x||_1`` on the detail bands, prox by soft thresholding with a
  random cycle spin per call (shift by a random vector before the transform and back after),
  as BART's ``pics -R W`` does, so the blocky artefacts of a fixed decimated transform
  average out (Figueiredo & Nowak 2003; Lustig, Donoho, Pauly, MRM 2007;58:1182).
- :class:`TotalVariation` isotropic ``lam sum_r ||(D x)(r)||_2`` over 2 or 3 axes; used as a
  primal-dual term (the prox of its conjugate is a pointwise projection onto the
  ``lam`` ball).
- :class:`LocallyLowRank` ``lam sum_b ||X_b||_*`` over blocks of ``b x b (x b)`` pixels with
  the batch axis (time, contrast) as the columns (Trzasko & Manduca 2011; BART ``-R L``),
  prox by singular value soft thresholding with random block shifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recon.backend import array_module
from recon.iterative.blas import single_threaded_blas
from recon.iterative.operators import FiniteDifference
from recon.iterative.solvers import DualTerm
from recon.iterative.wavelet import Wavelet


def soft_threshold(x: Any, threshold: Any) -> Any:
    """Complex soft thresholding ``x * max(1 - t / |x|, 0)``."""
    xp = array_module(x)
    mag = xp.abs(x)
    scale = xp.maximum(mag - threshold, 0)
    scale /= xp.maximum(mag, xp.finfo(mag.dtype).tiny)
    return x * scale


class WaveletL1:
    """``lam ||W x||_1`` over the detail bands, prox with random cycle spinning.

    Parameters
    ----------
    shape : tuple of int
        Image shape, e.g. ``(nmaps, ny, nx)`` or ``(nmaps, nz, ny, nx)``.
    ndim : int
        Number of trailing spatial axes to transform.
    lam : float
        Weight.
    wave : str
        Daubechies wavelet, default ``"db4"``.
    seed : int or None
        Seed of the cycle-spin shifts; ``None`` disables cycle spinning.
    """

    def __init__(
        self, shape: Sequence[int], ndim: int, lam: float, wave: str = "db4", seed: int | None = 0
    ):
        self.wavelet = Wavelet(shape, axes=range(len(shape) - ndim, len(shape)), wave=wave)
        self.lam = float(lam)
        self.rng = None if seed is None else np.random.default_rng(seed)
        self._mask = None

    def prox(self, x: Any, step: float) -> Any:
        """``argmin_z lam ||W z||_1 + 1/(2 step) ||z - x||^2`` (with a random cycle spin)."""
        xp = array_module(x)
        if self._mask is None:
            self._mask = self.wavelet.detail_mask(xp)
        axes = self.wavelet.axes
        shifts = tuple(int(self.rng.integers(0, x.shape[a])) for a in axes) if self.rng else None
        if shifts:
            x = xp.roll(x, shifts, axis=axes)
        c = self.wavelet.forward(x)
        c = xp.where(self._mask, soft_threshold(c, self.lam * step), c)
        z = self.wavelet.adjoint(c)
        if shifts:
            z = xp.roll(z, tuple(-s for s in shifts), axis=axes)
        return z


class TotalVariation:
    """Isotropic total variation ``lam sum_r ||(D x)(r)||_2`` over the trailing ``ndim`` axes.

    Parameters
    ----------
    shape : tuple of int
        Image shape.
    ndim : int
        2 or 3 spatial axes (the last ones).
    lam : float
        Weight.
    """

    def __init__(self, shape: Sequence[int], ndim: int, lam: float):
        n = len(shape)
        self.op = FiniteDifference(shape, axes=range(n - ndim, n))
        self.lam = float(lam)

    def prox_conj(self, v: Any, sigma: float) -> Any:
        """Projection of each gradient vector (axis 0) onto the ball of radius ``lam``."""
        xp = array_module(v)
        norm = xp.sqrt(xp.sum(xp.abs(v) ** 2, axis=0, keepdims=True))
        return v / xp.maximum(norm / self.lam, 1.0) if self.lam > 0 else xp.zeros_like(v)

    def dual_term(self) -> DualTerm:
        """The term as used by :func:`~recon.iterative.solvers.pdhg` (``||D||^2 <= 4 ndim``)."""
        return DualTerm(self.op.forward, self.op.adjoint, self.prox_conj, 4.0 * len(self.op.axes))


class LocallyLowRank:
    """``lam sum_blocks ||X_b||_*`` with the batch axis as the columns of each block matrix.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(nbatch, *rest, *spatial)``: axis 0 is the batch (time, contrast),
        the trailing ``ndim`` axes are spatial and blocked; axes between (e.g. maps) are
        part of each block's rows.
    ndim : int
        Number of spatial axes.
    lam : float
        Weight (threshold of the singular values times the step).
    block : int
        Block edge in pixels (BART's default is 8).
    seed : int or None
        Seed of the random block shifts; ``None`` disables them.
    """

    def __init__(
        self, shape: Sequence[int], ndim: int, lam: float, block: int = 8, seed: int | None = 0
    ):
        self.shape = tuple(shape)
        self.ndim = ndim
        self.lam = float(lam)
        self.block = int(block)
        self.rng = None if seed is None else np.random.default_rng(seed)

    def prox(self, x: Any, step: float) -> Any:
        """Singular value soft thresholding of every block (remainder pixels untouched)."""
        xp = array_module(x)
        b = self.block
        sp_axes = tuple(range(x.ndim - self.ndim, x.ndim))
        shifts = tuple(int(self.rng.integers(0, b)) for _ in sp_axes) if self.rng else None
        if shifts:
            x = xp.roll(x, shifts, axis=sp_axes)
        out = x.copy()
        crop = tuple(slice(0, (x.shape[a] // b) * b) for a in sp_axes)
        lead = x.shape[: x.ndim - self.ndim]
        region = x[(Ellipsis, *crop)]
        nblk = [region.shape[a] // b for a in sp_axes]
        # (*lead, n1, b, n2, b[, n3, b]) -> (nblocks, rows, nbatch)
        split = region.reshape(*lead, *[v for n in nblk for v in (n, b)])
        nl = len(lead)
        blk_axes = [nl + 2 * i for i in range(self.ndim)]
        in_axes = [nl + 2 * i + 1 for i in range(self.ndim)]
        order = [*blk_axes, *range(1, nl), *in_axes, 0]
        mats = xp.transpose(split, order)
        nblocks = int(np.prod(nblk))
        mats = mats.reshape(nblocks, -1, lead[0])
        with single_threaded_blas(xp):
            u, s, vh = xp.linalg.svd(mats, full_matrices=False)
            s = xp.maximum(s - self.lam * step, 0).astype(u.dtype)
            mats = (u * s[:, None, :]) @ vh
        back = mats.reshape([split.shape[a] for a in order])
        inverse = np.argsort(order)
        out[(Ellipsis, *crop)] = xp.transpose(back, inverse).reshape(region.shape)
        if shifts:
            out = xp.roll(out, tuple(-s for s in shifts), axis=sp_axes)
        return out
