"""CG-SENSE for Cartesian data with one or two sets of (ESPIRiT) maps.

Pruessmann et al., MRM 1999;42:952 and MRM 2001;46:638: solve the normal equations
``(S^H F^H M F S + lam I) x = S^H F^H M y`` by conjugate gradients. With two maps (soft
SENSE, Uecker et al. MRM 2014;71:990) the image has one component per map; combine them with
:func:`combine_maps`.
"""

from __future__ import annotations

from typing import Any

from recon.backend import array_module
from recon.iterative.pics import pics


def cg_sense(
    kspace: Any,
    maps: Any,
    *,
    mask: Any = None,
    iterations: int = 20,
    lam: float = 0.0,
    ndim: int = 2,
) -> Any:
    """CG-SENSE reconstruction.

    Parameters
    ----------
    kspace : array, complex, shape ``(*batch, ncoils, *spatial)``
        Zero-filled centred k-space.
    maps : array, complex, shape ``(ncoils, *spatial)`` or ``(nmaps, ncoils, *spatial)``
        Coil sensitivities.
    mask : array, shape ``(*batch, *spatial)``, optional
        Sampling pattern (default: non-zero samples of the first coil).
    iterations : int
        CG iterations.
    lam : float
        Tikhonov weight on the BART-scaled data (0: none).
    ndim : int
        Number of spatial axes.

    Returns
    -------
    array, complex64, shape ``(*batch, nmaps, *spatial)``
    """
    return pics(kspace, maps, mask=mask, regularizers="", iterations=iterations, ndim=ndim, l2=lam)


def combine_maps(image: Any, ndim: int = 2) -> Any:
    """Root-sum-of-squares over the maps axis of ``(..., nmaps, *spatial)`` (magnitude)."""
    xp = array_module(image)
    return xp.sqrt(xp.sum(xp.abs(image) ** 2, axis=-ndim - 1))
