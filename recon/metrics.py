"""Image-quality and accuracy metrics shared by tests, benchmarks and reports."""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import to_host


def nrmse(estimate: Any, reference: Any, mask: Any = None) -> float:
    """Normalised root-mean-square error ``||x - r|| / ||r||``.

    Parameters
    ----------
    estimate, reference : array, same shape
        Any real or complex arrays (NumPy or CuPy).
    mask : array of bool, optional
        Restrict both to these elements (e.g. inside the object).
    """
    x = to_host(estimate).astype(np.complex128)
    r = to_host(reference).astype(np.complex128)
    if x.shape != r.shape:
        raise ValueError(f"nrmse: shapes differ, {x.shape} vs {r.shape}")
    if mask is not None:
        m = to_host(mask).astype(bool)
        x, r = x[m], r[m]
    norm = np.linalg.norm(r)
    if norm == 0:
        raise ValueError("nrmse: reference is all zeros")
    return float(np.linalg.norm(x - r) / norm)


def scaled_nrmse(estimate: Any, reference: Any, mask: Any = None) -> float:
    """NRMSE after the least-squares complex scale ``a = <x, r> / <x, x>`` is applied to x.

    Use it when the estimate is known only up to a global scale (and phase),
    e.g. another tool's output or a coil-combined image.
    """
    x = to_host(estimate).astype(np.complex128)
    r = to_host(reference).astype(np.complex128)
    if mask is not None:
        m = to_host(mask).astype(bool)
        x, r = x[m], r[m]
    scale = np.vdot(x, r) / max(np.vdot(x, x).real, np.finfo(float).tiny)
    return nrmse(scale * x, r)


def relative_difference(a: complex, b: complex) -> float:
    """``|a - b| / max(|a|, |b|)``, e.g. for adjoint tests ``<Ax, y>`` vs ``<x, A^H y>``."""
    denom = max(abs(a), abs(b))
    return 0.0 if denom == 0 else float(abs(a - b) / denom)
