"""Coil combination: RSS, Roemer (with and without noise covariance), adaptive, SNR units."""

from __future__ import annotations

import numpy as np
import pytest
from cart_sim import coil_maps, phantom, support

from recon.coils.combine import adaptive_combine, combine_roemer, combine_rss
from recon.coils.prewhiten import noise_covariance, prewhiten, whitening_matrix
from recon.metrics import nrmse

SHAPE = (96, 96)


@pytest.fixture(scope="module")
def case():
    maps, image = coil_maps(16, SHAPE), phantom(SHAPE)
    return maps, image, maps * image


def _noise(shape, psi, rng):
    white = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    return np.einsum("cd,d...->c...", np.linalg.cholesky(psi), white).astype(np.complex64)


def test_roemer_recovers_the_object_and_rss_its_magnitude(case):
    maps, image, coils = case
    inside = support(image)
    assert nrmse(combine_roemer(coils, maps)[inside], image[inside]) < 1e-5
    # maps normalised to sum |S|^2 = 1: RSS equals |image|
    assert nrmse(combine_rss(coils)[inside], np.abs(image)[inside]) < 1e-5


def test_roemer_with_covariance_beats_ignoring_it(case, rng):
    """Correlated noise: S^H Psi^-1 y / S^H Psi^-1 S has the lower noise, as theory says."""
    maps, image, coils = case
    mix = np.eye(16) + 0.4 * rng.standard_normal((16, 16))
    psi = 0.01 * (mix @ mix.T + 0.1 * np.eye(16))
    noisy = coils + _noise(coils.shape, psi, rng)
    inside = support(image)
    with_psi = nrmse(combine_roemer(noisy, maps, psi=psi)[inside], image[inside])
    without = nrmse(combine_roemer(noisy, maps)[inside], image[inside])
    assert with_psi < 0.8 * without
    # prewhitening images and maps with W and combining as white is the same estimator
    w = whitening_matrix(psi)
    white = combine_roemer(prewhiten(noisy, w), prewhiten(maps, w))
    assert nrmse(white[inside], combine_roemer(noisy, maps, psi=psi)[inside]) < 1e-4


def test_snr_units_give_unit_noise(case, rng):
    """Prewhitened pure noise: the real part of the combined image has std 1."""
    maps, _, _ = case
    noise = _noise(maps.shape, np.eye(16), rng)
    assert abs(noise_covariance(noise)[0, 0].real - 1) < 0.05
    roemer = combine_roemer(noise, maps, snr_units=True)
    assert abs(float(np.std(roemer.real)) - 1) < 0.03
    # several maps: one image per map
    two = combine_roemer(noise, np.stack([maps, maps]), snr_units=True)
    assert two.shape == (2, *SHAPE) and nrmse(two[1], roemer) < 1e-6


@pytest.mark.parametrize("method", ["inati", "walsh"])
def test_adaptive_combine_matches_the_object_up_to_phase_and_scale(case, method):
    _maps, image, coils = case
    inside = support(image)
    out = adaptive_combine(coils, method=method)
    # the adaptive maps are normalised, so |out| = RSS; phase follows the dominant coil
    assert nrmse(np.abs(out)[inside], np.abs(image)[inside]) < 1e-3
    ratio = out[inside] / image[inside]
    phase_spread = float(np.std(np.angle(ratio * np.conj(np.mean(ratio)))))
    assert phase_spread < 0.1
