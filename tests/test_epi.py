"""EPI: simulated ISMRMRD files with Nyquist ghosts, ramp-sampling regridding, navigator-based
ghost correction and GRAPPA.

Data: ``recon.sim.epi.simulate_epi``: 64^2, 2 slices, 8 coils, noise 0.002, odd/even phase
difference ``phi0 + phi1 x`` of about 0.8 rad + 0.05 rad/pixel (drawn per slice), three
navigators per slice; ramp sampling on a 100/300/100 us trapezoid, 93 samples at 5 us
(header ``trajectoryDescription`` as Siemens writes it).

Ghost energy: mean |image|^2 in the object mask (dilated by 3 pixels) shifted by N/2 along y,
outside the dilated object, over the mean |image|^2 in the object. Reference: the phantom
magnitude (the RSS of the true coil images, sum |S|^2 = 1), NRMSE inside the object.
Measured (see the asserts): ramp-sampled R = 1 ghost 0.18 -> 5.0e-5, NRMSE 0.133 -> 0.0019;
R = 2 GRAPPA with a separate 24-line EPI calibration (2x readout oversampling, 185 ramp
samples at 2.5 us): ghost 0.25 -> 3.0e-5, NRMSE 0.253 -> 0.0032; navigator fits within
2e-4 rad (constant) and 5e-5 rad/pixel (slope) of the truth.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from recon.backend import fftc, ifftc
from recon.cartesian.epi import (
    fit_ghost_phase,
    header_kx,
    reconstruct_epi,
    regrid_matrix,
    sort_epi,
    trapezoid_kx,
)
from recon.errors import ConfigError, InputError
from recon.io.flags import PHASE_CORRECTION, REVERSE, has_flag
from recon.io.ismrmrd import read_dataset
from recon.metrics import nrmse
from recon.sim.epi import EpiSpec, simulate_epi


def _scan(tmp_path, **options):
    spec = EpiSpec(**options)
    truth = simulate_epi(tmp_path / "epi.h5", spec)
    return spec, truth, read_dataset(truth.path)


def _ghost_and_error(image, truth):
    reference = np.abs(truth.image)
    obj = reference > 0.05 * reference.max()
    dilated = np.stack([ndimage.binary_dilation(o, iterations=3) for o in obj])
    ghost = np.roll(dilated, reference.shape[-2] // 2, axis=-2) & ~dilated
    ratio = float((image[ghost] ** 2).mean() / (image[obj] ** 2).mean())
    return ratio, nrmse(image, reference, obj)


def test_trapezoid_positions_and_regridding(rng):
    nx = 64
    uniform = trapezoid_kx(0.0, 320.0, 0.0, 0.0, nx, 5.0, nx)
    ramp = trapezoid_kx(100.0, 300.0, 100.0, 20.0, 93, 5.0, nx)
    profile = rng.standard_normal(nx) + 1j * rng.standard_normal(nx)
    x = np.arange(nx) - nx // 2
    exact = fftc(profile)
    errors = []
    for kx in (ramp, -ramp[::-1]):  # forward, and reversed once flipped
        samples = np.exp(-2j * np.pi * np.outer(kx, x) / nx) @ profile / np.sqrt(nx)
        errors.append(nrmse(regrid_matrix(kx, nx) @ samples, exact))
    assert np.abs(uniform - (np.arange(nx) - nx / 2)).max() <= 1e-9
    assert ramp[0] == -nx / 2 and abs(ramp[-1] - (nx / 2 - 1)) <= 1e-9
    assert 0.5 <= np.diff(ramp).max() <= 0.8  # measured 0.795 on the flat top
    # with readout-oversampling removal: uniform samples of a 2N readout -> central N
    lines = rng.standard_normal((4, 2 * nx)) + 1j * rng.standard_normal((4, 2 * nx))
    cropped = fftc(ifftc(lines, axes=(-1,))[:, nx // 2 : nx // 2 + nx], axes=(-1,))
    crop_error = nrmse(lines @ regrid_matrix(np.arange(2 * nx) - nx, 2 * nx, nx).T, cropped)
    assert max(errors) <= 1e-5  # measured 2.1e-8, 2.2e-8
    assert crop_error <= 1e-5  # measured 1.5e-8


def test_bad_trapezoid_is_an_input_error():
    with pytest.raises(InputError, match="lacks"):
        header_kx({"rampUpTime": 100}, 64, 5.0)
    with pytest.raises(InputError, match="do not fit"):
        trapezoid_kx(100.0, 300.0, 100.0, 20.0, 200, 5.0, 64)


def test_file_has_siemens_epi_header_and_flags(tmp_path):
    spec, truth, raw = _scan(tmp_path)
    desc = raw.header.encoding.trajectory_description
    reverse = has_flag(raw.head.flags, REVERSE)
    phasecorr = has_flag(raw.head.flags, PHASE_CORRECTION)
    assert desc["identifier"] == "ConventionalEPI"
    assert (desc["rampUpTime"], desc["flatTopTime"], desc["numSamples"]) == (100, 300, 93)
    assert raw.header.encoding.trajectory == "epi"
    assert int(phasecorr.sum()) == 3 * spec.slices == truth.counts["navigators"]
    assert int(reverse.sum()) == spec.slices * (1 + spec.matrix // 2)  # 1 navigator + lines


SAMPLING = {
    "ramp": {},
    "uniform": {"ramp_sampling": False},
    "ramp-oversampled": {"oversampling": True, "ramp_dwell_us": 2.5},  # 185 samples
}


@pytest.mark.parametrize("sampling", list(SAMPLING))
def test_ghost_correction_fully_sampled(tmp_path, sampling):
    _, truth, raw = _scan(tmp_path, **SAMPLING[sampling])
    ghost_raw, err_raw = _ghost_and_error(reconstruct_epi(sort_epi(raw, correct=False)), truth)
    corrected = sort_epi(raw)
    ghost, err = _ghost_and_error(reconstruct_epi(corrected), truth)
    phi0 = np.array([p.phi0 for p in corrected.phases])
    phi1 = np.array([p.phi1 for p in corrected.phases])
    centres = corrected.geometry.nifti_affine() @ [0, 0, 1, 1]  # voxel (x, y, z) = (0, 0, 1)
    assert corrected.kspace.shape == (2, 8, 64, 64)  # oversampling removed
    assert corrected.geometry.shape == (2, 64, 64) and corrected.geometry.voxel_size_mm[0] == 3
    assert abs(centres[2] - 0.0) <= 1e-6  # slice 1 of 2 sits at the centre (z = 0 mm)
    # measured (ramp, uniform, ramp-oversampled): phi0 error 1.6e-4, 7.7e-5, 5.7e-5; phi1 4.2e-5,
    # 6.6e-6, 3.6e-5; ghost 0.18 -> 5.0e-5, 6.9e-5, 5.0e-5; NRMSE 0.133 -> 0.0019, 0.0023, 0.0019
    assert np.abs(phi0 - truth.phi0).max() <= 1e-3
    assert np.abs(phi1 - truth.phi1).max() <= 2e-4
    assert ghost_raw >= 0.1
    assert ghost <= 5e-4 and ghost <= ghost_raw / 500
    assert err_raw >= 0.1
    assert err <= 0.005


def test_ghost_correction_then_grappa(tmp_path):
    """R = 2, ramp sampling with 2x readout oversampling (Siemens-like)."""
    _, truth, raw = _scan(tmp_path, accel=2, oversampling=True, ramp_dwell_us=2.5)
    ghost_raw, err_raw = _ghost_and_error(reconstruct_epi(sort_epi(raw, correct=False)), truth)
    epi = sort_epi(raw)
    ghost, err = _ghost_and_error(reconstruct_epi(epi), truth)
    full_readout = sort_epi(raw, correct=False, remove_oversampling=False)
    assert full_readout.kspace.shape[-1] == 128 and epi.kspace.shape[-1] == 64
    assert full_readout.geometry.voxel_size_mm == epi.geometry.voxel_size_mm
    assert epi.acceleration == 2 and epi.calib.shape[-2] == 24
    assert ghost_raw >= 0.1  # measured 0.249
    assert ghost <= 5e-4 and ghost <= ghost_raw / 500  # measured 3.0e-5
    assert err_raw >= 0.15  # measured 0.253
    assert err <= 0.01  # measured 0.0032


def test_missing_navigators_is_an_input_error(tmp_path):
    _, truth, raw = _scan(tmp_path, slices=1)
    keep = ~has_flag(raw.head.flags, PHASE_CORRECTION)
    raw.usable = raw.usable & keep
    with pytest.raises(InputError, match="polarities"):
        sort_epi(raw)
    assert truth.counts["navigators"] == 3


def test_three_navigators_cancel_a_phase_drift(rng):
    """Off-resonance adds ``e * drift`` to echo ``e``: averaging the forward navigators 1 and 3
    cancels it, a fit from navigators 1 and 2 alone is biased by ``drift``."""
    nx, drift, phi0, phi1 = 64, 0.3, 0.7, 0.04
    x = np.arange(nx) - nx // 2
    profile = np.exp(-((x / 18.0) ** 4)) * (1 + 0.3 * rng.standard_normal((4, nx)))
    reverse = np.array([False, True, False])
    d = phi0 + phi1 * x
    navs = np.stack([
        fftc(profile * np.exp(1j * (np.where(r, 0.5, -0.5) * d + e * drift)), axes=(-1,))
        for e, r in enumerate(reverse)
    ])  # fmt: skip
    three = fit_ghost_phase(navs, reverse)
    two = fit_ghost_phase(navs[:2], reverse[:2])
    assert abs(three.phi0 - phi0) <= 1e-5 and abs(three.phi1 - phi1) <= 1e-6
    assert abs(two.phi0 - phi0 - drift) <= 1e-5  # the two-navigator fit is off by the drift


def test_too_long_ramp_dwell_is_a_config_error():
    with pytest.raises(ConfigError, match="leaves gaps"):
        EpiSpec(ramp_dwell_us=8.0).validate()
    assert EpiSpec().samples == 93
