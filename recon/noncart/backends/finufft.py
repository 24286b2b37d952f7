"""The ``finufft`` NUFFT backend: FINUFFT on the CPU (multithreaded), the CPU default.

FINUFFT computes ``c_j = sum_k f_k exp(isign i k . x_j)`` with modes k = -N//2 .. (N-1)//2 and
points ``x_j`` in radians. With ``x = 2 pi coord / N`` per axis (in array-axis order),
``isign = -1`` for the forward (type 2) and ``+1`` for the adjoint (type 1), and a factor
``1 / sqrt(prod N)``, this is the transform of DESIGN.md. Plans are made once per batch size and
reused; the points are set once per trajectory.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from recon.backend import Device
from recon.errors import ConfigError, InputError


class FinufftBackend:
    """NUFFT with FINUFFT plans.

    Parameters
    ----------
    shape : tuple of int
        Image shape ``(ny, nx)`` or ``(nz, ny, nx)`` (1D ``(nx,)`` works too).
    eps : float
        Requested relative accuracy.
    upsampling : float, optional
        FINUFFT ``upsampfac`` (2.0 or 1.25); default: FINUFFT chooses (1.25 at low accuracy,
        which is several times faster at eps 1e-3).
    device : Device or str
        Must be the CPU.
    nthreads : int, optional
        Threads of FINUFFT (default: all cores).
    **options
        Further FINUFFT options (e.g. ``spread_kerevalmeth=0``, ``spread_kerformula=1``).
    """

    name = "finufft"

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        eps: float = 1e-4,
        upsampling: float | None = None,
        device: Device | str = "cpu",
        nthreads: int | None = None,
        **options: Any,
    ) -> None:
        if Device(device).is_gpu:
            raise ConfigError("the finufft backend runs on the CPU: use cuda or cufinufft")
        if not 0 < eps < 1:
            raise ConfigError(f"NUFFT tolerance eps={eps} must be in (0, 1)")
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        self.eps = float(eps)
        self.options = {"nthreads": nthreads or os.cpu_count() or 1, **options}
        if upsampling is not None:
            self.options["upsampfac"] = float(upsampling)
        self.xp = np
        self._scale = np.float32(1.0 / math.sqrt(math.prod(self.shape)))
        self._points: list[np.ndarray] = []
        self._plans: dict[tuple[int, int], Any] = {}
        self.npts = 0

    @classmethod
    def available(cls) -> bool:
        """True when the finufft package imports."""
        try:
            import finufft  # noqa: F401
        except ImportError:
            return False
        return True

    def set_points(self, coord: Any) -> None:
        """Set the points ``coord`` (npts, ndim), grid units; plans made before are updated."""
        coord = np.asarray(coord)
        if coord.ndim != 2 or coord.shape[1] != self.ndim:
            raise InputError(f"coord must have shape (npts, {self.ndim}), got {coord.shape}")
        self._points = [
            np.ascontiguousarray((2 * np.pi / n) * coord[:, a], dtype=np.float32)
            for a, n in enumerate(self.shape)
        ]
        self.npts = coord.shape[0]
        for plan in self._plans.values():
            plan.setpts(*self._points)

    def _plan(self, kind: int, batch: int) -> Any:
        import finufft

        key = (kind, batch)
        if key not in self._plans:
            isign = -1 if kind == 2 else 1
            plan = finufft.Plan(
                kind, self.shape, batch, self.eps, isign, dtype="complex64", **self.options
            )
            if self._points:
                plan.setpts(*self._points)
            self._plans[key] = plan
        return self._plans[key]

    def forward(self, x: Any) -> np.ndarray:
        """Type 2: images ``(batch, *shape)`` -> samples ``(batch, npts)``, complex64."""
        x = np.asarray(x)
        if x.ndim != self.ndim + 1 or x.shape[1:] != self.shape:
            raise InputError(f"image must have shape (batch, {self.shape}), got {x.shape}")
        batch = x.shape[0]
        # scale whichever of input and output is smaller
        if math.prod(self.shape) < self.npts:
            x = np.multiply(x, self._scale, dtype=np.complex64)
            return self._plan(2, batch).execute(x).reshape(batch, self.npts)
        y = self._plan(2, batch).execute(np.ascontiguousarray(x, dtype=np.complex64))
        y = y.reshape(batch, self.npts)
        y *= self._scale
        return y

    def adjoint(self, y: Any) -> np.ndarray:
        """Type 1: samples ``(batch, npts)`` -> images ``(batch, *shape)``, complex64."""
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != self.npts:
            raise InputError(f"samples must have shape (batch, {self.npts}), got {y.shape}")
        batch = y.shape[0]
        if self.npts < math.prod(self.shape):
            y = np.multiply(y, self._scale, dtype=np.complex64)
            return self._plan(1, batch).execute(y).reshape(batch, *self.shape)
        x = self._plan(1, batch).execute(np.ascontiguousarray(y, dtype=np.complex64))
        x = x.reshape(batch, *self.shape)
        x *= self._scale
        return x

    def spread(self, y: Any) -> np.ndarray:
        """Gridding only (FINUFFT ``spreadinterponly``): ``(batch, npts)`` -> oversampled grids."""
        y = np.ascontiguousarray(y, dtype=np.complex64)
        return self._gridding_plan(1, y.shape[0]).execute(y).reshape(y.shape[0], *self.fine)

    def interp(self, grid: Any) -> np.ndarray:
        """Gridding only (FINUFFT ``spreadinterponly``): oversampled grids -> ``(batch, npts)``."""
        grid = np.ascontiguousarray(grid, dtype=np.complex64)
        return self._gridding_plan(2, grid.shape[0]).execute(grid).reshape(grid.shape[0], -1)

    @property
    def fine(self) -> tuple[int, ...]:
        """Size of the oversampled grid used by :meth:`spread` and :meth:`interp`."""
        from recon.noncart.kernel import next_smooth_even

        up = self.options.get("upsampfac") or 2.0
        return tuple(next_smooth_even(up * n) for n in self.shape)

    def _gridding_plan(self, kind: int, batch: int) -> Any:
        import finufft

        key = (kind + 10, batch)
        if key not in self._plans:
            isign = -1 if kind == 2 else 1
            options = {**self.options, "spreadinterponly": 1}
            options["upsampfac"] = options.get("upsampfac") or 2.0
            # a point at x radians sits at x n / (2 pi) cells of an n-point grid: the same
            # points as the NUFFT put coord n / N on the oversampled grid
            plan = finufft.Plan(kind, self.fine, batch, self.eps, isign, dtype="complex64",
                                **options)  # fmt: skip
            plan.setpts(*self._points)
            self._plans[key] = plan
        return self._plans[key]
