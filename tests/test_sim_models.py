"""In-memory simulator models: phantom, B0 map, coil sensitivities, noise covariance."""

from __future__ import annotations

import numpy as np

from recon.sim import coils as coil_module
from recon.sim.coils import coil_sensitivities, coil_sensitivities_at
from recon.sim.noise import correlated_noise, noise_covariance
from recon.sim.phantom import HEAD_AXES_MM, brain_phantom, field_map, head_radius
from recon.sim.space import grid_points, rotation_matrix


def test_phantom_zero_outside_head_and_consistent_between_2d_and_3d():
    image = brain_phantom((96, 96))
    assert image.dtype == np.complex64 and image.shape == (96, 96)
    outside = head_radius(grid_points((96, 96))) > 1.0
    assert np.count_nonzero(image[outside]) == 0
    inside = np.abs(image) > 0
    assert inside.mean() > 0.3  # the head fills a good part of the 220 mm FOV
    # The 2D slice is the central slice of a 3D volume on the same in-plane grid.
    volume = brain_phantom((9, 96, 96), fov_mm=(45.0, 220.0, 220.0))
    assert np.abs(volume[4] - image).max() == 0.0


def test_phantom_has_tissue_contrast_fine_detail_and_smooth_phase():
    image = brain_phantom((192, 192), seed=3)
    mag = np.abs(image)
    # Many distinct tissue levels (texture aside): histogram of the magnitude is spread.
    levels = np.histogram(mag[mag > 0], bins=40)[0]
    assert np.count_nonzero(levels > 20) >= 8
    # Fine detail: energy beyond half the k-space radius is a visible fraction.
    k = np.fft.fftshift(np.fft.fft2(mag))
    ky, kx = np.meshgrid(np.arange(-96, 96), np.arange(-96, 96), indexing="ij")
    high = np.hypot(ky, kx) > 48
    assert np.sum(np.abs(k[high]) ** 2) / np.sum(np.abs(k) ** 2) > 1e-3
    # Smooth phase: neighbouring voxels inside the head differ by well under 0.1 rad.
    both = (mag[:, 1:] > 0) & (mag[:, :-1] > 0)
    step = np.angle(image[:, 1:] * image[:, :-1].conj())[both]
    assert np.abs(step).max() < 0.1
    # Seeds change the details, not the anatomy.
    other = np.abs(brain_phantom((192, 192), seed=4))
    assert 0.01 < np.linalg.norm(other - mag) / np.linalg.norm(mag) < 0.5


def test_field_map_is_smooth_and_largest_near_frontal_sinus():
    shape = (24, 96, 96)
    fmap = field_map(shape, spread_hz=40.0)
    assert fmap.dtype == np.float32
    points = grid_points(shape)
    head = head_radius(points) < 0.87
    frontal = head & (points[..., 1] < -0.5 * HEAD_AXES_MM[1]) & (np.abs(points[..., 2]) < 30)
    posterior = head & (points[..., 1] > 0.3 * HEAD_AXES_MM[1])
    gradient = np.linalg.norm(np.stack(np.gradient(fmap)), axis=0)  # Hz per voxel
    assert gradient[frontal].max() > 3 * gradient[posterior].max()
    assert np.abs(fmap[frontal]).max() > 2 * 40.0
    for axis in (-1, -2):  # smooth: a few Hz per 2.3 mm voxel at most
        assert np.abs(np.diff(fmap, axis=axis)).max() < 0.5 * np.abs(fmap).max()
    assert np.abs(field_map(shape, spread_hz=80.0) - 2 * fmap).max() < 1e-3


def test_coil_maps_normalised_smooth_and_independent_of_matrix():
    maps = coil_sensitivities(8, (64, 64))
    assert maps.shape == (8, 64, 64) and maps.dtype == np.complex64
    assert np.abs(np.sum(np.abs(maps) ** 2, axis=0) - 1).max() < 1e-5
    # Interpolated grid maps agree with the direct Biot-Savart evaluation inside the head.
    points = grid_points((20, 48, 48))
    head = head_radius(points) < 1.0
    grid = coil_sensitivities(8, (20, 48, 48))
    direct = coil_sensitivities_at(8, points)
    assert np.abs(grid - direct)[:, head].max() < 1e-3
    # Same physical point, different matrices: the 2D 64^2 and 3D 20x48x48 centres agree.
    assert np.abs(maps[:, 32, 32] - grid[:, 10, 24, 24]).max() < 1e-3
    # Rotated by 90 deg about z (read = +y, phase = -x), voxel (j, i) sits where transverse
    # voxel (i, 64 - j) does.
    rotated = coil_sensitivities(8, (64, 64), rotation=rotation_matrix((0, 0, 90)))
    expected = np.swapaxes(maps[:, :, 63:0:-1], 1, 2)
    head = head_radius(grid_points((64, 64), rotation=rotation_matrix((0, 0, 90))))[1:] < 1.0
    assert np.abs(rotated[:, 1:, :] - expected)[:, head].max() < 1e-3
    # The coils see the head differently: the array is well conditioned inside it.
    inside = np.abs(brain_phantom((64, 64))) > 0
    s = np.linalg.svd(maps[:, inside], compute_uv=False)
    assert s[-1] / s[0] > 0.05


def test_loop_field_closed_form_matches_polygon_biot_savart(rng):
    centre, radius = np.array([10.0, -20.0, 5.0]), 40.0
    normal = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    points = rng.normal(size=(40, 3)) * 60
    u = np.cross(normal, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    t = 2 * np.pi * np.arange(20001) / 20000
    vertices = centre + radius * (np.cos(t)[:, None] * u + np.sin(t)[:, None] * v)
    mids, dl = 0.5 * (vertices[1:] + vertices[:-1]), np.diff(vertices, axis=0)
    r = points[:, None, :] - mids
    inv3 = np.einsum("nsi,nsi->ns", r, r) ** -1.5
    polygon = np.einsum("nsi,ns->ni", np.cross(dl, r), inv3) / 4  # mu0 I / (4 pi) vs / pi
    closed = coil_module._loop_field(points, centre, normal, radius)
    assert np.abs(closed - polygon).max() / np.abs(polygon).max() < 1e-6


def test_noise_covariance_is_hermitian_pd_with_realistic_correlations():
    for ncoils in (2, 8, 32):
        cov = noise_covariance(ncoils, seed=1)
        assert cov.shape == (ncoils, ncoils) and cov.dtype == np.complex128
        assert np.abs(cov - cov.conj().T).max() == 0.0
        assert np.linalg.eigvalsh(cov).min() > 0.3
        sd = np.sqrt(np.diag(cov).real)
        corr = np.abs(cov) / np.outer(sd, sd)
        off = corr[~np.eye(ncoils, dtype=bool)]
        assert 0.05 - 1e-9 <= off.min() and off.max() <= 0.2
        assert abs(np.mean(np.diag(cov).real) - 1) < 1e-12


def test_correlated_noise_has_requested_covariance(rng):
    cov = noise_covariance(8, seed=2)
    noise = correlated_noise(cov, (100_000,), rng)
    empirical = noise @ noise.conj().T / noise.shape[1]
    assert np.linalg.norm(empirical - cov) / np.linalg.norm(cov) < 0.02
