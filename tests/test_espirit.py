"""ESPIRiT maps on simulated 32-coil data: truth, SENSE projection, two maps, 3-D, operator.

Simulated data: ``recon.sim`` (brain phantom, 32 Biot-Savart loops in 4 rings, maps
normalised to ``sum |S|^2 = 1``) for the 2-D slice, ``cart_sim`` for the small 3-D volume;
noise-free so the numbers measure the method.

Thresholds: on the 128 x 128 slice our maps are within NRMSE 0.005 of the truth inside the
object (SigPy's EspiritCalib: 0.005 on similar data); the 0.02 bound is ~4x that, far
below the error of the same maps with the coils shifted by one (which the negative
control checks). The SENSE projection bound is BART's ecalib test value, 0.05.
"""

from __future__ import annotations

import numpy as np
import pytest
from cart_sim import coil_maps, kspace, phantom, support

from recon.backend import ifftc
from recon.coils.sensitivity import (
    _operator_blocks,
    dominant_coil_vector,
    espirit_lags,
    espirit_maps,
    phase_reference,
)
from recon.metrics import nrmse


def _truth(maps: np.ndarray, k: np.ndarray, width: int) -> np.ndarray:
    centre = tuple(slice(n // 2 - width // 2, n // 2 + width // 2) for n in k.shape[1:])
    return phase_reference(maps, dominant_coil_vector(k[(slice(None), *centre)]))


def _projection_error(maps: np.ndarray, images: np.ndarray) -> float:
    """NRMSE of S S^H x vs x (maps (nmaps, nc, ...) or (nc, ...))."""
    maps = maps if maps.ndim == images.ndim + 1 else maps[None]
    proj = sum(m * np.sum(np.conj(m) * images, axis=0) for m in maps)
    return nrmse(proj, images)


@pytest.fixture(scope="module")
def case2d():
    from recon.sim.coils import coil_sensitivities
    from recon.sim.phantom import brain_phantom

    shape = (128, 128)
    truth, image = coil_sensitivities(32, shape), brain_phantom(shape)
    return truth, image, kspace(image, truth)


def test_maps_match_truth_up_to_common_phase(case2d):
    truth, image, k = case2d
    maps, eig = espirit_maps(k, (128, 128), return_eigenvalues=True)
    inside = support(image)
    err = nrmse(maps[:, inside], _truth(truth, k, 24)[:, inside])
    assert err < 0.02
    assert float(eig[inside].min()) > 0.95
    shifted = np.roll(maps, 1, axis=0)
    assert nrmse(shifted[:, inside], _truth(truth, k, 24)[:, inside]) > 0.2


def test_sense_projection_reproduces_fully_sampled_data(case2d):
    _, _, k = case2d
    images = ifftc(k, axes=(1, 2))
    maps = espirit_maps(k, (128, 128))
    assert _projection_error(maps, images) < 0.05
    assert _projection_error(np.roll(maps, 1, axis=0), images) > 0.1


def test_two_maps_explain_a_folded_object(case2d):
    """Half the FOV along y: the object overlaps itself and one map per pixel is not enough."""
    _, _, k = case2d
    folded = k[:, ::2, :]
    images = ifftc(folded, axes=(1, 2))
    maps = espirit_maps(folded, (64, 128), nmaps=2, crop=0.0)
    one = espirit_maps(folded, (64, 128), crop=0.0)
    assert _projection_error(one, images) > 0.08
    assert _projection_error(maps, images) < 0.02


def test_operator_is_exact_at_full_resolution(case2d):
    """G(r) from the lag coefficients equals SigPy-style full-size kernel images (eq. 13)."""
    _, _, k = case2d
    calib = k[:, 52:76, 52:76]
    lags = espirit_lags(calib, (6, 6), 0.02)
    blocks = {index[0].start: g for index, g in _operator_blocks(lags, (64, 64), (6, 6), 64)}
    from recon.coils.sensitivity import _row_space, calibration_matrix

    v = _row_space(calibration_matrix(calib, (6, 6)), 0.02)
    kern = np.conj(v.T).reshape(-1, 32, 6, 6)
    padded = np.zeros((len(kern), 32, 64, 64), dtype=np.complex64)
    padded[:, :, 29:35, 29:35] = kern
    images = ifftc(padded, axes=(2, 3)) * 64 / 6  # image-domain kernels, scaled by N / k
    worst = 0.0
    for y, x in [(32, 32), (10, 32), (32, 55), (3, 7)]:
        full = np.einsum("jc,jd->cd", images[:, :, y, x], np.conj(images[:, :, y, x]))
        worst = max(worst, float(np.abs(blocks[y][x] - full).max()))
    assert worst < 1e-5


def test_three_d_volume_and_single_slice_layout():
    shape = (24, 24, 24)
    truth, image = coil_maps(32, shape), phantom(shape)
    k = kspace(image, truth)
    maps = espirit_maps(k, shape, calib_width=12, kernel_width=4)
    inside = support(image)
    assert nrmse(maps[:, inside], _truth(truth, k, 12)[:, inside]) < 0.04
    # a 2-D slice given as (nc, 1, ny, nx) gives the 2-D result
    truth2, image2 = coil_maps(8, (48, 48)), phantom((48, 48))
    k2 = kspace(image2, truth2)
    flat = espirit_maps(k2, (48, 48), calib_width=16)
    stacked = espirit_maps(k2[:, None], (1, 48, 48), calib_width=16)
    assert nrmse(stacked[:, 0], flat) < 1e-5


def test_undersampled_kspace_calibrates_on_its_reference_lines(case2d):
    """R=3 with 20 reference lines: the 24-wide request shrinks to the 20 sampled lines."""
    from recon.coils.sensitivity import fully_sampled_centre

    truth, image, k = case2d
    under = np.zeros_like(k)
    under[:, ::3] = k[:, ::3]
    under[:, 54:74] = k[:, 54:74]
    assert fully_sampled_centre(under[:, 52:76, 52:76], 24) == (20, 24)
    maps = espirit_maps(under, (128, 128))
    inside = support(image)
    assert nrmse(maps[:, inside], _truth(truth, k, 20)[:, inside]) < 0.03


def test_randomized_row_space_matches_the_exact_one():
    """3-D calibration matrix (729 x 2048): the randomized solver finds the same subspace."""
    from recon.coils.sensitivity import _row_space, calibration_matrix

    shape = (24, 24, 24)
    k = kspace(phantom(shape), coil_maps(32, shape))
    a = calibration_matrix(k[:, 6:18, 6:18, 6:18], (4, 4, 4))
    exact = _row_space(a, 0.02)
    fast = _row_space(a, 0.02, exact_max=256)
    assert exact.shape == fast.shape
    distance = np.linalg.norm(exact @ exact.conj().T - fast @ fast.conj().T, 2)
    assert distance < 1e-3


@pytest.mark.gpu
def test_gpu_maps_match_cpu(case2d):
    """The same code on CuPy arrays gives the CPU maps (float32 round-off)."""
    import cupy

    _, image, k = case2d
    cpu = espirit_maps(k, (128, 128))
    gpu = espirit_maps(cupy.asarray(k), (128, 128))
    inside = support(image)
    assert nrmse(cupy.asnumpy(gpu)[:, inside], cpu[:, inside]) < 1e-4
