"""Registry of NUFFT backends: name -> implementing class, imported on first use.

Every backend class takes ``(shape, *, eps, upsampling, device, **options)``, has
``available() -> bool`` (classmethod), ``set_points(coord)``, ``forward(x)`` mapping
``(batch, *shape)`` complex64 images to ``(batch, npts)`` samples, and ``adjoint(y)`` mapping
back; both follow the scaling and sign of DESIGN.md (orthonormal for a full Cartesian grid,
``exp(-i 2 pi k.r / N)`` forward). Points are ``coord`` of shape ``(npts, ndim)`` in grid units.
Backends that can also grid without FFT (for Pipe-Menon density compensation) have
``spread(y)`` and ``interp(grid)`` on their oversampled grid; its layout (where k = 0 sits) is
backend-specific, only the pair ``interp(spread(.))`` is meaningful.

- ``finufft``: FINUFFT on the CPU, multithreaded (the CPU default);
- ``cuda``: recon's own kernels (kernels/gridding.cu) through cupy.RawModule (the GPU default);
- ``cufinufft``: cuFINUFFT on the GPU, optional, a peer for benchmarks.
"""

from __future__ import annotations

import importlib
from typing import Any

from recon.errors import ConfigError

_REGISTRY: dict[str, tuple[str, str]] = {}


def register(name: str, module: str, cls: str) -> None:
    """Register backend ``name`` implemented by class ``cls`` of ``module`` (lazy import)."""
    _REGISTRY[name] = (module, cls)


def backend_class(name: str) -> Any:
    """The class of backend ``name``; ConfigError for an unknown name."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown NUFFT backend {name!r}: have {sorted(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def available_backends() -> list[str]:
    """Names of the registered backends usable on this machine."""
    return [name for name in sorted(_REGISTRY) if backend_class(name).available()]


def registered_backends() -> list[str]:
    """Names of all registered backends, usable here or not."""
    return sorted(_REGISTRY)


register("finufft", "recon.noncart.backends.finufft", "FinufftBackend")
register("cuda", "recon.noncart.backends.cuda", "CudaBackend")
register("cufinufft", "recon.noncart.backends.cufinufft", "CufinufftBackend")
