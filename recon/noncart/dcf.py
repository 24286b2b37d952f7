"""Density compensation: Pipe-Menon iteration on our gridding, and analytic radial weights.

Scale: a weight is the k-space area (volume) a sample represents, in grid units, so a fully
sampled Cartesian grid has weights 1 and ``A^H D A`` is the identity there; gridded images then
have the scale of the object.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recon.backend import array_module
from recon.errors import ConfigError, InputError
from recon.noncart.nufft import NufftPlan

CALIBRATION_RADIUS = 8  # grid units: more than the reach of any kernel (width <= 16 fine cells)


def pipe_menon(
    coord: Any,
    shape: tuple[int, ...],
    *,
    iterations: int = 30,
    eps: float = 1e-4,
    **plan_options: Any,
) -> Any:
    """Pipe-Menon density compensation (Pipe & Menon, MRM 1999;41:179).

    Iterates ``w <- w / (G G^H w)`` where ``G^H`` spreads the samples onto the oversampled grid
    with the NUFFT backend's gridding kernel and ``G`` interpolates back (gridding only, no
    FFT). The result is scaled to k-space area per sample by the same iteration's value on a
    unit Cartesian grid (``1 / density`` at a Cartesian sample), so Cartesian sampling gets 1.

    Parameters
    ----------
    coord : array, shape ``(..., ndim)``
        k-space coordinates in grid units.
    shape : tuple of int
        Image shape.
    iterations : int
        Number of fixed-point iterations (10-30 typical).
    eps : float
        Tolerance that sets the gridding kernel (width 5 at 1e-4; width 4 gives visibly worse
        weights).
    **plan_options
        Backend and device of the :class:`~recon.noncart.nufft.NufftPlan` used for gridding.

    Returns
    -------
    array, float32, shape ``coord.shape[:-1]``
    """
    if iterations < 1:
        raise ConfigError(f"Pipe-Menon needs at least one iteration, got {iterations}")
    plan = NufftPlan(shape, coord, eps=eps, **plan_options)
    backend = plan.backend
    if not hasattr(backend, "spread"):
        raise ConfigError(f"the {plan.backend_name} backend has no gridding-only operations")
    xp = plan.xp
    w = xp.ones((1, plan.npts), dtype=xp.complex64)
    for _ in range(iterations):
        density = backend.interp(backend.spread(w)).real
        w = w / xp.maximum(density, xp.finfo(xp.float32).tiny)
    # density of a unit Cartesian grid, measured at the centre of a block of Cartesian samples
    r = np.arange(-CALIBRATION_RADIUS, CALIBRATION_RADIUS + 1, dtype=np.float32)
    block = np.stack(np.meshgrid(*[r] * len(shape), indexing="ij"), -1).reshape(-1, len(shape))
    cartesian = NufftPlan(shape, xp.asarray(block), eps=eps, **plan_options).backend
    ones = xp.ones((1, block.shape[0]), dtype=xp.complex64)
    unit = float(cartesian.interp(cartesian.spread(ones)).real[0, block.shape[0] // 2])
    return (xp.reshape(w.real, plan.pts_shape) * unit).astype(xp.float32)


def radial_dcf(coord: Any, shape: tuple[int, ...], *, dims: int | None = None) -> Any:
    """Analytic density compensation of radial trajectories (ramp filter).

    For radial spokes through the centre the sample density falls as ``1/|k|`` in 2D and
    ``1/|k|^2`` in 3D, so ``w ~ |k|`` (2D, also stack-of-stars in-plane) or ``|k|^2`` (3D
    radial). The centre sample gets the area of its own disc (sphere): ``dk/4`` in 2D and
    ``dk^2/12`` in 3D relative to the ring at radius dk, with dk the radial sample spacing.
    The weights are scaled so they add up to the area of the sampled disc (volume of the ball)
    of radius ``max|k| + dk/2``, times the number of partitions for stack-of-stars.

    Parameters
    ----------
    coord : array, shape ``(..., nsamples, ndim)``
        Radial spokes, the readout along the second-last axis, grid units.
    shape : tuple of int
        Image shape (checks ``ndim``).
    dims : int, optional
        2 for in-plane radial (uses the last two coordinates, e.g. stack-of-stars with unit
        kz spacing), 3 for 3D radial; default ``coord.shape[-1]``.

    Returns
    -------
    array, float32, shape ``coord.shape[:-1]``
    """
    xp = array_module(coord)
    dims = coord.shape[-1] if dims is None else dims
    if (
        dims not in (2, 3)
        or dims > coord.shape[-1]
        or coord.ndim < 2
        or coord.shape[-2] < 2
        or coord.shape[-1] != len(shape)
    ):
        raise InputError(f"radial_dcf: need spokes (..., nsamples, {len(shape)}) and dims 2 "
                         f"or 3; got coord {coord.shape}, dims={dims}")  # fmt: skip
    full = xp.asarray(coord, dtype=xp.float64)
    k = full[..., -dims:]
    radius = xp.sqrt((k**2).sum(axis=-1))
    spacing = float(xp.median(xp.sqrt((xp.diff(k, axis=-2) ** 2).sum(axis=-1))))
    kmax = float(radius.max()) + spacing / 2
    if dims == 2:
        weights = xp.maximum(radius, spacing / 4)
        partitions = 1 if full.shape[-1] == 2 else int(xp.unique(xp.round(full[..., 0])).size)
        total = math.pi * kmax**2 * partitions
    else:
        weights = xp.maximum(radius**2, spacing**2 / 12)
        total = 4 / 3 * math.pi * kmax**3
    return (weights * (total / float(weights.sum()))).astype(xp.float32)
