"""Compute device, array module and centred FFTs.

Array code in recon is written once against an array module ``xp`` (NumPy or
CuPy) obtained from :class:`Device`. The FFT helpers are the centred
orthonormal transforms of DESIGN.md::

    ifftc(k) = fftshift(ifftn(ifftshift(k), norm="ortho"))

over the chosen axes; on the CPU they use :mod:`scipy.fft` with all workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
import scipy.fft

from recon.errors import DeviceError

_CPU_WORKERS = os.cpu_count() or 1


@cache
def _cupy_or_none() -> ModuleType | None:
    """CuPy if it is importable and sees at least one usable CUDA device, else None."""
    try:
        import cupy
    except Exception:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        cupy.zeros(1).sum()  # a device that cannot run a kernel is not usable
    except Exception:
        return None
    return cupy


def gpu_available() -> bool:
    """True when CuPy is installed and a CUDA device is usable."""
    return _cupy_or_none() is not None


class Device:
    """A compute device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``"auto"`` picks the first CUDA device when CuPy sees one and falls back to
    the CPU silently otherwise (CuPy missing, no driver, no device).
    ``"cuda"`` raises :class:`~recon.errors.DeviceError` when no GPU is usable.

    Attributes
    ----------
    kind : str
        ``"cpu"`` or ``"cuda"``.
    index : int
        CUDA device ordinal (0 on the CPU).
    xp : module
        The array module, :mod:`numpy` or :mod:`cupy`.
    """

    def __init__(self, spec: str | Device = "auto") -> None:
        if isinstance(spec, Device):
            self.kind, self.index, self.xp = spec.kind, spec.index, spec.xp
            return
        spec = str(spec).strip().lower()
        if spec == "auto":
            cupy = _cupy_or_none()
            self.kind, self.index = ("cuda", 0) if cupy is not None else ("cpu", 0)
        elif spec == "cpu":
            self.kind, self.index = "cpu", 0
        elif spec == "cuda" or spec.startswith("cuda:"):
            self.kind = "cuda"
            try:
                self.index = int(spec.split(":", 1)[1]) if ":" in spec else 0
            except ValueError:
                raise DeviceError(f"invalid device {spec!r}: expected cuda:N") from None
            cupy = _cupy_or_none()
            if cupy is None:
                raise DeviceError(
                    f"device {spec!r} requested but no usable CUDA GPU was found "
                    "(install the 'gpu' extra and check the driver), or use --device cpu"
                )
            if self.index >= cupy.cuda.runtime.getDeviceCount():
                raise DeviceError(f"device {spec!r} requested but that GPU does not exist")
        else:
            raise DeviceError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
        self.xp = np if self.kind == "cpu" else _cupy_or_none()

    def __repr__(self) -> str:
        return "Device('cpu')" if self.kind == "cpu" else f"Device('cuda:{self.index}')"

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def is_gpu(self) -> bool:
        """True on a CUDA device."""
        return self.kind == "cuda"

    def use(self) -> Any:
        """Context manager making this device current (a no-op on the CPU)."""
        if self.kind == "cpu":
            import contextlib

            return contextlib.nullcontext()
        return self.xp.cuda.Device(self.index)

    def to(self, array: Any, dtype: Any = None) -> Any:
        """Copy ``array`` to this device (no copy when already there and dtype matches)."""
        if self.kind == "cpu":
            return np.asarray(to_host(array), dtype=dtype)
        with self.use():
            return self.xp.asarray(array, dtype=dtype)


def array_module(array: Any) -> ModuleType:
    """The array module (numpy or cupy) an array belongs to."""
    cupy = _cupy_or_none() if type(array).__module__.startswith("cupy") else None
    return cupy if cupy is not None else np


def to_host(array: Any) -> np.ndarray:
    """Copy an array to host memory as a NumPy array (no copy for NumPy input)."""
    if hasattr(array, "get") and type(array).__module__.startswith("cupy"):
        return array.get()
    return np.asarray(array)


def _axes(ndim: int, axes: Sequence[int] | int | None) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(a % ndim for a in axes)


def fft_module(xp: ModuleType) -> tuple[Any, dict[str, int]]:
    """The FFT module for an array module and its keyword arguments.

    :mod:`scipy.fft` with all CPU workers for NumPy, ``cupy.fft`` (no extra arguments) for CuPy.
    """
    if xp is np:
        return scipy.fft, {"workers": _CPU_WORKERS}
    return xp.fft, {}


def fftc(x: Any, axes: Sequence[int] | int | None = None) -> Any:
    """Centred orthonormal forward FFT over ``axes`` (default: all axes).

    Parameters
    ----------
    x : array, complex
        Image-space data, any shape; the centre of each transformed axis is at
        index ``n // 2``.
    axes : int or sequence of int, optional
        Axes to transform.

    Returns
    -------
    array
        k-space with DC at index ``n // 2`` of each transformed axis, same shape.
    """
    ax = _axes(x.ndim, axes)
    xp = array_module(x)
    fft, kw = fft_module(xp)
    shifted = xp.fft.ifftshift(x, axes=ax)
    return xp.fft.fftshift(fft.fftn(shifted, axes=ax, norm="ortho", **kw), axes=ax)


def ifftc(k: Any, axes: Sequence[int] | int | None = None) -> Any:
    """Centred orthonormal inverse FFT over ``axes`` (default: all axes).

    Parameters
    ----------
    k : array, complex
        k-space with DC at index ``n // 2`` of each transformed axis.
    axes : int or sequence of int, optional
        Axes to transform.

    Returns
    -------
    array
        Image-space data with the image centre at index ``n // 2``, same shape.
    """
    ax = _axes(k.ndim, axes)
    xp = array_module(k)
    fft, kw = fft_module(xp)
    shifted = xp.fft.ifftshift(k, axes=ax)
    return xp.fft.fftshift(fft.ifftn(shifted, axes=ax, norm="ortho", **kw), axes=ax)


def rss(coil_images: Any, axis: int = 0) -> Any:
    """Root-sum-of-squares coil combination.

    Parameters
    ----------
    coil_images : array, shape ``(..., ncoils, *spatial)`` with the coil axis at ``axis``
    axis : int
        The coil axis.

    Returns
    -------
    array, float
        ``sqrt(sum |x|^2)`` over the coil axis.
    """
    xp = array_module(coil_images)
    return xp.sqrt(xp.sum(xp.abs(coil_images) ** 2, axis=axis))
