"""`recon run` on a simulated EPI fMRI series: detection, ghost correction, GRAPPA calibrated
once per slice, 4D NIfTI with the TR, temporal SNR map.

Data: ``recon.sim.epi.simulate_epi``: 64^2, 2 slices, 8 coils, 10 repetitions (TR 2 s, block
design), R = 2 with a separate 24-line EPI calibration scan before the first repetition, ramp
sampling (93 samples on a 100/300/100 us trapezoid), odd/even phase ``phi0 + phi1 x`` of about
0.8 rad + 0.05 rad/pixel, three navigators per slice and repetition, noise 0.002.

Ghost energy and NRMSE as in tests/test_epi.py: mean |image|^2 in the object mask (dilated by 3
pixels) shifted by N/2 along y outside the dilated object over the mean |image|^2 in the object;
NRMSE inside the object against the phantom magnitude (frame 0 is a rest frame).
Measured: ghost 0.243 without correction, 0.104 with a constant-only navigator fit, 3.0e-5 with
the linear fit (default); NRMSE 0.0032 (0.225 uncorrected); median tSNR in the object 346;
signal change in the true active region 3.03 % (truth 3 %, 194 pixels).

Also here: ``noncartesian.field_map`` (off-resonance-corrected spiral CG-SENSE in the pipeline),
on a 64^2 spiral of 4 interleaves (806 samples at 5 us, a 4 ms readout, TE 2 ms), 8 coils, the
simulator's B0 map with ``field_spread_hz`` 80 (-356..+144 Hz), default config (low-resolution
coil maps from the data). Measured scaled NRMSE: 0.268 plain, 0.096 with the true field map,
0.225 with the map transposed; 0.057 for the same scan simulated without off-resonance.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from recon.cartesian.epi import sort_epi
from recon.errors import ConfigError, InputError
from recon.io.export import export_nifti
from recon.io.flags import PHASE_CORRECTION, has_flag
from recon.io.ismrmrd import read_dataset
from recon.metrics import nrmse, scaled_nrmse
from recon.pipeline import plan_run, reconstruct, run_file
from recon.pipeline.runner import acquisition_type, temporal_snr
from recon.pipeline.stages import PipelineWarning
from recon.sim import SimSpec, simulate
from recon.sim.epi import EpiSpec, simulate_epi

SPEC = EpiSpec(slices=2, accel=2, repetitions=10, tr_ms=2000.0)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("epi")
    return simulate_epi(folder / "bold.h5", SPEC)


def _ghost_and_error(image, truth):
    """Ghost-to-object energy ratio and NRMSE in the object (see tests/test_epi.py)."""
    reference = np.abs(truth.image)
    obj = reference > 0.05 * reference.max()
    dilated = np.stack([ndimage.binary_dilation(o, iterations=3) for o in obj])
    ghost = np.roll(dilated, reference.shape[-2] // 2, axis=-2) & ~dilated
    ratio = float((image[ghost] ** 2).mean() / (image[obj] ** 2).mean())
    return ratio, nrmse(image, reference, obj)


def _frames(path, overrides):
    raw = read_dataset(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PipelineWarning)  # no noise readouts
        plan = plan_run(raw, overrides=overrides, device="cpu")
        return plan, reconstruct(plan, measure_memory=False)


def test_run_file_epi_series(series, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PipelineWarning)
        result = run_file(
            series.path,
            tmp_path / "out",
            overrides=["output.tsnr_map=true"],
            device="cpu",
            formats=["nifti"],
            measure_memory=False,
        )
    assert result.acquisition == "epi_accelerated"
    assert result.chain == ["prewhiten", "grappa", "fft", "combine"]
    # GRAPPA calibrated once per slice for the 10 frames; no noise readouts -> no whitening
    assert result.calibrations == {"grappa": SPEC.slices}
    assert result.units == SPEC.slices * SPEC.repetitions

    img = nib.load(tmp_path / "out" / "bold.nii.gz")
    data = np.asarray(img.dataobj).T  # (t, z, y, x)
    sidecar = json.loads((tmp_path / "out" / "bold.json").read_text())
    assert data.shape == (10, SPEC.slices, SPEC.matrix, SPEC.matrix)
    voxel = SPEC.fov_mm / SPEC.matrix
    zooms = img.header.get_zooms()
    assert np.allclose(zooms, (voxel, voxel, SPEC.slice_thickness_mm, 2.0), rtol=1e-6)
    assert sidecar["RepetitionTime"] == 2.0
    expected = sort_epi(read_dataset(series.path), correct=False).geometry.nifti_affine()
    assert np.abs(img.affine - expected).max() <= 1e-4
    centre = img.affine @ [SPEC.matrix // 2, SPEC.matrix // 2, 1, 1]
    assert abs(centre[2]) <= 1e-4  # slice 1 of 2 sits at z = 0 mm

    ghost, error = _ghost_and_error(data[0], series)
    assert ghost <= 5e-4  # measured 3.0e-5
    assert error <= 0.01  # measured 0.0032
    roi = series.activation > 0
    course = data[:, roi].mean(axis=1)
    change = course[series.timecourse == 1].mean() / course[series.timecourse == 0].mean() - 1
    assert roi.sum() >= 100  # measured 194
    assert abs(change - 0.03) <= 0.003  # measured 0.0303

    tsnr_img = nib.load(tmp_path / "out" / "bold_tsnr.nii.gz")
    tsnr = np.asarray(tsnr_img.dataobj).T
    reference = np.abs(series.image)
    obj = reference > 0.2 * reference.max()
    assert tsnr.shape == (SPEC.slices, SPEC.matrix, SPEC.matrix)
    assert np.abs(tsnr_img.affine - img.affine).max() <= 1e-6
    assert np.abs(tsnr - temporal_snr(data)).max() <= 1e-4 * tsnr.max()
    assert np.median(tsnr[obj]) >= 150  # measured 346


def test_ghost_correction_and_navigator_fit_matter(series):
    _, corrected = _frames(series.path, [])
    _, constant = _frames(series.path, ["epi.navigator_fit=constant"])
    _, uncorrected = _frames(series.path, ["epi.ghost_correction=false"])
    ghost, error = _ghost_and_error(corrected.images[0], series)
    ghost_constant, _ = _ghost_and_error(constant.images[0], series)
    ghost_raw, error_raw = _ghost_and_error(uncorrected.images[0], series)
    assert uncorrected.calibrations == {"grappa": SPEC.slices}
    assert ghost_raw >= 0.1  # measured 0.243
    assert ghost <= ghost_raw / 500  # measured 3.0e-5
    assert ghost * 100 <= ghost_constant <= ghost_raw / 1.5  # slope left: measured 0.104
    assert error_raw >= 0.15 and error <= 0.01  # measured 0.225, 0.0032


def test_epi_without_navigators_fails_before_work(series):
    raw = read_dataset(series.path)
    raw.usable = raw.usable & ~has_flag(raw.head.flags, PHASE_CORRECTION)
    with pytest.raises(InputError, match=r"epi\.ghost_correction=false"):
        plan_run(raw, device="cpu")
    plan = plan_run(raw, overrides=["epi.ghost_correction=false"], device="cpu")
    assert plan.acquisition == "epi_accelerated"  # detected from the header trajectory


def test_epi_detected_from_navigators_and_bipolar_readouts(series):
    raw = read_dataset(series.path)
    # a converter that does not name the trajectory "epi"
    raw.header.encodings[0] = dataclasses.replace(raw.header.encoding, trajectory="cartesian")
    assert acquisition_type(raw) == "epi_accelerated"
    raw.usable = raw.usable & ~has_flag(raw.head.flags, PHASE_CORRECTION)
    assert acquisition_type(raw) == "cartesian_2d_accelerated"  # no navigators: not EPI


def test_unaccelerated_oversampled_epi(tmp_path):
    """R = 1 with 2x readout oversampling (185 ramp samples): the `epi` chain, no GRAPPA."""
    spec = EpiSpec(slices=1, repetitions=3, oversampling=True, ramp_dwell_us=2.5)
    truth = simulate_epi(tmp_path / "epi.h5", spec)
    plan, recon = _frames(truth.path, [])
    ghost, error = _ghost_and_error(recon.images[0], truth)
    assert plan.acquisition == "epi" and plan.chain == ["prewhiten", "fft", "combine"]
    assert recon.calibrations == {}
    assert recon.images.shape == (3, 1, spec.matrix, spec.matrix)  # oversampling removed
    assert ghost <= 5e-4  # measured 5.0e-5 (0.128 without ghost correction)
    assert error <= 0.01  # measured 0.0019 (0.098 without)


def test_spiral_field_map_correction(tmp_path):
    spec = SimSpec(trajectory="spiral", matrix=64, ncoils=8, spokes=4, field_map=True,
                   field_spread_hz=80.0, noise_std=0.002, noise_readouts=0, te_ms=2.0)  # fmt: skip
    truth = simulate(tmp_path / "spiral.h5", spec)
    reference = np.abs(truth.image[0])
    inside = reference > 0.05 * reference.max()
    _, plain = _frames(truth.path, [])
    field = export_nifti(tmp_path / "b0", truth.field_map, plain.geometry)
    swapped = export_nifti(tmp_path / "b0_swapped", np.swapaxes(truth.field_map, 1, 2),
                           plain.geometry)  # fmt: skip
    _, corrected = _frames(truth.path, [f"noncartesian.field_map={field}"])
    _, wrong = _frames(truth.path, [f"noncartesian.field_map={swapped}"])
    error_plain = scaled_nrmse(plain.images[0, 0], reference, inside)
    error = scaled_nrmse(corrected.images[0, 0], reference, inside)
    error_wrong = scaled_nrmse(wrong.images[0, 0], reference, inside)
    assert corrected.calibrations == {"dcf": 1, "maps": 1, "offresonance": 1}
    assert error_plain >= 0.2  # measured 0.268
    assert error <= 0.13  # measured 0.096
    assert error_wrong >= 0.18  # measured 0.225: the map's orientation matters
    with pytest.raises(ConfigError, match="does not exist"):
        plan_run(read_dataset(truth.path), overrides=["noncartesian.field_map=nope.nii.gz"])
    two_planes = export_nifti(tmp_path / "b0_2", np.concatenate([truth.field_map] * 2),
                              plain.geometry.with_shape((2, 64, 64)))  # fmt: skip
    with pytest.raises(InputError, match="2 planes for 1 slices"):
        _frames(truth.path, [f"noncartesian.field_map={two_planes}"])
