"""Non-Cartesian reconstructions: gridding, coil maps from the gridded centre, CG-SENSE with
Toeplitz embedding, and pics-style regularised SENSE (L1-wavelet, TV).

Shapes: samples ``(ncoils, *pts)`` with coordinates ``coord`` of shape ``(*pts, ndim)`` in grid
units; images ``(ncoils, *shape)`` per coil or ``shape`` after combination; maps
``(ncoils, *shape)``. Arrays are NumPy or CuPy (``xp``); the NUFFT backend follows the device.

References: gridding with density compensation (Jackson et al., IEEE TMI 1991); CG-SENSE
(Pruessmann et al., MRM 2001;46:638); Toeplitz embedding (Fessler et al., IEEE TSP 2005;
Baron et al., MRM 2018); L1-wavelet CS (Lustig et al., MRM 2007;58:1182).
"""

from __future__ import annotations

import math
from typing import Any

from recon.backend import array_module
from recon.errors import ConfigError, InputError
from recon.iterative.operators import max_eigenvalue
from recon.iterative.pics import parse_terms
from recon.iterative.regularizers import TotalVariation, WaveletL1
from recon.iterative.scaling import scale_from_image
from recon.iterative.solvers import conjugate_gradient, fista
from recon.noncart.dcf import pipe_menon, radial_dcf
from recon.noncart.nufft import NufftPlan
from recon.noncart.toeplitz import ToeplitzNormal

DCF_METHODS = ("pipe-menon", "radial", "none")


def density_weights(coord: Any, shape: tuple[int, ...], dcf: Any = "pipe-menon",
                    **plan_options: Any) -> Any:  # fmt: skip
    """Density compensation by name (``pipe-menon``, ``radial``, ``none``) or given as an array.

    Returns an array of shape ``coord.shape[:-1]`` (ones for ``none``).
    """
    xp = array_module(coord)
    if not isinstance(dcf, str):
        weights = xp.asarray(dcf, dtype=xp.float32)
        if weights.shape != coord.shape[:-1]:
            raise InputError(f"dcf shape {weights.shape} does not match coord {coord.shape}")
        return weights
    if dcf == "pipe-menon":
        return pipe_menon(coord, shape, **plan_options)
    if dcf == "radial":
        return radial_dcf(coord, shape)
    if dcf == "none":
        return xp.ones(coord.shape[:-1], dtype=xp.float32)
    raise ConfigError(f"unknown density compensation {dcf!r}: use one of {DCF_METHODS}")


def grid_image(samples: Any, coord: Any, shape: tuple[int, ...], *, dcf: Any = "pipe-menon",
               eps: float = 1e-3, **plan_options: Any) -> Any:  # fmt: skip
    """Gridding reconstruction ``A^H (D y)``: density compensation, adjoint NUFFT (whose
    deapodisation is part of the transform).

    Parameters
    ----------
    samples : array, complex, shape ``(..., *pts)``
        k-space samples, e.g. ``(ncoils, nspokes, nsamples)``.
    coord : array, shape ``(*pts, ndim)``
        Coordinates in grid units.
    shape : tuple of int
        Image shape.
    dcf : str or array
        Density compensation, see :func:`density_weights`.

    Returns
    -------
    array, complex64, shape ``(..., *shape)``
    """
    weights = density_weights(coord, shape, dcf, eps=eps, **plan_options)
    plan = NufftPlan(shape, coord, eps=eps, **plan_options)
    return plan.adjoint(samples * weights)


def calibration_maps(samples: Any, coord: Any, shape: tuple[int, ...], *, weights: Any,
                     radius: float = 12.0, threshold: float = 0.05, eps: float = 1e-3,
                     **plan_options: Any) -> Any:  # fmt: skip
    """Coil sensitivities from the gridded centre of k-space.

    The samples within ``radius`` (grid units) of the centre, with a Hann taper, are gridded
    into low-resolution coil images ``c``; the maps are ``c / sqrt(sum |c|^2)`` where the
    root-sum-of-squares exceeds ``threshold`` times its maximum, zero elsewhere.

    Parameters
    ----------
    samples : array, complex, shape ``(ncoils, *pts)``
    coord : array, shape ``(*pts, ndim)``
    shape : tuple of int
    weights : array, shape ``pts``
        Density compensation of the samples.

    Returns
    -------
    array, complex64, shape ``(ncoils, *shape)``
    """
    xp = array_module(samples)
    kr = xp.sqrt((xp.asarray(coord, dtype=xp.float32) ** 2).sum(axis=-1))
    taper = xp.where(kr < radius, 0.5 + 0.5 * xp.cos(xp.pi * kr / radius), 0.0)
    plan = NufftPlan(shape, coord, eps=eps, **plan_options)
    low = plan.adjoint(samples * (weights * taper).astype(xp.float32))
    rss = xp.sqrt((xp.abs(low) ** 2).sum(axis=0))
    support = rss > threshold * rss.max()
    return (low / xp.where(support, rss, 1.0) * support).astype(xp.complex64)


class NoncartSense:
    """SENSE encoding ``y_c = A (S_c x)`` with sample weights W, normal operator by Toeplitz.

    Parameters
    ----------
    coord : array, shape ``(*pts, ndim)``
    maps : array, complex, shape ``(ncoils, *shape)``
    weights : array, shape ``pts``, optional
        W of the weighted least-squares data term ``||W^(1/2) (E x - y)||^2`` (density
        compensation speeds up convergence); ones by default.
    eps : float
        NUFFT tolerance.
    toeplitz : bool
        Normal operator through the 2N-grid embedding (default) or NUFFT + adjoint NUFFT.
    batch_bytes : int
        Memory budget of the coils' 2N grids handled at once by the Toeplitz operator (3D with
        many coils is done in coil batches).
    """

    def __init__(self, coord: Any, maps: Any, *, weights: Any = None, eps: float = 1e-4,
                 toeplitz: bool = True, batch_bytes: int = 1 << 30,
                 **plan_options: Any) -> None:  # fmt: skip
        xp = self.xp = array_module(maps)
        self.maps = xp.asarray(maps, dtype=xp.complex64)
        self.maps_conj = xp.conj(self.maps)
        self.shape = tuple(self.maps.shape[1:])
        self.plan = NufftPlan(self.shape, coord, eps=eps, **plan_options)
        self.weights = None if weights is None else xp.asarray(weights, dtype=xp.float32)
        self.toeplitz = None
        grid_bytes = 8 * 2 ** len(self.shape) * math.prod(self.shape)
        self.coil_batch = max(1, batch_bytes // grid_bytes)
        if toeplitz:
            psf_eps = min(eps, 1e-4)
            self.toeplitz = ToeplitzNormal(coord, self.shape, weights=self.weights, eps=psf_eps,
                                           **plan_options)  # fmt: skip

    def rhs(self, samples: Any) -> Any:
        """``S^H A^H W y`` for measured samples ``(ncoils, *pts)``."""
        if self.weights is not None:
            samples = samples * self.weights
        return (self.maps_conj * self.plan.adjoint(samples)).sum(axis=0)

    def normal(self, x: Any) -> Any:
        """``S^H A^H W A S x`` (Toeplitz: two FFTs on the 2N grid per coil)."""
        if self.toeplitz is None:
            y = self.plan.forward(self.maps * x)
            return self.rhs(y)
        out = self.xp.zeros_like(x)
        for start in range(0, self.maps.shape[0], self.coil_batch):
            maps = self.maps[start : start + self.coil_batch]
            conj = self.maps_conj[start : start + self.coil_batch]
            out += (conj * self.toeplitz(maps * x)).sum(axis=0)
        return out


def cg_sense(samples: Any, coord: Any, maps: Any, *, weights: Any = None, iterations: int = 20,
             tol: float = 1e-6, lam: float = 0.0, eps: float = 1e-4, toeplitz: bool = True,
             **plan_options: Any) -> Any:  # fmt: skip
    """CG-SENSE: solve ``(E^H W E + lam I) x = E^H W y`` by conjugate gradients.

    Parameters
    ----------
    samples : array, complex, shape ``(ncoils, *pts)``
    coord : array, shape ``(*pts, ndim)``
    maps : array, complex, shape ``(ncoils, *shape)``
    weights : array, shape ``pts``, optional
        Sample weights (density compensation), see :class:`NoncartSense`.
    iterations, tol, lam
        CG iterations, relative residual to stop at, Tikhonov weight.

    Returns
    -------
    array, complex64, shape ``shape``
    """
    op = NoncartSense(coord, maps, weights=weights, eps=eps, toeplitz=toeplitz, **plan_options)
    return conjugate_gradient(op.normal, op.rhs(samples), iterations=iterations, tol=tol,
                              lam=lam)  # fmt: skip


def noncart_pics(samples: Any, coord: Any, maps: Any, *, regularizers: str = "l1-wavelet:0.005",
                 weights: Any = None, iterations: int = 40, eps: float = 1e-4, seed: int = 0,
                 **plan_options: Any) -> Any:  # fmt: skip
    """pics-style regularised SENSE on non-Cartesian data: one L1-wavelet or one TV term.

    Both solvers use only the Toeplitz normal operator ``E^H W E`` (two FFTs on the 2N grid per
    coil and iteration, independent of the number of samples):

    - ``l1-wavelet``: FISTA (recon.iterative.solvers.fista) with cycle-spun db4 soft
      thresholding;
    - ``tv``: the primal-dual method of Condat (JOTA 2013) and Vu (Adv. Comput. Math. 2013),
      which takes the data term through its gradient ``E^H W E x - E^H W y``, with steps
      ``sigma = 1 / ||D||`` and ``tau = 0.99 / (L / 2 + sigma ||D||^2)``.

    The data are scaled as BART does (the 90th percentile / maximum rule on ``|E^H W y| / L``)
    so ``lam`` transfers between datasets, and the image is scaled back.

    Returns
    -------
    array, complex64, shape ``shape``
    """
    terms = parse_terms(regularizers)
    if len(terms) != 1 or terms[0].name not in ("l1-wavelet", "tv"):
        raise ConfigError(
            f"non-Cartesian pics takes one l1-wavelet or tv term, got {regularizers!r}"
        )
    xp = array_module(maps)
    op = NoncartSense(coord, maps, weights=weights, eps=eps, **plan_options)
    rng = xp.random.default_rng(seed) if xp.__name__ == "numpy" else xp.random
    start = rng.standard_normal(op.shape).astype(xp.complex64)
    lipschitz = 1.01 * max_eigenvalue(op.normal, start, iterations=15)
    rhs = op.rhs(samples)
    factor = scale_from_image(xp.abs(rhs) / lipschitz)
    rhs = rhs / factor
    ndim = len(op.shape)
    if terms[0].name == "l1-wavelet":
        reg = WaveletL1(op.shape, ndim, terms[0].lam, seed=seed)
        x = fista(op.normal, rhs, reg.prox, 1.0 / lipschitz, iterations=iterations)
        return x * factor
    tv = TotalVariation(op.shape, ndim, terms[0].lam).dual_term()
    sigma = 1.0 / tv.norm_sq**0.5
    tau = 0.99 / (lipschitz / 2 + sigma * tv.norm_sq)
    x = xp.zeros_like(rhs)
    dual = xp.zeros_like(tv.forward(x))
    for _ in range(iterations):
        x_new = x - tau * (op.normal(x) - rhs + tv.adjoint(dual))
        dual = tv.prox_conj(dual + sigma * tv.forward(2 * x_new - x), sigma)
        x = x_new
    return x * factor
