"""Simultaneous multi-slice: simulation (recon.sim.sms) and split-slice GRAPPA.

Setting: 96 x 96 slices (220 mm FOV) 30 mm apart, 16 channels (two rings of the simulator's
array), noise std 2 % of the mean object magnitude per k-space sample, 32 SBR lines,
(5, 5) kernels, reg 1e-3. The thresholds are multiples of the noise floor: the NRMSE of the
fully sampled single-band image of the same slice with the same noise (about 0.018), so a
threshold ``t x floor`` allows a noise amplification ``t`` (g-factor times ``sqrt(R)``).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from recon.backend import ifftc
from recon.cartesian.slice_grappa import calibrate, separate, sms_grappa
from recon.errors import InputError
from recon.metrics import nrmse
from recon.sim.noise import correlated_noise
from recon.sim.sms import SmsData, caipi_phase, collapse, simulate_sms

SHAPE = (96, 96)
NCOILS = 16


@cache
def _data(mb: int, ry: int, shift: int | None = None) -> SmsData:
    return simulate_sms(SHAPE, ncoils=NCOILS, mb=mb, ry=ry, shift=shift, seed=3)


def _combine(coil_images: np.ndarray, csm: np.ndarray) -> np.ndarray:
    """Combine ``(mb, ncoils, ny, nx)`` with the true maps (``sum |S|^2 = 1``)."""
    return np.sum(np.conj(csm) * coil_images, axis=1)


def _errors(d: SmsData, coil_images: np.ndarray) -> np.ndarray:
    comb = _combine(coil_images, d.csm)
    return np.array([nrmse(comb[s], d.images[s], np.abs(d.images[s]) > 0) for s in range(d.mb)])


def _noise_floor(d: SmsData) -> float:
    """Mean NRMSE of fully sampled single-band images with the simulation's noise."""
    rng = np.random.default_rng(99)
    noisy = d.slice_kspace + np.stack(
        [correlated_noise(d.noise_cov, SHAPE, rng) for _ in range(d.mb)]
    )
    return float(_errors(d, ifftc(noisy, axes=(-2, -1))).mean())


def _recon(d: SmsData, split: bool = True) -> np.ndarray:
    return sms_grappa(d.kspace, d.sbr, shift=d.shift, ry=d.ry, split=split)


def test_caipi_phase_is_a_shift_of_the_reduced_fov():
    # P_s(ky) = exp(-2 pi i s ky / (R shift)) moves slice s by s ny / (R shift) pixels along y.
    d = _data(3, 1)
    worst = 0.0
    for ry in (1, 2):
        phase = caipi_phase(SHAPE[0], 3, 3, ry)
        for s in range(3):
            moved = ifftc(phase[s][None, :, None] * d.slice_kspace[s], axes=(-2, -1))
            rolled = np.roll(ifftc(d.slice_kspace[s], axes=(-2, -1)), s * 96 // (3 * ry), axis=1)
            worst = max(worst, np.abs(moved - rolled).max() / np.abs(rolled).max())
    assert worst < 1e-5


def test_simulated_noise_has_the_array_covariance_and_lattice():
    d = _data(3, 2)
    noise = d.kspace - collapse(d.slice_kspace, d.phase, d.mask)
    acquired = noise[:, d.mask].reshape(NCOILS, -1)
    cov = acquired @ acquired.conj().T / acquired.shape[1]
    norm = np.linalg.norm(d.noise_cov)
    rel = np.linalg.norm(cov - d.noise_cov) / norm
    # Sampling error of n samples: E||cov - Psi||_F^2 = tr(Psi)^2 / n (complex Gaussian).
    expected = np.trace(d.noise_cov).real / np.sqrt(acquired.shape[1]) / norm
    off_lattice = int(np.count_nonzero(d.kspace[:, ~d.mask]))
    assert rel < 1.5 * expected and off_lattice == 0, (rel, expected, off_lattice)


@pytest.mark.parametrize(("mb", "factor"), [(2, 1.4), (3, 1.7), (4, 2.5)])
def test_split_slice_grappa_separates_slices(mb, factor):
    d = _data(mb, 1)
    errors = _errors(d, _recon(d))
    floor = _noise_floor(d)
    # No CAIPI shift: separation relies on the coil profile along z only.
    flat = _data(mb, 1, 0)
    errors_flat = _errors(flat, _recon(flat))
    # Measured (floor 0.018): MB2 0.021 (1.15 floor) vs 0.046 without shift; MB3 0.026
    # (1.44 floor) vs 0.15-0.29; MB4 0.038 (2.1 floor) vs 0.15-0.32.
    assert errors.max() < factor * floor, (errors, floor)
    assert errors.max() < 0.7 * errors_flat.min(), (errors, errors_flat)


def _leakage(d: SmsData, split: bool) -> float:
    """Mean over ordered pairs of ||sep_B(all) - sep_B(slice A zeroed)|| / ||K_B||, noise-free."""
    kern = calibrate(d.sbr, shift=d.shift, ry=d.ry, split=split)
    full = separate(kern, collapse(d.slice_kspace, d.phase, d.mask))
    truth = d.slice_kspace * d.mask[None, :, None]
    leaks = []
    for a in range(d.mb):
        zeroed = d.slice_kspace.copy()
        zeroed[a] = 0
        without_a = separate(kern, collapse(zeroed, d.phase, d.mask))
        for b in range(d.mb):
            if b != a:
                leaks.append(np.linalg.norm(full[b] - without_a[b]) / np.linalg.norm(truth[b]))
    return float(np.mean(leaks))


@pytest.mark.parametrize(("mb", "ry"), [(3, 1), (2, 2)])
def test_split_slice_leaks_less_than_slice_grappa(mb, ry):
    d = _data(mb, ry)
    split, plain = _leakage(d, True), _leakage(d, False)
    # Measured: MB3 R1 0.011 vs 0.032; MB2 R2 0.017 vs 0.074.
    assert split < 0.5 * plain and split < 0.03, (split, plain)


@pytest.mark.parametrize(("mb", "factor"), [(2, 3.0), (3, 5.0)])
def test_sms_with_inplane_grappa(mb, factor):
    d = _data(mb, 2)
    errors = _errors(d, _recon(d))
    floor = _noise_floor(d)
    flat = _data(mb, 2, 0)
    errors_flat = _errors(flat, _recon(flat))
    # Total acceleration 4 and 6: measured MB2 0.041 (2.3 floor) vs 0.064 without shift,
    # MB3 up to 0.075 (4.1 floor) vs 0.33.
    assert errors.max() < factor * floor, (errors, floor)
    assert errors.max() < 0.8 * errors_flat.min(), (errors, errors_flat)


def test_bad_input_is_rejected():
    d = _data(2, 2)
    with pytest.raises(InputError, match="smaller than the kernel"):
        calibrate(d.sbr, shift=d.shift, ry=2, acs=slice(40, 46))
    with pytest.raises(InputError, match="does not match the collapsed"):
        sms_grappa(d.kspace[:8], d.sbr, shift=d.shift, ry=2)
