"""Spreading-kernel parameters of the gridding NUFFT: width, shape, grid size, deapodisation.

Facts used (FINUFFT, Barnett, Magland, af Klinteberg, SIAM J. Sci. Comput. 2019, and its
``setup_spreader``; cuFINUFFT, Shih et al. 2021):

- at upsampling 2 the width is ``w = ceil(log10(1/eps)) + 1`` and the exponential of
  semicircle ``phi(z) = exp(beta (sqrt(1 - z^2) - 1))`` uses ``beta = c(w) w`` with
  c = 2.20, 2.26, 2.38 for w = 2, 3, 4 and 2.30 otherwise;
- at another upsampling sigma: ``w = ceil(ln(1/eps) / (pi sqrt(1 - 1/sigma)))`` and
  ``beta = 0.97 pi (1 - 1/(2 sigma)) w``;
- Kaiser-Bessel ``I0(beta sqrt(1 - z^2))``,
  ``beta = pi sqrt((w/sigma)^2 (sigma - 1/2)^2 - 0.8)``
  (Beatty, Nishimura, Pauly, IEEE TMI 2005;24:799);
- the oversampled grid has ``n = next 2,3,5-smooth even number >= max(sigma N, 2 w)``;
- deapodisation divides by the kernel's Fourier transform, evaluated by Gauss-Legendre
  quadrature (exact to rounding for these smooth compact kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import i0

from recon.errors import ConfigError

MAX_WIDTH = 16  # GRIDDING_MAX_WIDTH in kernels/gridding.cu
KINDS = {"es": 0, "kb": 1}


@dataclass(frozen=True)
class KernelSpec:
    """A spreading kernel: ``kind`` ("es" or "kb"), width ``w`` (grid cells), shape ``beta``."""

    kind: str
    width: int
    beta: float
    upsampling: float

    @property
    def kind_code(self) -> int:
        """The integer the CUDA kernels take (0: exponential of semicircle, 1: Kaiser-Bessel)."""
        return KINDS[self.kind]

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Kernel values at ``z`` in [-1, 1] (units of half the width), float64."""
        s = np.sqrt(np.clip(1.0 - np.asarray(z, dtype=np.float64) ** 2, 0.0, None))
        if self.kind == "es":
            return np.exp(self.beta * (s - 1.0))
        return i0(self.beta * s)


def kernel_spec(eps: float, upsampling: float = 2.0, kind: str = "es") -> KernelSpec:
    """The kernel reaching relative accuracy ``eps`` at the given upsampling factor.

    Raises
    ------
    ConfigError
        ``eps`` outside (0, 1), upsampling <= 1, an unknown kind, or a width above 16.
    """
    if not 0 < eps < 1:
        raise ConfigError(f"NUFFT tolerance eps={eps} must be in (0, 1)")
    if upsampling <= 1:
        raise ConfigError(f"NUFFT upsampling={upsampling} must be > 1")
    if kind not in KINDS:
        raise ConfigError(f"unknown gridding kernel {kind!r}: use one of {sorted(KINDS)}")
    if upsampling == 2.0:
        width = max(2, math.ceil(math.log10(1.0 / eps)) + 1)
        factor = {2: 2.20, 3: 2.26, 4: 2.38}.get(width, 2.30)
        beta = factor * width
    else:
        width = max(2, math.ceil(math.log(1.0 / eps) / (math.pi * math.sqrt(1 - 1 / upsampling))))
        beta = 0.97 * math.pi * (1 - 1 / (2 * upsampling)) * width
    if width > MAX_WIDTH:
        raise ConfigError(f"eps={eps} needs kernel width {width} > {MAX_WIDTH}")
    if kind == "kb":
        arg = (width / upsampling) ** 2 * (upsampling - 0.5) ** 2 - 0.8
        beta = math.pi * math.sqrt(max(arg, 1e-6))
    return KernelSpec(kind, width, float(beta), float(upsampling))


def next_smooth_even(n: float) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3 and 5."""
    m = max(2, math.ceil(n))
    m += m % 2
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


def fine_grid_shape(shape: tuple[int, ...], spec: KernelSpec) -> tuple[int, ...]:
    """Oversampled grid size per axis, ``next_smooth_even(max(sigma N, 2 w))``."""
    return tuple(next_smooth_even(max(spec.upsampling * n, 2 * spec.width)) for n in shape)


def kernel_fourier(spec: KernelSpec, n: int, size: int) -> np.ndarray:
    """Fourier transform of the kernel at frequencies r / n, r = -size//2 .. (size-1)//2.

    ``phihat(r) = integral phi(2u / w) cos(2 pi r u / n) du`` over u in [-w/2, w/2] (grid cells
    of the oversampled grid), float64, shape ``(size,)``; the deapodisation divides by it.
    """
    nodes, weights = np.polynomial.legendre.leggauss(4 * spec.width + 40)
    half = spec.width / 2
    u = half * (nodes + 1) / 2  # [0, w/2]
    wq = weights * half / 2
    r = np.arange(size) - size // 2
    values = spec(u / half)
    return 2 * np.cos(2 * np.pi * np.outer(r, u) / n) @ (wq * values)
