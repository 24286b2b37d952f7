"""Adjoint tests <A x, y> = <x, A^H y> for every operator (complex64, rel. diff <= 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
from cart_sim import coil_maps

from recon.iterative.operators import (
    FiniteDifference,
    SenseOp,
    max_eigenvalue,
    to_centered,
    to_uncentered,
)
from recon.iterative.pics import _lipschitz_bound
from recon.iterative.wavelet import Wavelet
from recon.metrics import nrmse, relative_difference


def crandn(rng, shape):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def adjoint_error(op, rng):
    x = crandn(rng, op.ishape)
    y = crandn(rng, op.oshape)
    lhs = np.vdot(op.forward(x).astype(np.complex128), y)
    rhs = np.vdot(x, op.adjoint(y).astype(np.complex128))
    return relative_difference(lhs, rhs)


@pytest.mark.parametrize("centered", [True, False])
@pytest.mark.parametrize("nmaps", [1, 2])
def test_sense_adjoint(rng, centered, nmaps):
    maps = crandn(rng, (nmaps, 6, 24, 20))
    mask = rng.random((24, 20)) < 0.4
    op = SenseOp(maps if nmaps > 1 else maps[0], mask, ndim=2, centered=centered)
    assert adjoint_error(op, rng) < 1e-5


@pytest.mark.parametrize("fourier_axes", [1, 2])
def test_sense_adjoint_partial_fourier_axes(rng, fourier_axes):
    maps = crandn(rng, (4, 8, 10, 12))
    mask = np.broadcast_to(rng.random((8, 10, 1)) < 0.4, (8, 10, 12))
    op = SenseOp(maps, mask, ndim=3, fourier_axes=fourier_axes)
    assert op.axes == tuple(range(-3, -3 + fourier_axes))
    assert adjoint_error(op, rng) < 1e-5


def test_sense_adjoint_batch_3d(rng):
    maps = crandn(rng, (4, 8, 10, 12))
    mask = rng.random((3, 8, 10, 12)) < 0.3  # three frames with their own masks
    op = SenseOp(maps, mask, ndim=3)
    assert op.ishape == (3, 1, 8, 10, 12)
    assert adjoint_error(op, rng) < 1e-5
    x = crandn(rng, op.ishape)
    assert nrmse(op.normal(x), op.adjoint(op.forward(x))) < 1e-5


def test_uncentered_operator_matches_centered(rng):
    maps = crandn(rng, (5, 16, 12))
    mask = rng.random((16, 12)) < 0.5
    x = crandn(rng, (1, 16, 12))
    centred = SenseOp(maps, mask).forward(x)
    plain = SenseOp(to_uncentered(maps, 2), to_uncentered(mask, 2), centered=False)
    assert nrmse(to_centered(plain.forward(to_uncentered(x, 2)), 2), centred) < 1e-5


@pytest.mark.parametrize("axes", [(0, 1), (0, 1, 2)])
def test_finite_difference_adjoint(rng, axes):
    op = FiniteDifference((6, 10, 8), axes)
    assert adjoint_error(op, rng) < 1e-5


@pytest.mark.parametrize(("shape", "wave"), [((2, 32, 48), "db4"), ((16, 24, 32), "db2")])
def test_wavelet_adjoint(rng, shape, wave):
    w = Wavelet(shape, axes=(1, 2) if shape[0] == 2 else (0, 1, 2), wave=wave)
    assert adjoint_error(w, rng) < 1e-5


def test_lipschitz_bound_is_an_upper_bound(rng):
    """The free step-size bound max_r sum|S|^2 is >= the power-iteration eigenvalue."""
    maps = coil_maps(8, (32, 32))
    mask = rng.random((32, 32)) < 0.3
    op = SenseOp(maps, mask)
    lam = max_eigenvalue(op.normal, crandn(rng, op.ishape), iterations=30)
    bound = _lipschitz_bound(op.maps, 2)
    assert lam <= bound * (1 + 1e-4)
    assert lam > 0.5 * bound  # and not uselessly loose
