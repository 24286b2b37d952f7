"""Non-Cartesian trajectories: shapes, units, k-space coverage and angle increments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from recon.noncart.trajectory import (
    GOLDEN_ANGLE,
    radial,
    radial_3d,
    spiral,
    spoke_angles,
    stack_of_stars,
)


def test_radial_spokes_units_centre_and_angles():
    coord = radial(16, 128, golden=False, n=64)  # 2x oversampled readout of a 64 matrix
    assert coord.shape == (16, 128, 2) and coord.dtype == np.float32
    assert np.abs(coord).max() <= 32.0
    assert np.abs(coord[:, 64]).max() == 0.0  # k = 0 at sample nsamples // 2
    step = np.linalg.norm(np.diff(coord, axis=1), axis=-1)
    assert np.abs(step - 0.5).max() < 1e-5  # N / nsamples grid units per sample
    angles = np.arctan2(coord[:, -1, 0], coord[:, -1, 1])
    assert np.abs(np.diff(np.unwrap(angles)) - np.pi / 16).max() < 1e-6
    assert np.abs(np.rad2deg(GOLDEN_ANGLE) - 111.246117975).max() < 1e-6
    golden = spoke_angles(5, golden=True)
    assert np.abs(np.diff(golden) % (2 * np.pi) - GOLDEN_ANGLE).max() < 1e-9


def test_spiral_covers_kspace_at_nyquist():
    n, arms = 64, 8
    coord = spiral(arms, 4000, n=n)
    assert coord.shape == (arms, 4000, 2)
    assert np.abs(coord[:, 0]).max() == 0.0
    radius = np.linalg.norm(coord, axis=-1)
    assert radius.max() <= n / 2 and radius.max() > n / 2 - 0.1
    assert np.linalg.norm(np.diff(coord, axis=1), axis=-1).max() < 1.0
    # Every Cartesian grid point within the disc has a sample closer than 0.75 grid units.
    ky, kx = np.meshgrid(np.arange(-28, 29), np.arange(-28, 29), indexing="ij")
    grid = np.stack([ky, kx], axis=-1)[np.hypot(ky, kx) < 28].reshape(-1, 2)
    nearest, _ = cKDTree(coord.reshape(-1, 2)).query(grid)
    assert nearest.max() < 0.75


def test_stack_of_stars_and_3d_radial():
    coord = stack_of_stars(10, 64, 8, n=32)
    assert coord.shape == (8, 10, 64, 3)
    assert np.array_equal(np.unique(coord[..., 0]), np.arange(-4, 4))
    assert np.abs(coord[3, ..., 1:] - radial(10, 64, n=32)).max() == 0.0
    koosh = radial_3d(200, 64, n=32)
    assert koosh.shape == (200, 64, 3)
    ends = koosh[:, 0] / np.linalg.norm(koosh[:, 0], axis=-1, keepdims=True)
    assert np.abs(np.linalg.norm(koosh[:, 0], axis=-1) - 16).max() < 1e-4
    # Directions are spread over the sphere: the mean direction is near the z axis only.
    assert np.abs(ends[:, 1:].mean(axis=0)).max() < 0.1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="nspokes"):
        radial(0, 64)
    with pytest.raises(ValueError, match="nsamples"):
        spiral(4, 1, n=32)
