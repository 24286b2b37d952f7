"""The pipeline on simulated 7 T ISMRMRD files (tests/pipeline_sim.py): it picks the chain from
the header, reconstructs unit by unit, and the images match the simulator's ground truth.

Reference: the RSS of the prewhitened noiseless coil images, ``|x| sqrt(S^H Psi^-1 S)`` (for
SENSE-type output the same weighting, since the maps are normalised in the whitened space),
compared with the scale-free NRMSE inside the object. Measured values are in each test; a
wrong lattice, a missing prewhitening, a broken GRAPPA or a transposed trajectory gives
errors of 0.1-0.7.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pipeline_sim import radial_coords, spiral_coords, write_cartesian, write_noncartesian

from recon.backend import ifftc, rss
from recon.errors import ConfigError
from recon.io.ismrmrd import read_dataset
from recon.io.sort import sort_cartesian
from recon.metrics import scaled_nrmse
from recon.pipeline import plan_run, reconstruct


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run(path, **options):
    plan = plan_run(read_dataset(path), **options)
    return plan, reconstruct(plan, measure_memory=False)


def zero_filled(path) -> np.ndarray:
    """RSS of the zero-filled imaging lines (no calibration lines), ``(*batch, nz, ny, nx)``."""
    data = sort_cartesian(read_dataset(path), with_noise=False)
    k = data.kspace * data.mask[..., None, :, :, None]
    return rss(ifftc(k, axes=(-3, -2, -1)), axis=-4)


def test_multislice_grappa_2d(tmp_path):
    truth = write_cartesian(
        tmp_path / "ms.h5", shape=(1, 64, 64), ncoils=16, slices=3, accel=(3, 1)
    )
    plan, recon = run(truth.path)
    assert plan.acquisition == "cartesian_2d_accelerated"
    assert plan.chain == ["prewhiten", "grappa", "partial_fourier", "fft", "combine"]
    assert recon.images.shape == (1, 3, 64, 64)
    assert recon.calibrations == {"noise": 1, "grappa": 3}  # once per slice
    reference = truth.whitened_reference(0)
    inside = np.abs(truth.images[0]) > 1e-3
    error = scaled_nrmse(recon.images[0], reference, inside)
    baseline = scaled_nrmse(zero_filled(truth.path).reshape(3, 64, 64), reference, inside)
    # measured: GRAPPA 0.010, zero-filled R=3 lattice 0.23
    assert error < 0.025
    assert baseline > 0.15
    # slices stacked in order along slice_dir with their spacing
    assert recon.geometry.shape == (3, 64, 64)
    for s, position in enumerate(truth.positions):
        assert np.allclose(recon.geometry.slice_position(s), position, atol=1e-3)


def test_caipirinha_3d(tmp_path):
    truth = write_cartesian(
        tmp_path / "caipi.h5", shape=(16, 32, 32), ncoils=12, accel=(2, 2), shift=1, acs=(12, 16)
    )
    plan, recon = run(truth.path)
    assert plan.acquisition == "cartesian_3d_accelerated"
    assert recon.images.shape == (1, 16, 32, 32)
    reference = truth.whitened_reference(0)[0]
    inside = np.abs(truth.images[0, 0]) > 1e-3
    error = scaled_nrmse(recon.images[0], reference, inside)
    baseline = scaled_nrmse(zero_filled(truth.path).reshape(16, 32, 32), reference, inside)
    # measured: 0.058 (16 x 32 x 32, 12 coils, R = 2 x 2), zero-filled CAIPI lattice 0.36
    assert error < 0.08
    assert baseline > 0.25
    assert np.allclose(recon.geometry.position, truth.positions[0], atol=1e-3)


@pytest.mark.parametrize(
    ("name", "coords"),
    [("radial", radial_coords(48, 128, 64)), ("spiral", spiral_coords(8, 1200, 64))],
)
def test_noncartesian_cg_sense(tmp_path, name, coords):
    truth = write_noncartesian(tmp_path / f"{name}.h5", coords, n=64, ncoils=12, trajectory=name)
    plan, recon = run(truth.path)
    assert plan.acquisition == "noncartesian"
    assert recon.calibrations == {"noise": 1, "dcf": 1, "maps": 1, "toeplitz": 1}
    image = recon.images[0, 0]
    reference = truth.whitened_reference(0)[0]
    inside = np.abs(truth.images[0, 0]) > 1e-3
    error = scaled_nrmse(image, reference, inside)
    # measured: radial 0.046, spiral 0.047; the transposed image (axis order) 0.46
    assert error < 0.07
    assert scaled_nrmse(image.T, reference, inside) > 0.3


def test_fmri_series_calibrates_once(tmp_path):
    truth = write_cartesian(
        tmp_path / "fmri.h5",
        shape=(1, 64, 64),
        ncoils=32,
        repetitions=40,
        accel=(3, 1),
        vendor="Siemens",
        model="MAGNETOM Terra",
    )
    plan, recon = run(truth.path)
    assert plan.config.name == "siemens_terra_nova32"  # Siemens, Terra, 7 T, 32 channels
    assert plan.nunits == 40
    assert recon.calibrations == {"noise": 1, "compress": 1, "grappa": 1}
    assert recon.timings["grappa"].calls == 40
    errors = [
        scaled_nrmse(
            recon.images[r, 0], truth.whitened_reference(r)[0], np.abs(truth.images[r, 0]) > 1e-3
        )
        for r in (0, 13, 39)
    ]
    # measured 0.009-0.011 for every repetition (32 -> 16 virtual coils) (calibration lines only in repetition 0)
    assert max(errors) < 0.02


def test_grappa_without_calibration_is_refused_before_work(tmp_path):
    truth = write_cartesian(
        tmp_path / "nocal.h5", shape=(1, 48, 48), ncoils=8, accel=(2, 1), acs=(1, 0)
    )
    with pytest.raises(ConfigError, match=r"GRAPPA chosen .* no calibration data"):
        plan_run(read_dataset(truth.path))
    # a SENSE chain needs coil maps from calibration lines too
    with pytest.raises(ConfigError, match=r"coil maps .* need calibration lines"):
        plan_run(
            read_dataset(truth.path),
            overrides=['chain.cartesian_2d_accelerated=["prewhiten", "sensmaps", "sense"]'],
        )
