"""Cartesian sampling patterns for simulation, tests and benchmarks.

Variable-density random masks over the phase-encoding plane (``(ky, kz)`` of a 3D scan, or
a 2D plane used as such) with a fully sampled calibration centre, the usual compressed
sensing pattern (Lustig, Donoho, Pauly, MRM 2007;58:1182). The lattice (GRAPPA / CAIPI)
masks are in :mod:`recon.cartesian.grappa`.
"""

from __future__ import annotations

import numpy as np

from recon.errors import ConfigError


def variable_density_mask(
    shape: tuple[int, int], accel: float, *, calib: int = 24, power: float = 2.0, seed: int = 0
) -> np.ndarray:
    """Random mask with density ``~ (1 - r)^power`` and a fully sampled ``calib^2`` centre.

    Parameters
    ----------
    shape : (n0, n1)
        Phase-encoding plane.
    accel : float
        Target acceleration: ``n0 n1 / accel`` samples (the centre included).
    calib : int
        Edge of the fully sampled centre.
    power : float
        Density decay with the normalised radius ``r`` (0 at the centre, 1 at the corner).
    seed : int
        Random seed.

    Returns
    -------
    ndarray of bool, ``shape``
    """
    n0, n1 = shape
    total = round(n0 * n1 / accel)
    if accel < 1 or total < calib * calib:
        raise ConfigError(f"variable density: {accel}x leaves fewer samples than the centre")
    y, x = np.meshgrid(np.arange(n0) - n0 // 2, np.arange(n1) - n1 // 2, indexing="ij")
    r = np.sqrt((2 * y / n0) ** 2 + (2 * x / n1) ** 2) / np.sqrt(2)
    density = (1 - r) ** power
    mask = np.zeros(shape, dtype=bool)
    mask[
        n0 // 2 - calib // 2 : n0 // 2 - calib // 2 + calib,
        n1 // 2 - calib // 2 : n1 // 2 - calib // 2 + calib,
    ] = True
    rng = np.random.default_rng(seed)
    remaining = total - int(mask.sum())
    prob = density * ~mask
    # Scale the density so the expected count matches, clip at 1, then draw exactly.
    lo, hi = 0.0, 1e6
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.minimum(prob * mid, 1).sum() > remaining:
            hi = mid
        else:
            lo = mid
    p = np.minimum(prob * lo, 1).ravel()
    chosen = rng.choice(p.size, size=remaining, replace=False, p=p / p.sum())
    mask.ravel()[chosen] = True
    return mask
