"""NUFFT plan (plan / set points / execute) over the backend registry, and SigPy linops.

Transform (DESIGN.md): forward (type 2) ``y_j = sum_r x_r exp(-i 2 pi k_j . r / N) / sqrt(prod N)``
with r centred (array index ``r + N // 2``) and ``k_j`` = ``coord[j]`` in grid units in
``[-N/2, N/2)``, ``coord[..., -1]`` pairing with the last image axis; the adjoint (type 1) is
its exact adjoint. This is SigPy's ``sigpy.nufft`` convention, so :class:`NufftLinop` can be
used wherever SigPy expects ``sigpy.linop.NUFFT``.

Backends (``recon.noncart.backends``): ``finufft`` (CPU default), ``cuda`` (our kernels, GPU
default), ``cufinufft`` (optional GPU peer).
"""

from __future__ import annotations

import math
from typing import Any

import sigpy

from recon.backend import Device
from recon.errors import InputError
from recon.noncart.backends import backend_class


def default_backend(device: Device) -> str:
    """``cuda`` on a GPU, ``finufft`` on the CPU."""
    return "cuda" if device.is_gpu else "finufft"


class NufftPlan:
    """A NUFFT between images of ``shape`` and samples at ``coord``.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)`` or ``(nz, ny, nx)``.
    coord : array, shape ``(..., ndim)``, optional
        k-space coordinates in grid units; can be set later with :meth:`set_points`.
    eps : float
        Requested relative accuracy (the kernel width follows from it).
    backend : str
        ``"auto"`` (cuda on a GPU device, finufft otherwise), or a registered name.
    device : Device or str
        Where the arrays live.
    upsampling : float, optional
        Grid oversampling: 2, or 1.25 to trade width for memory (3D); default: the backend's
        (2 for cuda, FINUFFT's own choice for finufft).
    **options
        Passed to the backend class (e.g. ``nthreads`` for finufft, ``module``/``xp`` for cuda).
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        coord: Any = None,
        *,
        eps: float = 1e-4,
        backend: str = "auto",
        device: Device | str = "cpu",
        upsampling: float | None = None,
        **options: Any,
    ) -> None:
        self.device = Device(device)
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        self.eps = float(eps)
        self.backend_name = default_backend(self.device) if backend == "auto" else backend
        cls = backend_class(self.backend_name)
        if upsampling is not None:
            options["upsampling"] = upsampling
        self.backend = cls(self.shape, eps=eps, device=self.device, **options)
        self.xp = self.backend.xp
        self.pts_shape: tuple[int, ...] = ()
        if coord is not None:
            self.set_points(coord)

    def set_points(self, coord: Any) -> None:
        """Set the sample coordinates, shape ``(..., ndim)`` in grid units (once per trajectory)."""
        shape = tuple(coord.shape)
        if len(shape) < 2 or shape[-1] != self.ndim:
            raise InputError(f"coord must have shape (..., {self.ndim}), got {shape}")
        self.pts_shape = shape[:-1]
        self.backend.set_points(self.xp.reshape(self.xp.asarray(coord), (-1, self.ndim)))

    @property
    def npts(self) -> int:
        """Number of sample points."""
        return math.prod(self.pts_shape)

    def forward(self, image: Any) -> Any:
        """Type 2: ``(..., *shape)`` images -> ``(..., *pts_shape)`` samples, complex64."""
        if tuple(image.shape[-self.ndim :]) != self.shape:
            raise InputError(f"image must have shape (..., {self.shape}), got {image.shape}")
        batch = tuple(image.shape[: -self.ndim])
        flat = self.xp.reshape(image, (-1, *self.shape))
        return self.xp.reshape(self.backend.forward(flat), (*batch, *self.pts_shape))

    def adjoint(self, samples: Any) -> Any:
        """Type 1: ``(..., *pts_shape)`` samples -> ``(..., *shape)`` images, complex64."""
        npd = len(self.pts_shape)
        if tuple(samples.shape[samples.ndim - npd :]) != self.pts_shape:
            raise InputError(
                f"samples must have shape (..., {self.pts_shape}), got {samples.shape}"
            )
        batch = tuple(samples.shape[: samples.ndim - npd])
        flat = self.xp.reshape(samples, (-1, self.npts))
        return self.xp.reshape(self.backend.adjoint(flat), (*batch, *self.shape))

    def linop(self, batch_shape: tuple[int, ...] = ()) -> NufftLinop:
        """This plan as a SigPy linear operator with leading ``batch_shape`` axes."""
        return NufftLinop(self, batch_shape)


def nufft(image: Any, coord: Any, *, eps: float = 1e-4, **kwargs: Any) -> Any:
    """One-shot forward NUFFT of ``image`` (``(..., *shape)``) at ``coord`` (``(..., ndim)``)."""
    ndim = coord.shape[-1]
    return NufftPlan(tuple(image.shape[-ndim:]), coord, eps=eps, **kwargs).forward(image)


def nufft_adjoint(samples: Any, coord: Any, shape: tuple[int, ...], *, eps: float = 1e-4,
                  **kwargs: Any) -> Any:  # fmt: skip
    """One-shot adjoint NUFFT of ``samples`` (``(..., *coord.shape[:-1])``) onto ``shape``."""
    return NufftPlan(tuple(shape), coord, eps=eps, **kwargs).adjoint(samples)


class NufftLinop(sigpy.linop.Linop):
    """SigPy linear operator of a :class:`NufftPlan` (forward NUFFT).

    ``ishape = (*batch_shape, *shape)``, ``oshape = (*batch_shape, *pts_shape)``, as
    ``sigpy.linop.NUFFT(ishape, coord)``; ``.H`` is :class:`NufftAdjointLinop`.
    """

    def __init__(self, plan: NufftPlan, batch_shape: tuple[int, ...] = ()) -> None:
        self.plan = plan
        self.batch_shape = tuple(batch_shape)
        super().__init__((*self.batch_shape, *plan.pts_shape), (*self.batch_shape, *plan.shape))

    def _apply(self, input: Any) -> Any:
        return self.plan.forward(input)

    def _adjoint_linop(self) -> sigpy.linop.Linop:
        return NufftAdjointLinop(self.plan, self.batch_shape)


class NufftAdjointLinop(sigpy.linop.Linop):
    """SigPy linear operator of the adjoint NUFFT of a :class:`NufftPlan`."""

    def __init__(self, plan: NufftPlan, batch_shape: tuple[int, ...] = ()) -> None:
        self.plan = plan
        self.batch_shape = tuple(batch_shape)
        super().__init__((*self.batch_shape, *plan.shape), (*self.batch_shape, *plan.pts_shape))

    def _apply(self, input: Any) -> Any:
        return self.plan.adjoint(input)

    def _adjoint_linop(self) -> sigpy.linop.Linop:
        return NufftLinop(self.plan, self.batch_shape)
