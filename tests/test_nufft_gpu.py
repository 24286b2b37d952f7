"""The cuda backend on a real GPU (cupy.RawModule of kernels/gridding.cu), and cuFINUFFT.

Marked ``gpu``: skipped without a CUDA device. Same thresholds as the emulator tests: exact
NUDFT <= 10 eps, the finufft backend with the same kernel <= 1e-5, adjoint <= 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
from cuda_emulator.reference import (
    nudft,
    nudft_adjoint,
    random_complex,
    random_coord,
    relative_error,
)

from recon.backend import to_host
from recon.metrics import relative_difference
from recon.noncart.backends import available_backends
from recon.noncart.backends.finufft import FinufftBackend
from recon.noncart.nufft import NufftPlan

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("shape", [(64, 48), (24, 20, 16)])
@pytest.mark.parametrize("ncoils", [1, 7, 32])
def test_nufft_gpu_cuda_backend(rng, shape, ncoils):
    import cupy

    eps = 2e-5
    coord = random_coord(rng, 5000, shape)
    plan = NufftPlan(shape, cupy.asarray(coord), eps=eps, backend="cuda", device="cuda")
    peer = FinufftBackend(shape, eps=eps, upsampling=2.0, spread_kerformula=1,
                          spread_kerevalmeth=0)  # fmt: skip
    peer.set_points(coord)
    x = random_complex(rng, (ncoils, *shape))
    y = random_complex(rng, (ncoils, 5000))
    fwd = to_host(plan.forward(cupy.asarray(x)))
    adj = to_host(plan.adjoint(cupy.asarray(y)))
    assert relative_error(fwd, peer.forward(x)) <= 1e-5
    assert relative_error(adj, peer.adjoint(y)) <= 1e-5
    subset = rng.choice(5000, 200, replace=False)
    assert relative_error(fwd[:1, subset], nudft(x[:1], coord[subset])) <= 10 * eps
    lhs = np.vdot(fwd.astype(np.complex128), y)
    rhs = np.vdot(x.astype(np.complex128), adj)
    assert relative_difference(lhs, rhs) <= 1e-5


def test_nufft_gpu_cufinufft_backend(rng):
    if "cufinufft" not in available_backends():
        pytest.skip("cufinufft not installed")
    import cupy

    shape = (40, 36)
    coord = random_coord(rng, 3000, shape)
    plan = NufftPlan(shape, cupy.asarray(coord), eps=1e-5, backend="cufinufft", device="cuda")
    x = random_complex(rng, (3, *shape))
    y = random_complex(rng, (3, 3000))
    assert relative_error(to_host(plan.forward(cupy.asarray(x))), nudft(x, coord)) <= 1e-4
    adjoint = to_host(plan.adjoint(cupy.asarray(y)))
    assert relative_error(adjoint, nudft_adjoint(y, coord, shape)) <= 1e-4
