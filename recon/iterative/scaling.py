"""BART-like data scaling so one regularisation weight transfers between datasets.

BART's ``pics`` divides the k-space by a scale estimated from the root-sum-of-squares image
of the central calibration region (``estimate_scaling`` / ``estimate_scaling_norm`` in
``src/sense/optcom.c``): the 90th percentile of the magnitudes, or the maximum when the
distribution is very skewed (``max - p90 < 2 (p90 - median)`` keeps the percentile, as
described by BART and MRIReco.jl's ``BartScaling``). The reconstruction is then multiplied
back, so the output keeps the data's units while ``lam`` acts on an image of order one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import array_module, ifftc, to_host


def scale_from_image(magnitude: Any) -> float:
    """The BART rule on a magnitude image: the 90th percentile or the maximum."""
    values = np.sort(to_host(magnitude).ravel().astype(np.float64))
    if values.size == 0 or values[-1] == 0:
        return 1.0
    median = float(values[int(0.5 * (values.size - 1))])
    p90 = float(values[int(0.9 * (values.size - 1))])
    vmax = float(values[-1])
    return p90 if (vmax - p90) < 2.0 * (p90 - median) else vmax


def estimate_scale(kspace: Any, ndim: int, calib: int = 24) -> float:
    """Scale of a k-space dataset from its central ``calib^ndim`` region.

    Parameters
    ----------
    kspace : array, complex, shape ``(..., ncoils, *spatial)``
        Zero-filled Cartesian k-space (centred), any leading batch axes.
    ndim : int
        Number of spatial axes.
    calib : int
        Edge of the central region used (BART uses a small calibration region too).

    Returns
    -------
    float
        The scale; divide the data by it before reconstructing.
    """
    xp = array_module(kspace)
    spatial = kspace.shape[kspace.ndim - ndim :]
    window = xp.zeros(spatial, dtype=xp.float32)
    sl = tuple(
        slice(max(0, n // 2 - calib // 2), n // 2 - calib // 2 + min(n, calib)) for n in spatial
    )
    window[sl] = 1.0
    low = ifftc(kspace * window, axes=tuple(range(-ndim, 0)))
    rss = xp.sqrt(xp.sum(xp.abs(low) ** 2, axis=-ndim - 1))
    return scale_from_image(rss)
