"""Readout oversampling removal, a stage early in the chain (before calibration and PI).

Scanners sample the readout with 2x oversampling so that signal outside the field of view
along x is not folded back. Removing it: inverse FFT along the readout, keep the central
``n / factor`` pixels, FFT back. Halving the readout halves the work of every later stage.
"""

from __future__ import annotations

from typing import Any

from recon.backend import fftc, ifftc
from recon.errors import InputError


def remove_readout_oversampling(kspace: Any, factor: int = 2, axis: int = -1) -> Any:
    """Crop the readout field of view of centred k-space by ``factor``.

    Parameters
    ----------
    kspace : array, complex, shape ``(..., nx)`` with the readout along ``axis``
        Centred k-space (or hybrid data) with the oversampled readout.
    factor : int
        Oversampling factor (2 on Siemens and most vendors); 1 returns the input.
    axis : int
        Readout axis.

    Returns
    -------
    array, complex, readout length ``nx // factor``
        Centred k-space of the central ``nx // factor`` image pixels along the readout.
    """
    if factor == 1:
        return kspace
    n = kspace.shape[axis]
    if factor < 1 or n % factor:
        raise InputError(f"readout of {n} samples cannot be cropped by oversampling {factor}")
    keep = n // factor
    start = n // 2 - keep // 2
    image = ifftc(kspace, axes=axis)
    index = [slice(None)] * kspace.ndim
    index[axis] = slice(start, start + keep)
    # Orthonormal FFTs: image intensities and the k-space noise level are both unchanged.
    return fftc(image[tuple(index)], axes=axis)
