"""The pipeline on simulated 7 T ISMRMRD files (recon.sim, and tests/pipeline_sim.py where a
vendor header is needed): it picks the chain from the header, reconstructs unit by unit, and
the images match the simulator's ground truth.

Reference: the RSS of the prewhitened noiseless coil images, ``|x| sqrt(S^H Psi^-1 S)`` (for
SENSE-type output the same weighting, since the maps are normalised in the whitened space),
compared with the scale-free NRMSE inside the object. Measured values are in each test; the
zero-filled lattice gives 0.23-0.36, a chain without prewhitening 0.050 (2D GRAPPA case,
0.009 with it) and a transposed image 0.46.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pipeline_sim import radial_coords, write_cartesian, write_noncartesian

from recon.backend import ifftc, rss
from recon.errors import ConfigError
from recon.io.ismrmrd import read_dataset
from recon.io.sort import sort_cartesian
from recon.metrics import scaled_nrmse
from recon.pipeline import new_context, plan_run, reconstruct, run_file
from recon.sim import SimSpec, simulate


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
    data = sort_cartesian(read_dataset(path), with_noise=False, remove_oversampling=True)
    k = data.kspace * data.mask[..., None, :, :, None]
    return rss(ifftc(k, axes=(-3, -2, -1)), axis=-4)


def sim_reference(truth) -> np.ndarray:
    """``|x| sqrt(S^H Psi^-1 S)`` from recon.sim's ground truth, ``(nz, ny, nx)``."""
    w = np.linalg.inv(np.linalg.cholesky(truth.noise_covariance))
    return np.abs(truth.image) * rss(np.tensordot(w, truth.coil_maps, axes=(1, 0)), axis=0)


def sim_inside(truth) -> np.ndarray:
    return np.abs(truth.image) > 0.05 * np.abs(truth.image).max()


def test_multislice_grappa_2d_oblique_partial_fourier(tmp_path):
    import nibabel as nib

    spec = SimSpec(
        matrix=64,
        slices=3,
        ncoils=16,
        accel=3,
        partial_fourier=0.75,
        oblique_deg=(10, 0, 15),
        noise_std=0.003,
    )
    truth = simulate(tmp_path / "ms.h5", spec)
    result = run_file(truth.path, tmp_path / "out", formats=["nifti"], measure_memory=False)
    assert result.config == "default"
    assert result.acquisition == "cartesian_2d_accelerated"
    assert result.chain == ["prewhiten", "grappa", "partial_fourier", "fft", "combine"]
    assert result.calibrations == {"noise": 1, "grappa": 3}  # once per slice
    nifti = nib.load(tmp_path / "out" / "ms.nii.gz")
    images = np.asarray(nifti.dataobj).T  # (nz, ny, nx): readout oversampling removed
    assert images.shape == (3, 64, 64)
    reference, inside = sim_reference(truth), sim_inside(truth)
    error = scaled_nrmse(images, reference, inside)
    baseline = scaled_nrmse(
        np.asarray(zero_filled(truth.path)).reshape(3, 64, 64), reference, inside
    )
    # measured: GRAPPA + POCS 0.021, zero-filled R=3 lattice 0.26, transposed 0.53
    assert error < 0.035
    assert baseline > 0.2
    assert scaled_nrmse(np.swapaxes(images, 1, 2), reference, inside) > 0.3
    # oblique slices stacked in order: voxel (32, 32, k) sits at slice k's centre (RAS)
    raw = read_dataset(truth.path)
    rows = raw.select(7)
    for k in range(3):
        position = raw.head.position[rows[raw.head.slice[rows] == k][0]].astype(float)
        ras = nifti.affine @ np.array([32, 32, k, 1.0])
        assert np.allclose(ras[:3], position * [-1, -1, 1], atol=1e-3)
    spacing = np.linalg.norm(nifti.affine[:3, :3], axis=0)
    assert np.allclose(spacing, [220 / 64, 220 / 64, 3.0], rtol=1e-4)


def test_multislice_prewhitening_matters(tmp_path):
    truth = write_cartesian(
        tmp_path / "ms.h5", shape=(1, 64, 64), ncoils=16, slices=3, accel=(3, 1)
    )
    reference = truth.whitened_reference(0)
    inside = np.abs(truth.images[0]) > 1e-3
    _, recon = run(truth.path)
    without = "chain.cartesian_2d_accelerated=grappa,partial_fourier,fft,combine"
    _, unwhitened = run(truth.path, overrides=[without])
    # measured: 0.009 with prewhitening, 0.050 without (correlated noise, ~10 %)
    assert scaled_nrmse(recon.images[0], reference, inside) < 0.02
    assert scaled_nrmse(unwhitened.images[0], reference, inside) > 0.035
    assert np.allclose(recon.geometry.slice_position(1), truth.positions[1], atol=1e-3)


def test_caipirinha_3d(tmp_path):
    spec = SimSpec(
        matrix=32,
        slices=16,
        three_d=True,
        ncoils=16,
        accel=2,
        accel_z=2,
        caipi_shift=1,
        calib=16,
        calib_z=12,
        noise_std=0.003,
    )
    truth = simulate(tmp_path / "caipi.h5", spec)
    plan, recon = run(truth.path)
    assert plan.acquisition == "cartesian_3d_accelerated"
    assert recon.images.shape == (1, 16, 32, 32)
    reference, inside = sim_reference(truth), sim_inside(truth)
    error = scaled_nrmse(recon.images[0], reference, inside)
    baseline = scaled_nrmse(
        np.asarray(zero_filled(truth.path)).reshape(16, 32, 32), reference, inside
    )
    # measured: 0.087 (R = 2 x 2 on a 32 x 32 x 16 grid, 16 x 12 calibration lines; 0.062
    # without noise), zero-filled CAIPI lattice 0.29
    assert error < 0.12
    assert baseline > 0.2


@pytest.mark.parametrize("trajectory", ["golden-radial", "spiral"])
def test_noncartesian_cg_sense(tmp_path, trajectory):
    spec = SimSpec(
        matrix=64,
        ncoils=16,
        trajectory=trajectory,
        spokes=64 if "radial" in trajectory else None,
        noise_std=0.003,
    )
    truth = simulate(tmp_path / "nc.h5", spec)
    plan, recon = run(truth.path)
    assert plan.acquisition == "noncartesian"
    assert recon.calibrations == {"noise": 1, "dcf": 1, "maps": 1, "toeplitz": 1}
    image = recon.images[0]
    reference, inside = sim_reference(truth), sim_inside(truth)
    # measured: radial (64 spokes) 0.052, spiral (16 interleaves) 0.073; transposed 0.55
    assert scaled_nrmse(image, reference, inside) < 0.1
    assert scaled_nrmse(np.swapaxes(image, 1, 2), reference, inside) > 0.3


def test_fmri_series_calibrates_once(tmp_path):
    spec = SimSpec(matrix=48, ncoils=32, accel=3, repetitions=40, noise_std=0.003)
    truth = simulate(tmp_path / "fmri.h5", spec)
    plan, recon = run(truth.path)
    assert plan.nunits == 40
    assert recon.images.shape == (40, 1, 48, 48)
    assert recon.calibrations == {"noise": 1, "grappa": 1}  # calibration lines in every rep
    assert recon.timings["grappa"].calls == 40
    weight = sim_reference(truth) / np.maximum(np.abs(truth.image), 1e-30)
    inside = sim_inside(truth)
    errors = [
        scaled_nrmse(
            recon.images[r],
            np.abs(truth.image * (1 + truth.activation * truth.timecourse[r])) * weight,
            inside,
        )
        for r in range(40)
    ]
    # measured 0.007 for every repetition
    assert max(errors) < 0.015
    # the 3 % block-design activation is recovered: measured correlation 0.9995
    active = truth.activation > 0.5 * truth.activation.max()
    signal = recon.images[:, 0][:, active[0]].mean(axis=1)
    assert np.corrcoef(signal, truth.timecourse)[0, 1] > 0.99


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


#: config -> (writer options, acquisition, measured NRMSE, threshold)
SEVEN_T_FILES = {
    "siemens_terra_nova32": (
        dict(vendor="Siemens", model="MAGNETOM Terra", coil="HeadNova32"),
        "cartesian_2d_accelerated",
        0.005,
        0.015,
    ),
    "siemens_terra_ptx8_32": (
        dict(
            vendor="Siemens",
            model="MAGNETOM Terra",
            coil="Nova_8Tx32Rx",
            shape=(12, 24, 24),
            accel=(2, 2),
            shift=1,
            acs=(12, 16),
        ),
        "cartesian_3d_accelerated",
        0.013,
        0.03,
    ),
    "philips_achieva7t_32": (
        dict(vendor="Philips", model="Achieva"),
        "cartesian_2d_accelerated",
        0.0034,
        0.01,
    ),
    # homodyne partial Fourier assumes a smooth phase: the phantom's phase costs 0.03
    "ge_signa7t_32": (
        dict(vendor="GE MEDICAL SYSTEMS", model="SIGNA 7.0T"),
        "cartesian_2d_accelerated",
        0.036,
        0.06,
    ),
}


@pytest.mark.parametrize("name", sorted(SEVEN_T_FILES))
def test_seven_tesla_configs_are_chosen_and_reconstruct(tmp_path, name):
    options, acquisition, _measured, threshold = SEVEN_T_FILES[name]
    options = {"shape": (1, 48, 48), "accel": (3, 1), **options}
    truth = write_cartesian(tmp_path / f"{name}.h5", ncoils=32, **options)
    plan, recon = run(truth.path)
    assert plan.config.name == name
    assert plan.acquisition == acquisition
    assert recon.calibrations["compress"] == 1
    if name == "philips_achieva7t_32":
        assert plan.chain == ["prewhiten", "compress", "sensmaps", "sense"]
        assert plan.config.get("sensitivity.method") == "espirit"
        assert recon.calibrations["maps"] == 1
    reference = truth.whitened_reference(0)[0]
    inside = np.abs(truth.images[0, 0]) > 1e-3
    error = scaled_nrmse(recon.images[0].reshape(reference.shape), reference, inside)
    assert error < threshold  # zero-filled: 0.2-0.4


def test_research_64_channel_config_on_radial_data(tmp_path):
    truth = write_noncartesian(
        tmp_path / "r64.h5",
        radial_coords(24, 64, 32),
        n=32,
        ncoils=64,
        trajectory="radial",
        vendor="Siemens",
        model="MAGNETOM Terra",
    )
    plan, recon = run(truth.path)
    assert plan.config.name == "research_64ch_7t"
    assert plan.chain == ["prewhiten", "compress", "dcf", "sensmaps", "pics"]
    assert recon.calibrations == {"noise": 1, "compress": 1, "dcf": 1, "maps": 1}
    reference = truth.whitened_reference(0)[0]
    inside = np.abs(truth.images[0, 0]) > 1e-3
    error = scaled_nrmse(recon.images[0, 0], reference, inside)
    # measured 0.039 (32 x 32, 24 spokes, 64 -> 24 virtual coils, L1-wavelet pics)
    assert error < 0.07


CART = "chain.cartesian_2d_accelerated="
NONCART = "chain.noncartesian="

#: name -> (file, overrides, measured NRMSE, threshold); files: 48 x 48, 12 coils, Cartesian
#: R=2 ("c") or 48 radial spokes ("r")
VARIANTS = {
    "pics-l1": ("c", (CART + "prewhiten,sensmaps,pics",), 0.008, 0.02),
    "pics-tv": ("c", (CART + "prewhiten,sensmaps,pics", "pics.regularizer=tv:0.001"), 0.005, 0.015),
    "gcc": (
        "c",
        (
            CART + "prewhiten,compress,grappa,partial_fourier,fft,combine",
            "compress.method=gcc",
            "compress.coils=6",
        ),
        0.004,
        0.012,
    ),
    "roemer": (
        "c",
        (
            CART + "prewhiten,sensmaps,grappa,partial_fourier,fft,combine",
            "combine.method=sensitivity",
        ),
        0.004,
        0.012,
    ),
    "adaptive": ("c", ("combine.method=adaptive",), 0.009, 0.02),
    "walsh": ("c", (CART + "prewhiten,sensmaps,sense", "sensitivity.method=walsh"), 0.015, 0.03),
    "inati": ("c", (CART + "prewhiten,sensmaps,sense", "sensitivity.method=inati"), 0.019, 0.035),
    "espirit": (
        "c",
        (CART + "prewhiten,sensmaps,sense", "sensitivity.method=espirit"),
        0.004,
        0.012,
    ),
    "homodyne": ("c", ("partial_fourier.method=homodyne",), 0.036, 0.06),
    "grid": ("r", (NONCART + "prewhiten,dcf,grid,combine",), 0.124, 0.18),
    "noncart-pics": (
        "r",
        (NONCART + "prewhiten,compress,dcf,sensmaps,pics", "compress.coils=6"),
        0.063,
        0.1,
    ),
    "noncart-espirit": (
        "r",
        (NONCART + "prewhiten,dcf,sensmaps,cg-sense", "sensitivity.method=espirit"),
        0.059,
        0.09,
    ),
    "no-toeplitz": ("r", ("noncartesian.toeplitz=false",), 0.058, 0.09),
}


@pytest.fixture(scope="module")
def variant_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("variants")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cartesian = write_cartesian(folder / "c.h5", shape=(1, 48, 48), ncoils=12, accel=(2, 1))
        radial = write_noncartesian(
            folder / "r.h5", radial_coords(48, 96, 48), n=48, ncoils=12, trajectory="radial"
        )
    return {"c": cartesian, "r": radial}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_stage_method_runs(variant_files, name):
    which, overrides, _measured, threshold = VARIANTS[name]
    truth = variant_files[which]
    plan, recon = run(truth.path, overrides=list(overrides))
    assert plan.config.overrides == list(overrides)
    inside = np.abs(truth.images[0, 0]) > 1e-3
    error = scaled_nrmse(np.abs(recon.images[0, 0]), truth.whitened_reference(0)[0], inside)
    assert error < threshold


def test_sensitivity_combine_without_maps_is_refused(variant_files):
    with pytest.raises(ConfigError, match=r"'combine.method' = 'sensitivity' needs 'sensmaps'"):
        plan_run(read_dataset(variant_files["c"].path), overrides=["combine.method=sensitivity"])


def test_shared_context_calibrates_once_across_calls(variant_files):
    plan = plan_run(read_dataset(variant_files["c"].path))
    context = new_context(plan)
    first = reconstruct(plan, context=context, measure_memory=False)
    second = reconstruct(plan, context=context, measure_memory=False)
    assert dict(context.counts) == {"noise": 1, "grappa": 1}
    assert second.calibrations == {"noise": 1, "grappa": 1}
    assert np.array_equal(first.images, second.images)
