"""Toeplitz embedding of A^H W A vs the explicit NUFFT pair (BART's threshold: 1.5e-3).

Measured about 6e-6 (2D, finufft); the threshold 1e-4 leaves room for the NUFFT tolerance of
the point-spread function and float32 FFTs.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_emulator import build_module
from cuda_emulator.reference import random_complex, random_coord, relative_error

from recon.metrics import relative_difference
from recon.noncart.nufft import NufftPlan
from recon.noncart.toeplitz import ToeplitzNormal
from recon.noncart.trajectory import radial
from recon.resources import kernels_dir


@pytest.mark.parametrize("shape", [(32, 28), (12, 10, 8)])
@pytest.mark.parametrize("weighted", [False, True])
def test_toeplitz_matches_nufft_normal(rng, shape, weighted):
    coord = random_coord(rng, 1500, shape).astype(np.float32)
    weights = rng.random(1500).astype(np.float32) + 0.5 if weighted else None
    plan = NufftPlan(shape, coord, eps=1e-6)
    normal = ToeplitzNormal(coord, shape, weights=weights, eps=1e-6)
    x = random_complex(rng, (3, *shape))
    y = plan.forward(x)
    explicit = plan.adjoint(y if weights is None else y * weights)
    assert relative_error(normal(x), explicit) <= 1e-4
    # Hermitian: <T x, z> = <x, T z>
    z = random_complex(rng, (3, *shape))
    assert relative_difference(np.vdot(normal(x), z), np.vdot(x, normal(z))) <= 1e-5


def test_toeplitz_radial_psf_is_real_and_batched(rng):
    coord = radial(40, 64, n=32)
    normal = ToeplitzNormal(coord, (32, 32))
    assert normal.kernel.dtype == np.float32 and normal.kernel.shape == (64, 64)
    x = random_complex(rng, (5, 32, 32))
    single = np.stack([normal(xi) for xi in x])
    assert relative_error(normal(x), single) <= 1e-6


def test_toeplitz_emulator_cuda_backend(rng, tmp_path_factory):
    # the point-spread function computed by our own (emulated) kernels
    module = build_module(kernels_dir() / "gridding.cu", tmp_path_factory.mktemp("emulator"))
    shape = (16, 20)
    coord = random_coord(rng, 600, shape).astype(np.float32)
    ours = ToeplitzNormal(coord, shape, eps=1e-5, backend="cuda", module=module, xp=np,
                          threads=64)  # fmt: skip
    plan = NufftPlan(shape, coord, eps=1e-6)
    x = random_complex(rng, (2, *shape))
    assert relative_error(ours(x), plan.adjoint(plan.forward(x))) <= 1e-4
