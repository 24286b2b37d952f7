"""NUFFT plan with the finufft backend: accuracy, adjoint, registry and the SigPy linop.

Thresholds: exact NUDFT (float64) <= 10 eps; adjoint <= 1e-5; SigPy's own NUFFT (upsampling
1.25, width 4: about 1e-2 accurate) agrees to 2e-2, which checks scaling, sign and axis order.
"""

from __future__ import annotations

import numpy as np
import pytest
import sigpy
from cuda_emulator.reference import (
    nudft,
    nudft_adjoint,
    random_complex,
    random_coord,
    relative_error,
)

from recon.errors import ConfigError, InputError
from recon.metrics import relative_difference
from recon.noncart.backends import available_backends, backend_class, registered_backends
from recon.noncart.nufft import NufftPlan, nufft, nufft_adjoint


@pytest.mark.parametrize("shape", [(24, 20), (21, 17), (10, 12, 8)])
@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_nufft_finufft_matches_exact_nudft(rng, shape, eps):
    coord = random_coord(rng, 600, shape)
    plan = NufftPlan(shape, coord, eps=eps)
    assert plan.backend_name == "finufft"
    x = random_complex(rng, (2, *shape))
    y = random_complex(rng, (2, 600))
    assert relative_error(plan.forward(x), nudft(x, coord)) <= 10 * eps
    assert relative_error(plan.adjoint(y), nudft_adjoint(y, coord, shape)) <= 10 * eps


@pytest.mark.parametrize("shape", [(32, 28), (12, 10, 8)])
def test_nufft_adjoint(rng, shape):
    coord = random_coord(rng, 900, shape).reshape(30, 30, len(shape))
    plan = NufftPlan(shape, coord, eps=1e-5)
    x = random_complex(rng, (3, *shape))
    y = random_complex(rng, (3, 30, 30))
    lhs = np.vdot(plan.forward(x).astype(np.complex128), y)
    rhs = np.vdot(x.astype(np.complex128), plan.adjoint(y))
    assert relative_difference(lhs, rhs) <= 1e-5


def test_nufft_full_cartesian_grid_is_orthonormal(rng):
    # on the full Cartesian grid the forward NUFFT is the centred orthonormal FFT
    from recon.backend import fftc

    shape = (16, 12)
    grid = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij"), -1)
    x = random_complex(rng, shape)
    y = nufft(x, grid.astype(np.float32), eps=1e-6)
    assert relative_error(y, fftc(x)) <= 1e-5
    assert relative_error(nufft_adjoint(y, grid, shape, eps=1e-6), x) <= 1e-5


def test_nufft_matches_sigpy(rng):
    shape = (32, 32)
    coord = random_coord(rng, 2000, shape).astype(np.float32)
    x = random_complex(rng, (2, *shape))
    ours = nufft(x, coord, eps=1e-6)
    theirs = sigpy.nufft(x, coord)
    assert relative_error(theirs, ours) <= 2e-2
    y = random_complex(rng, (2, 2000))
    assert relative_error(sigpy.nufft_adjoint(y, coord, (2, *shape)),
                          nufft_adjoint(y, coord, shape, eps=1e-6)) <= 2e-2  # fmt: skip


def test_nufft_linop_in_sigpy_algorithms(rng):
    # SigPy's least-squares app solves with our operator exactly as with its own
    shape = (24, 24)
    coord = (random_coord(rng, 3000, shape)).astype(np.float32)
    plan = NufftPlan(shape, coord, eps=1e-6)
    linop = plan.linop()
    assert linop.ishape == list(shape) and linop.oshape == [3000]
    x_true = random_complex(rng, shape)
    y = linop * x_true
    x_hat = sigpy.app.LinearLeastSquares(linop, y, max_iter=30, show_pbar=False).run()
    assert relative_error(x_hat, x_true) <= 1e-3
    # adjoint through SigPy's .H, with a batch axis
    batched = plan.linop((2,))
    yb = random_complex(rng, (2, 3000))
    assert relative_error(batched.H * yb, plan.adjoint(yb)) == 0.0
    lhs = np.vdot((batched * random_complex(np.random.default_rng(1), (2, *shape))), yb)
    rhs = np.vdot(random_complex(np.random.default_rng(1), (2, *shape)), batched.H * yb)
    assert relative_difference(lhs, rhs) <= 1e-5


def test_nufft_registry_and_errors():
    assert {"finufft", "cuda", "cufinufft"} <= set(registered_backends())
    assert "finufft" in available_backends()
    assert backend_class("finufft").available()
    with pytest.raises(ConfigError, match="unknown NUFFT backend"):
        NufftPlan((8, 8), backend="nope")
    with pytest.raises(ConfigError, match="eps"):
        NufftPlan((8, 8), eps=2.0)
    plan = NufftPlan((8, 8), np.zeros((5, 2)))
    with pytest.raises(InputError, match="image must have shape"):
        plan.forward(np.zeros((3, 9, 8), np.complex64))
    with pytest.raises(InputError, match="coord must have shape"):
        plan.set_points(np.zeros((5, 3)))


def test_nufft_kernel_parameters():
    from recon.noncart.kernel import fine_grid_shape, kernel_fourier, kernel_spec, next_smooth_even

    widths = {eps: kernel_spec(eps).width for eps in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)}
    assert widths == {1e-2: 3, 1e-3: 4, 1e-4: 5, 1e-5: 6, 1e-6: 7}  # ceil(log10(1/eps)) + 1
    assert abs(kernel_spec(1e-5).beta - 2.30 * 6) <= 1e-12
    assert kernel_spec(1e-3, 1.25).width == 5
    assert [next_smooth_even(n) for n in (220, 256, 441, 7)] == [240, 256, 450, 8]
    spec = kernel_spec(1e-4)
    assert fine_grid_shape((110, 128), spec) == (240, 256)
    # kernel Fourier transform by quadrature vs a fine Riemann sum of the same integral
    u = np.linspace(-spec.width / 2, spec.width / 2, 200001)
    r = np.array([0, 17, 63])
    brute = (spec(2 * u / spec.width)[None] * np.cos(2 * np.pi * np.outer(r, u) / 256)).sum(1)
    brute *= u[1] - u[0]
    exact = kernel_fourier(spec, 256, 128)[r + 64]
    assert np.max(np.abs(exact / brute - 1)) <= 1e-6
    with pytest.raises(ConfigError):
        kernel_spec(1e-16)


def test_nufft_exact_nudft_subsets(rng):
    # recon.noncart.nudft (used by `recon nufft` and the benchmarks) vs the test reference
    from recon.noncart.nudft import nudft_adjoint as subset_adjoint
    from recon.noncart.nudft import nudft_forward

    shape = (9, 12, 10)
    coord = random_coord(rng, 300, shape)
    x = random_complex(rng, (1, *shape))
    y = random_complex(rng, (1, 300))
    pixels = rng.choice(np.prod(shape), 50, replace=False)
    assert relative_error(nudft_forward(x[0], coord), nudft(x, coord)[0]) <= 1e-12
    full = nudft_adjoint(y, coord, shape)[0].ravel()[pixels]
    assert relative_error(subset_adjoint(y[0], coord, shape, pixels), full) <= 1e-12
