"""The ``cufinufft`` NUFFT backend: cuFINUFFT on the GPU, an optional peer for benchmarks.

Same conventions as the finufft backend (points ``2 pi coord / N`` in array-axis order,
``isign`` -1 forward and +1 adjoint, factor ``1 / sqrt(prod N)``), on CuPy arrays.
"""

from __future__ import annotations

import math
from typing import Any

from recon.backend import Device
from recon.errors import ConfigError, DeviceError, InputError


class CufinufftBackend:
    """NUFFT with cuFINUFFT plans (needs the ``cufinufft`` package and a CUDA GPU)."""

    name = "cufinufft"

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        eps: float = 1e-4,
        upsampling: float | None = None,
        device: Device | str = "cuda",
        **options: Any,
    ) -> None:
        if not self.available():
            raise DeviceError("the cufinufft backend needs the cufinufft package and a CUDA GPU")
        dev = Device(device)
        if not dev.is_gpu:
            raise ConfigError("the cufinufft backend runs on a CUDA device")
        self.device = dev
        self.xp = dev.xp
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        self.eps = float(eps)
        self.options = {"gpu_device_id": dev.index, **options}
        if upsampling is not None:
            self.options["upsampfac"] = float(upsampling)
        self._scale = 1.0 / math.sqrt(math.prod(self.shape))
        self._points: list[Any] = []
        self._plans: dict[tuple[int, int], Any] = {}
        self.npts = 0

    @classmethod
    def available(cls) -> bool:
        """True when cufinufft imports and a CUDA device is usable."""
        from recon.backend import gpu_available

        try:
            import cufinufft  # noqa: F401
        except Exception:
            return False
        return gpu_available()

    def set_points(self, coord: Any) -> None:
        """Set the points ``coord`` (npts, ndim), grid units."""
        xp = self.xp
        coord = xp.asarray(coord)
        if coord.ndim != 2 or coord.shape[1] != self.ndim:
            raise InputError(f"coord must have shape (npts, {self.ndim}), got {coord.shape}")
        self._points = [
            xp.ascontiguousarray((2 * math.pi / n) * coord[:, a], dtype=xp.float32)
            for a, n in enumerate(self.shape)
        ]
        self.npts = coord.shape[0]
        for plan in self._plans.values():
            plan.setpts(*self._points)

    def _plan(self, kind: int, batch: int) -> Any:
        import cufinufft

        key = (kind, batch)
        if key not in self._plans:
            isign = -1 if kind == 2 else 1
            with self.device.use():
                plan = cufinufft.Plan(kind, self.shape, batch, self.eps, isign,
                                      dtype="complex64", **self.options)  # fmt: skip
                plan.setpts(*self._points)
            self._plans[key] = plan
        return self._plans[key]

    def forward(self, x: Any) -> Any:
        """Type 2: images ``(batch, *shape)`` -> samples ``(batch, npts)``, complex64."""
        x = self.xp.ascontiguousarray(self.xp.asarray(x, dtype=self.xp.complex64))
        y = self._plan(2, x.shape[0]).execute(x).reshape(x.shape[0], self.npts)
        y *= self._scale
        return y

    def adjoint(self, y: Any) -> Any:
        """Type 1: samples ``(batch, npts)`` -> images ``(batch, *shape)``, complex64."""
        y = self.xp.ascontiguousarray(self.xp.asarray(y, dtype=self.xp.complex64))
        x = self._plan(1, y.shape[0]).execute(y).reshape(y.shape[0], *self.shape)
        x *= self._scale
        return x
