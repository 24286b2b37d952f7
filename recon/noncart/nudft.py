"""Exact nonuniform DFT (float64) on subsets: the reference the NUFFT accuracy is measured by.

Same transform as the NUFFT (DESIGN.md): ``y_j = sum_r x_r exp(-i 2 pi k_j . r / N) /
sqrt(prod N)`` with r centred. Cost is O(points x pixels), so evaluate it on a few hundred
points (forward) or pixels (adjoint).
"""

from __future__ import annotations

import math

import numpy as np

CHUNK = 1 << 22  # complex128 phase factors per temporary block (64 MiB)


def _positions(shape: tuple[int, ...], pixels: np.ndarray | None) -> np.ndarray:
    """Centred positions r, shape ``(npixels, ndim)``, of all or the given flat pixel indices."""
    if pixels is None:
        pixels = np.arange(math.prod(shape))
    index = np.stack(np.unravel_index(pixels, shape), axis=-1)
    return (index - np.asarray(shape) // 2).astype(np.float64)


def nudft_forward(image: np.ndarray, coord: np.ndarray) -> np.ndarray:
    """Exact forward transform of one image ``shape`` at ``coord`` ``(npts, ndim)``."""
    shape = image.shape
    r = _positions(shape, None)
    k = np.asarray(coord, dtype=np.float64) / np.asarray(shape)
    out = np.empty(k.shape[0], np.complex128)
    flat = image.ravel().astype(np.complex128)
    step = max(1, CHUNK // r.shape[0])  # bounded temporary memory
    for start in range(0, k.shape[0], step):
        out[start : start + step] = np.exp(-2j * np.pi * (k[start : start + step] @ r.T)) @ flat
    return out / math.sqrt(math.prod(shape))


def nudft_adjoint(samples: np.ndarray, coord: np.ndarray, shape: tuple[int, ...],
                  pixels: np.ndarray) -> np.ndarray:  # fmt: skip
    """Exact adjoint of ``samples`` ``(npts,)`` at the flat pixel indices ``pixels``."""
    r = _positions(shape, pixels)
    k = np.asarray(coord, dtype=np.float64) / np.asarray(shape)
    y = np.asarray(samples, dtype=np.complex128)
    out = np.empty(r.shape[0], np.complex128)
    step = max(1, CHUNK // k.shape[0])
    for start in range(0, r.shape[0], step):
        out[start : start + step] = y @ np.exp(2j * np.pi * (k @ r[start : start + step].T))
    return out / math.sqrt(math.prod(shape))
